"""Exercise files, generated from the solutions so that the two never drift apart.

A solution region in library code is marked once, nbgrader-style:

```python
# BEGIN SOLUTION: what the learner writes here, as a hint
...the solution...
# END SOLUTION
```

Each chapter's `chapters/NN_name/exercise.py` is a copy of its solution module in which
every region is replaced by the hint, an estimate of its length, and ``raise
NotImplementedError``. Signatures, docstrings and everything around stay as they are.
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
import time
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


FINGERPRINT = "# stub fingerprint: "


def _fingerprint(text: str) -> str:
    """A hash of an exercise file's text without its fingerprint line."""
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(FINGERPRINT))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def exercise_source(ch: Chapter, solved: frozenset[str] | set[str] = frozenset()) -> str:
    """The exercise file of `ch` as the solutions generate it now; the exercises named in
    `solved` come with their solutions in place (as a learner's finished work would)."""
    spec = importlib.util.find_spec(ch.solution_module)
    solution = Path(spec.origin).read_text()
    header = (
        f"# Chapter {ch.number} exercise: {ch.title}.\n"
        f"# Generated from {ch.solution_module} by `fp8-tutorial exercises`. Fill in every TODO, then run\n"
        f"# `fp8-tutorial grade {ch.number}` to run the graded tests against this file.\n"
    )
    text = header + "\n" + _absolute_imports(stub_solutions(solution, keep=solved))
    line = (f"{FINGERPRINT}{_fingerprint(text)} (tells `fp8-tutorial exercises` an untouched stub from "
            "your work)\n")
    return header + line + "\n" + text[len(header) + 1:]


def state(path: Path, ch: Chapter) -> str:
    """What `path` holds: "missing", "current" (what the solutions generate now), "stale" (an
    untouched stub generated from older solutions) or "edited" (the learner's work)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    text = path.read_text()
    if text == exercise_source(ch):
        return "current"
    recorded = re.search(f"^{re.escape(FINGERPRINT)}(\\w+)", text, flags=re.M)
    return "stale" if recorded and recorded.group(1) == _fingerprint(text) else "edited"


def write_all(root: Path, force: bool = False) -> list[tuple[Path, str]]:
    """Bring every chapter's exercise file up to date; never overwrite a learner's edits unless
    `force`, and even then keep their file beside it. Returns (path, what was done) pairs."""
    done = []
    for ch in CHAPTERS:
        path = ch.exercise_path(root)
        now = state(path, ch)
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
        path.write_text(exercise_source(ch))
        done.append((path, what))
    return done


def stale(root: Path) -> list[Path]:
    """Exercise files that are untouched stubs but differ from what the solutions generate now
    (or are missing). A learner's edited file is never stale: it is theirs."""
    return [ch.exercise_path(root) for ch in CHAPTERS if state(ch.exercise_path(root), ch) in ("missing", "stale")]
