"""Exercise files, generated from the solutions so that the two never drift apart.

A solution region in library code is marked once, nbgrader-style: a comment line
`# BEGIN SOLUTION: hint` (the hint is what the learner writes there), the solution, and a
comment line `# END SOLUTION`.

Each lesson module with marked regions (see `tutorial.course.chapters`) becomes an exercise
file in its chapter's folder (`chapters/NN_name/exercise.py`): a copy of the module in which
every region is replaced by the hint (wrapped at 100 columns), an estimate of its length, and
`raise NotImplementedError`. Signatures, docstrings and everything around stay as they are,
and a header lists the TODOs with their line numbers. The grader loads the file as the
library module itself, so the learner's code runs wherever the library uses it.
`fp8-tutorial exercises` brings them up to date. A fingerprint line in each file tells an
untouched stub from a learner's work: stubs are regenerated, edited files are kept unless the
learner asks with `--force` (and then saved beside the new stub). A test fails when an
untouched stub is stale.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import shutil
import textwrap
import time
from pathlib import Path

from ..runtime.sources import function_source
from .chapters import CHAPTERS, Chapter, Lesson

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION(?::\s*(.*))?$", re.M)
END = re.compile(r"^\s*# END SOLUTION\s*$", re.M)
NOT_ATTEMPTED = "not yet attempted"
WIDTH = 100  # hints are wrapped to this many columns


def _code_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _enclosing_function(lines: list[str], index: int) -> str:
    """The outermost function around line `index`: for a kernel built inside a factory, the
    factory, whose name the learner and the graded tests know."""
    limit = len(lines[index]) - len(lines[index].lstrip())
    name = "exercise"
    for line in reversed(lines[:index]):
        indent = len(line) - len(line.lstrip())
        if not line.strip() or line.lstrip().startswith("#") or indent >= limit:
            continue
        limit = indent  # the nearest line indented less than us opens the block we are in
        match = re.match(r"\s*def (\w+)\(", line)
        if match:
            name = match.group(1)
        if indent == 0:
            break
    return name


def solution_regions(source: str) -> list[list[str]]:
    """The lines of each marked solution region of `source`, markers left out."""
    lines, regions, current = source.splitlines(), [], None
    for line in lines:
        if BEGIN.match(line):
            current = []
        elif END.match(line):
            regions.append(current or [])
            current = None
        elif current is not None:
            current.append(line)
    return regions


def region_owners(source: str) -> list[str]:
    """The exercise (the enclosing top-level function) of each solution region of `source`."""
    lines = source.splitlines()
    return [_enclosing_function(lines, i) for i, line in enumerate(lines) if BEGIN.match(line)]


def stub_solutions(source: str, keep: frozenset[str] | set[str] = frozenset()) -> str:
    """Replace each marked solution region of `source` by a TODO and NotImplementedError.

    `keep`: exercises (enclosing function names) whose regions stay solved, markers dropped: a
    file as a learner who solved those would have it.
    """
    lines = source.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        begin = BEGIN.match(lines[i])
        if not begin:
            if END.match(lines[i]):
                raise ValueError(f"line {i + 1}: END SOLUTION without BEGIN")
            out.append(lines[i])
            i += 1
            continue
        indent, hint = begin.group(1), begin.group(2) or "write this part"
        end = next((j for j in range(i + 1, len(lines)) if END.match(lines[j])), None)
        if end is None:
            raise ValueError(f"line {i + 1}: BEGIN SOLUTION without END")
        name = _enclosing_function(lines, i)
        if name in keep:
            out += lines[i + 1:end]
        else:
            n = _code_lines(lines[i + 1:end])
            todo = f"TODO ({name}): {hint} (roughly {n} line{'s' if n != 1 else ''})"
            out += textwrap.wrap(todo, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ",
                                 break_on_hyphens=False, break_long_words=False)
            out.append(f'{indent}raise NotImplementedError("{name}: {NOT_ATTEMPTED}")')
        i = end + 1
    return "\n".join(out) + "\n"


def untouched(path: Path) -> set[str]:
    """Functions of an exercise file whose every stub is still there, unedited.

    This, not the exceptions a test sees, says "not yet attempted": on a GPU an exception
    raised in a device function is not reported, only its wrong output is.
    """
    text = Path(path).read_text()
    stubs = re.findall(r'raise NotImplementedError\("(\w+): ' + NOT_ATTEMPTED + r'"\)', text)
    todos = re.findall(r"# TODO \((\w+)\): ", text)
    return {name for name in set(todos) if stubs.count(name) == todos.count(name)}


def absolute_imports(source: str, module: str) -> str:
    """The exercise lives outside the package: relative imports of `module` (`from .x import`,
    `from .. import y`) become absolute ones (`from tutorial.pkg.x import`, `from tutorial import y`)."""
    package = module.rpartition(".")[0]

    def absolute(match):
        indent, dots, rest = match.group(1), match.group(2), match.group(3)
        base = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
        target = f"{base}.{rest}" if rest else base
        return f"{indent}from {target} import "

    return re.sub(r"^(\s*)from (\.+)([\w.]*) import ", absolute, source, flags=re.M)


def _global_names(function: str) -> list[str]:
    """Names a function definition's code reads that it does not bind itself, in first-use order."""
    tree = ast.parse(textwrap.dedent(function))
    bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments)
             for a in [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg] if a}
    bound |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    bound |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound and node.id not in names:
            names.append(node.id)
    return names


def import_lines(module_name: str, function: str, exclude=()) -> str:
    """The imports a notebook cell needs to define `function` (taken from module
    `module_name`) outside it: modules as modules, everything else from the module itself.
    Names in `exclude` (the chapter's other exercises, defined by cells of their own) are left
    for the notebook to provide."""
    module = importlib.import_module(module_name)
    modules, names = [], []
    for name in _global_names(function):
        if name in exclude or not hasattr(module, name) or name in vars(builtins):
            continue
        value = getattr(module, name)
        if inspect.ismodule(value):
            parent, _, leaf = value.__name__.rpartition(".")
            modules.append(f"from {parent} import {leaf}" + (f" as {name}" if leaf != name else "") if parent
                           else f"import {value.__name__}" + (f" as {name}" if value.__name__ != name else ""))
        else:
            names.append(name)
    lines = sorted(modules)
    if names:
        lines += textwrap.wrap(f"from {module_name} import {', '.join(names)}", WIDTH, subsequent_indent="    ",
                               break_on_hyphens=False, break_long_words=False)
        if len(lines) > len(modules) + 1:  # a wrapped import needs parentheses
            first = len(modules)
            lines[first] = lines[first].replace(" import ", " import (", 1)
            lines[-1] += ")"
            lines[first:] = [line.rstrip() for line in lines[first:]]
    return "\n".join(lines)


def exercise_cell(ch: Chapter, lesson: Lesson, name: str) -> str:
    """The notebook cell of exercise `name`: the imports it needs, then the function as the
    library holds it, its solution region marked (a student edition stubs it)."""
    library = Path(importlib.util.find_spec(lesson.module).origin).read_text()
    function = function_source(library, name)
    imports = import_lines(lesson.module, function, exclude=set(ch.exercises) - {name})
    intro = textwrap.wrap(f"Exercise: {name}. Write it here (or in {ch.slug}/{lesson.file}), then run the check "
                          "cell below.", WIDTH - 2)
    head = [f"# {line}" for line in intro] + ([imports] if imports else [])
    return "\n".join(head + ["", "", function.rstrip("\n")])


FINGERPRINT = "# stub fingerprint: "


def _fingerprint(text: str) -> str:
    """A hash of an exercise file's text without its fingerprint line."""
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(FINGERPRINT))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _todo_lines(text: str) -> list[tuple[int, str]]:
    return [(number, match.group(1)) for number, line in enumerate(text.splitlines(), 1)
            if (match := re.match(r"\s*# TODO \((\w+)\)", line))]


def exercise_source(ch: Chapter, lesson: Lesson | None = None, solved: frozenset[str] | set[str] = frozenset()) -> str:
    """The exercise file of `lesson` (the chapter's first, by default) as the solutions generate
    it now; the exercises named in `solved` come with their solutions in place (as a learner's
    finished work would)."""
    lesson = lesson or ch.exercised[0]
    spec = importlib.util.find_spec(lesson.module)
    body = absolute_imports(stub_solutions(Path(spec.origin).read_text(), keep=solved), lesson.module)
    intro = [f"# Chapter {ch.number} exercise: {ch.title} ({lesson.module}).",
             f"# Generated from {lesson.module} by `fp8-tutorial exercises`. Fill in every TODO, then run",
             f"# `fp8-tutorial grade {ch.number}`: the graded tests use this file as {lesson.module}."]
    # The header lists each TODO's line; it is as long as the TODOs are many, so count it first.
    todos = _todo_lines(body)
    header_lines = len(intro) + 1 + len(todos) + 1 + 1  # intro, "TODOs:", one per TODO, fingerprint, blank
    listing = ["# TODOs:"] + [f"#   line {header_lines + number:>4}: {name}" for number, name in todos]
    head = "\n".join(intro + listing) + "\n"
    text = head + "\n" + body
    line = (f"{FINGERPRINT}{_fingerprint(text)} (tells `fp8-tutorial exercises` an untouched stub from "
            "your work)\n")
    return head + line + "\n" + body


def state(path: Path, ch: Chapter, lesson: Lesson | None = None) -> str:
    """What `path` holds: "missing", "current" (what the solutions generate now), "stale" (an
    untouched stub generated from older solutions) or "edited" (the learner's work)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    text = path.read_text()
    if text == exercise_source(ch, lesson):
        return "current"
    recorded = re.search(f"^{re.escape(FINGERPRINT)}(\\w+)", text, flags=re.M)
    return "stale" if recorded and recorded.group(1) == _fingerprint(text) else "edited"


def exercise_files(root: Path):
    """(chapter, lesson, path) of every exercise file of the course under `root`."""
    return [(ch, lesson, ch.exercise_path(root, lesson)) for ch in CHAPTERS for lesson in ch.exercised]


def write_all(root: Path, force: bool = False) -> list[tuple[Path, str]]:
    """Bring every exercise file up to date; never overwrite a learner's edits unless `force`,
    and even then keep their file beside it. Returns (path, what was done) pairs."""
    done = []
    for ch, lesson, path in exercise_files(root):
        now = state(path, ch, lesson)
        if now == "current":
            done.append((path, "up to date"))
            continue
        if now == "edited" and not force:
            done.append((path, "kept: it holds your edits (--force replaces it and keeps yours as a .bak file)"))
            continue
        what = {"missing": "written", "stale": "regenerated"}.get(now)
        if now == "edited":
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            shutil.copyfile(path, backup)
            what = f"replaced by a fresh stub; your version is in {backup.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exercise_source(ch, lesson))
        done.append((path, what))
    return done


EXERCISE_TAG = "exercise:"  # a notebook cell tagged exercise:NAME holds exercise NAME


def notebook_cells(root: Path):
    """(notebook path, cell index, exercise name, what the cell should hold) for every exercise
    cell of the chapters' notebooks: its source comes from the library, one source for both."""
    found = []
    for ch in CHAPTERS:
        path = ch.folder(root) / "notebook.ipynb"
        if not path.exists():
            continue
        cells = json.loads(path.read_text())["cells"]
        for index, cell in enumerate(cells):
            for tag in cell.get("metadata", {}).get("tags", []):
                if tag.startswith(EXERCISE_TAG):
                    name = tag[len(EXERCISE_TAG):]
                    found.append((path, index, name, exercise_cell(ch, ch.lesson_of(name), name)))
    return found


def stale_notebook_cells(root: Path) -> list[str]:
    """Exercise cells of the notebooks that differ from what the library generates now."""
    stale_cells = []
    for path, index, name, want in notebook_cells(root):
        cell = json.loads(path.read_text())["cells"][index]
        if "".join(cell["source"]) != want:
            stale_cells.append(f"{path.parent.name}/{path.name} cell {index} ({name})")
    return stale_cells


def write_notebook_cells(root: Path) -> list[str]:
    """Regenerate the notebooks' exercise cells from the library; returns what changed."""
    changed = stale_notebook_cells(root)
    by_path: dict = {}
    for path, index, name, want in notebook_cells(root):
        by_path.setdefault(path, []).append((index, want))
    for path, updates in by_path.items():
        notebook = json.loads(path.read_text())
        for index, want in updates:
            notebook["cells"][index]["source"] = want.splitlines(keepends=True)
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return changed


def stale(root: Path) -> list[Path]:
    """Exercise files that are untouched stubs but differ from what the solutions generate now
    (or are missing). A learner's edited file is never stale: it is theirs."""
    return [path for ch, lesson, path in exercise_files(root) if state(path, ch, lesson) in ("missing", "stale")]
