"""Exercise files, generated from the solutions so that the two never drift apart.

A solution region in library code is marked once, nbgrader-style::

    # BEGIN SOLUTION: what the learner writes here, as a hint
    ...the solution...
    # END SOLUTION

Each chapter's ``chapters/NN_name/exercise.py`` is a copy of its solution module in which
every region is replaced by the hint, an estimate of its length, and ``raise
NotImplementedError``. Signatures, docstrings and everything around stay as they are.
``fp8-tutorial exercises`` rewrites them all; a test fails when a committed one is stale.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .chapters import CHAPTERS, Chapter

_BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION(?::\s*(.*))?$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
NOT_ATTEMPTED = "not yet attempted"


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


def stub_solutions(source: str) -> str:
    """Replace each marked solution region of `source` by a TODO and NotImplementedError."""
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
        n = _code_lines(lines[i + 1:end])
        out.append(f"{indent}# TODO ({name}): {hint} (roughly {n} line{'s' if n != 1 else ''})")
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


def _absolute_imports(source: str) -> str:
    """The exercise lives outside the package: `from .x import` becomes `from tutorial.x import`."""
    source = re.sub(r"^(\s*)from \. import ", r"\1from tutorial import ", source, flags=re.M)
    return re.sub(r"^(\s*)from \.(\w+) import ", r"\1from tutorial.\2 import ", source, flags=re.M)


def exercise_source(ch: Chapter) -> str:
    spec = importlib.util.find_spec(ch.solution_module)
    solution = Path(spec.origin).read_text()
    header = (
        f"# Chapter {ch.number} exercise: {ch.title}.\n"
        f"# Generated from {ch.solution_module} by `fp8-tutorial exercises` (which overwrites this\n"
        "# file: keep your work elsewhere before regenerating). Fill in every TODO, then run\n"
        f"# `fp8-tutorial grade {ch.number}` to run the graded tests against this file.\n\n"
    )
    return header + _absolute_imports(stub_solutions(solution))


def write_all(root: Path) -> list[Path]:
    written = []
    for ch in CHAPTERS:
        path = ch.exercise_path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exercise_source(ch))
        written.append(path)
    return written


def stale(root: Path) -> list[Path]:
    """Committed exercise files that differ from what the solutions generate now."""
    return [ch.exercise_path(root) for ch in CHAPTERS
            if not ch.exercise_path(root).exists() or ch.exercise_path(root).read_text() != exercise_source(ch)]
