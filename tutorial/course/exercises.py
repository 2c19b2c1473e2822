"""Exercise files, generated from the solutions so that the two never drift apart.

A solution region in library code is marked once, nbgrader-style:

```python
# BEGIN SOLUTION: what the learner writes here, as a hint
...the solution...
# END SOLUTION
```

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

import hashlib
import importlib.util
import re
import shutil
import textwrap
import time
from pathlib import Path

from .chapters import CHAPTERS, Chapter, Lesson

_BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION(?::\s*(.*))?$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
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


def stub_solutions(source: str, keep: frozenset[str] | set[str] = frozenset()) -> str:
    """Replace each marked solution region of `source` by a TODO and NotImplementedError.

    `keep`: exercises (enclosing function names) whose regions stay solved, markers dropped: a
    file as a learner who solved those would have it.
    """
    lines = source.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        begin = _BEGIN.match(lines[i])
        if not begin:
            if _END.match(lines[i]):
                raise ValueError(f"line {i + 1}: END SOLUTION without BEGIN")
            out.append(lines[i])
            i += 1
            continue
        indent, hint = begin.group(1), begin.group(2) or "write this part"
        end = next((j for j in range(i + 1, len(lines)) if _END.match(lines[j])), None)
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


def _absolute_imports(source: str, module: str) -> str:
    """The exercise lives outside the package: relative imports of `module` (`from .x import`,
    `from .. import y`) become absolute ones (`from tutorial.pkg.x import`, `from tutorial import y`)."""
    package = module.rpartition(".")[0]

    def absolute(match):
        indent, dots, rest = match.group(1), match.group(2), match.group(3)
        base = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
        target = f"{base}.{rest}" if rest else base
        return f"{indent}from {target} import "

    return re.sub(r"^(\s*)from (\.+)([\w.]*) import ", absolute, source, flags=re.M)


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
    body = _absolute_imports(stub_solutions(Path(spec.origin).read_text(), keep=solved), lesson.module)
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


def stale(root: Path) -> list[Path]:
    """Exercise files that are untouched stubs but differ from what the solutions generate now
    (or are missing). A learner's edited file is never stale: it is theirs."""
    return [path for ch, lesson, path in exercise_files(root) if state(path, ch, lesson) in ("missing", "stale")]
