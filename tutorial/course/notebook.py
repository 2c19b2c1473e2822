"""Exercises inside the notebooks: check a function right where the learner writes it.

In a chapter's notebook an exercise is a code cell holding the function the learner writes
(tagged `exercise:NAME`: the solution in the instructor's copy, the stub in a student
edition), followed by a check cell:

```python
check(warp_max)
```

[`check`][] grades the function just defined with that exercise's graded tests (the visible
ones, as in a student edition), the same tests `fp8-tutorial grade` runs on the exercise file: the notebook's function is put into a
copy of its lesson module in place of the stub, and the grader runs on that copy in separate
processes. So a crash or an endless loop in it is reported and never takes the notebook's
kernel down, and it works on the simulator and on a GPU alike. Exercises of the same lesson
that the notebook has defined too go in with it (an exercise is graded with those it builds
on); the others stay stubs.

Once its check passes, the function takes the library's place in this kernel
([`install`][]): `tutorial.absmax` then runs the learner's `absmax_kernel`. Cells that need an
exercise begin with the cell magic `%%needs NAME`: until NAME has passed its check, they say
so and are skipped, so that a student edition runs top to bottom before anything is written.
`%load_ext tutorial.course.notebook` registers the magic.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import linecache
import shutil
import sys
import tempfile
import textwrap
import types
from pathlib import Path

from .chapters import Chapter, Lesson, chapter_of_exercise, find_root
from ..runtime.sources import replace_function
from .exercises import absolute_imports, stub_solutions
from .grading import format_report, grade_chapter

_passed: set[str] = set()  # exercises whose check passed in this kernel


def _function(fn):
    """The Python function behind a kernel, a device function or a cached factory."""
    for attribute in ("py_func", "__wrapped__"):
        inner = getattr(fn, attribute, None)
        if inner is not None:
            return _function(inner)
    if not inspect.isfunction(fn):
        raise TypeError(f"check: expected the function you wrote (a def, kernel or device function), got {fn!r}")
    return fn


def _source(fn) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        raise ValueError(f"check: the source of {fn.__name__} cannot be found: define it in a notebook cell "
                         "(or a file) and run that cell again") from None


def lesson_source(ch: Chapter, lesson: Lesson, defined: dict, keep_library: bool = False) -> str:
    """The lesson module with the learner's code of the exercises in `defined` ({name:
    function}); the other exercises are stubs, as in the learner's exercise file, or with
    `keep_library` as the library has them (solved, unless this is a student edition)."""
    library = Path(importlib.util.find_spec(lesson.module).origin).read_text()
    keep = set(lesson.exercises) if keep_library else set()
    source = absolute_imports(stub_solutions(library, keep=keep), lesson.module)
    for name, fn in defined.items():
        source = replace_function(source, name, _source(fn))
    return source


def _defined_exercises(ch: Chapter, namespace: dict, fn) -> dict:
    """The chapter's exercises the notebook defines, by name: `fn` itself, and any other
    exercise of the chapter defined in the notebook's namespace."""
    defined = {}
    for name in ch.exercises:
        value = namespace.get(name)
        if value is not None:
            try:
                function = _function(value)
            except TypeError:
                continue
            if function.__module__ in ("__main__", None) or not function.__module__.startswith("tutorial"):
                defined[name] = function  # the notebook's own, not one imported from the library
    defined[_function(fn).__name__] = _function(fn)
    return defined


def check(fn, timeout_s: float = 120) -> None:
    """Grade `fn` (an exercise defined in the notebook) with its graded tests; print the verdict
    in a few lines; on a pass, put it in the library's place in this kernel ([`ready`][] then
    says so)."""
    function = _function(fn)
    name = function.__name__
    ch = chapter_of_exercise(name)
    namespace = inspect.currentframe().f_back.f_globals
    defined = _defined_exercises(ch, namespace, fn)
    root = find_root()
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp)
        # The visible tests, as a student edition holds them (hidden ones are for the class's grading).
        shutil.copytree(root / "tests", course / "tests", ignore=shutil.ignore_patterns("__pycache__", "test_hidden_*"))
        for lesson in ch.exercised:
            path = ch.exercise_path(course, lesson)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(lesson_source(ch, lesson, {n: f for n, f in defined.items() if n in lesson.exercises}))
        summary = grade_chapter(ch, course, exercise=name, timeout_s=timeout_s)
    report = format_report({ch.number: summary}).splitlines()[:-1]  # no score line for one exercise
    print("\n".join(line[:300] for line in report[:8]))
    passed = summary.get(name, {}).get("status") == "passed"
    if passed:
        lesson = ch.lesson_of(name)
        install(lesson.module, lesson_source(ch, lesson, {n: f for n, f in defined.items() if n in lesson.exercises},
                                             keep_library=True))
        _passed.add(name)
    else:
        _passed.discard(name)


def ready(*names: str) -> bool:
    """Whether every exercise named has passed its check in this kernel."""
    return all(name in _passed for name in names)


def install(module_name: str, source: str) -> None:
    """Run `source` (a lesson module holding a learner's functions) and put its functions in
    the place of the library module's, wherever the library refers to them, so that the
    library's own entry points run the learner's code from now on in this process.

    The copy keeps the library's classes and constants (so a format or a tiling made before is
    still one after); its functions, kernels and device functions replace the library's, and
    any other module of the package that imported one by name gets the new one too.
    """
    original = importlib.import_module(module_name)
    package = module_name.rpartition(".")[0]
    copy = types.ModuleType(f"{module_name}__learner")
    copy.__package__ = package
    # A real file: inspect finds the source there, and numba's on-disk cache (njit(cache=True)
    # in chapter 00) needs one.
    path = Path(tempfile.mkdtemp(prefix="fp8-tutorial-")) / f"learners_{module_name.replace('.', '_')}.py"
    path.write_text(source)
    copy.__file__ = str(path)
    sys.modules[copy.__name__] = copy  # numba looks functions' modules up here
    linecache.checkcache(str(path))
    exec(compile(source, str(path), "exec"), vars(copy))
    old_values = vars(original)
    for name, value in old_values.items():  # keep the library's identities for all but functions
        if name in vars(copy) and not _is_code(value):
            setattr(copy, name, value)
    replaced = {}
    for name, value in list(vars(copy).items()):
        old = old_values.get(name)
        if _is_code(value) and old is not None and old is not value and _is_code(old):
            replaced[id(old)] = value
            setattr(original, name, value)
    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith("tutorial") or module is copy:
            continue
        for name, value in list(vars(module).items()):
            if id(value) in replaced:
                setattr(module, name, replaced[id(value)])


def _is_code(value) -> bool:
    """A function, kernel or device function (not a class, module or constant)."""
    return (inspect.isfunction(value) or hasattr(value, "py_func") or hasattr(value, "__wrapped__")
            or type(value).__name__ in ("FakeCUDAKernel", "CUDADispatcher"))


def load_ipython_extension(ipython) -> None:
    """`%load_ext tutorial.course.notebook`: the `%%needs` cell magic."""

    def needs(line, cell):
        """`%%needs NAME [NAME ...]`: run the cell once those exercises have passed their check."""
        names = line.split()
        missing = [name for name in names if name not in _passed]
        if missing:
            print(f"This cell needs {', '.join(missing)}: skipped until "
                  f"{'its check passes' if len(missing) == 1 else 'their checks pass'} (write "
                  f"{'it' if len(missing) == 1 else 'them'} above, then run the check cell).")
            return None
        ipython.run_cell(cell)
        return None

    ipython.register_magic_function(needs, magic_kind="cell", magic_name="needs")


__all__ = ["check", "ready", "install", "lesson_source", "load_ipython_extension"]
