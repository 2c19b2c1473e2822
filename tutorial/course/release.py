"""`fp8-tutorial release --chapter NN --out DIR`: the student edition of the course up to chapter NN.

A course is handed out chapter by chapter. The edition for chapter NN holds:

* chapters before NN as they are: their solutions were handed out with the last edition
  (library, solved exercise files, notebooks);
* chapter NN with every solution region replaced by its stub everywhere it appears: in the
  library's lesson modules, in the exercise files and in the notebook's exercise cells;
* chapters after NN left out of what a learner reads (their folders, notebooks, tests and
  pages), and their lesson modules stubbed in the package, so that it still imports whole
  and not one of their solutions ships;
* the visible tests of chapters up to NN (tests marked hidden stay with the instructor);
* the package as an installable project, the READMEs and the docs sources (never a built
  site, a `.pyc`, or a git history).

Nothing in it holds a line of a withheld solution: [`make_release`][] searches every file it
wrote for each withheld solution's distinctive lines before it returns.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .chapters import CHAPTERS, Chapter, chapter
from .exercises import BEGIN, exercise_source, region_owners, solution_regions, stub_solutions

HIDDEN_TESTS = "test_hidden_"  # test files of hidden tests start so: the release leaves them out
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".ipynb_checkpoints", "site", ".cache")


class LeakError(RuntimeError):
    """A withheld solution's line turned up in a release."""


def _later(ch: Chapter, number: str) -> bool:
    return ch.number > number


def test_files(root: Path, number: str) -> list[Path]:
    """The visible test files of chapters up to `number` (by each file's `chapter` mark), their
    harnesses (tests/harness_chNN.py), and conftest.py."""
    keep = [root / "tests" / "conftest.py"]
    keep += [path for path in sorted((root / "tests").glob("harness_ch*.py")) if path.stem[-2:] <= number]
    for path in sorted((root / "tests").glob("test_*.py")):
        if path.name.startswith(HIDDEN_TESTS):
            continue
        marks = re.findall(r'pytestmark\s*=.*?chapter\("(\d\d)"\)', path.read_text())
        if marks and marks[0] <= number:
            keep.append(path)
    return keep


def file_text(path: Path) -> str:
    """What a file says, for a search: a notebook's cell sources, any other file as text."""
    text = Path(path).read_text(errors="ignore")
    if Path(path).suffix == ".ipynb":
        try:
            return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        except (ValueError, KeyError):
            pass
    return text


def _course_files(root: Path):
    for folder in ("tutorial", "tests", "chapters", "docs/pages"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".ipynb", ".md") and "__pycache__" not in path.parts:
                yield path


def withheld_lines(number: str, root: Path) -> set[str]:
    """The distinctive lines of the solutions a release for chapter `number` withholds: lines of
    their regions (stripped) that appear nowhere in the course outside a solution region, so
    that finding one in a release means a solution leaked (solutions of the chapters before
    `number` were handed out already: a line shared with one of them is not distinctive)."""
    import importlib.util

    solutions: set[str] = set()
    elsewhere = set()  # and the solutions released before: a line they share is no leak
    for ch in CHAPTERS:
        for lesson in ch.exercised:
            source = Path(importlib.util.find_spec(lesson.module).origin).read_text()
            lines = {line.strip() for region in solution_regions(source) for line in region}
            if ch.number < number:
                elsewhere |= lines
            else:
                solutions |= {line for line in lines if len(line) >= 12 and not line.startswith("#")}
    for path in _course_files(root):
        text = file_text(path)
        if BEGIN.search(text):
            text = stub_solutions(text)
        elsewhere |= {line.strip() for line in text.splitlines()}
    return solutions - elsewhere


def _stub_notebook(path: Path, stub: bool) -> None:
    """The notebook at `path` with its exercise cells stubbed (or, for a released chapter, with
    their solution markers removed), outputs and execution counts cleared."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if BEGIN.search(source):
            source = stub_solutions(source, keep=set() if stub else set(region_owners(source)))
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def make_release(number: str, out: Path, root: Path) -> Path:
    """Write the student edition for chapter `number` of the course checkout `root` into `out`
    (which must not exist yet, or be empty). Returns `out`."""
    ch = chapter(number)
    number = ch.number
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"release: {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "LICENSE"):
        if (root / name).exists():
            shutil.copy(root / name, out / name)
    shutil.copytree(root / "results", out / "results", ignore=_SKIP)
    _package(root, out, number)
    _chapters(root, out, number)
    (out / "tests").mkdir()
    for path in test_files(root, number):
        shutil.copy(path, out / "tests" / path.name)
    _docs(root, out, number)
    (out / "README.md").write_text(_readme(number))
    leaks = find_leaks(out, withheld_lines(number, root))
    if leaks:
        raise LeakError(f"release: withheld solution lines found in {leaks[:5]}")
    return out


def _package(root: Path, out: Path, number: str) -> None:
    """The package, with every solution region marked in it resolved: solved for the chapters
    before `number`, stubbed from `number` on."""
    import importlib.util

    package = Path(importlib.util.find_spec("tutorial").origin).parent
    shutil.copytree(package, out / "tutorial", ignore=_SKIP)
    for ch in CHAPTERS:
        for lesson in ch.exercised:
            path = out / Path(importlib.util.find_spec(lesson.module).origin).relative_to(package.parent)
            source = path.read_text()
            solved = set(region_owners(source)) if ch.number < number else set()
            path.write_text(stub_solutions(source, keep=solved))


def _chapters(root: Path, out: Path, number: str) -> None:
    (out / "chapters").mkdir()
    if (root / "chapters" / "README.md").exists():
        shutil.copy(root / "chapters" / "README.md", out / "chapters" / "README.md")
    for ch in CHAPTERS:
        if _later(ch, number):
            continue
        target = ch.folder(out)
        shutil.copytree(ch.folder(root), target, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", ".ipynb_checkpoints", "exercise*.py", "*.bak"))
        for lesson in ch.exercised:
            solved = set(lesson.exercises) if ch.number < number else set()
            ch.exercise_path(out, lesson).write_text(exercise_source(ch, lesson, solved=solved))
        notebook = target / "notebook.ipynb"
        if notebook.exists():
            _stub_notebook(notebook, stub=ch.number == number)


def _docs(root: Path, out: Path, number: str) -> None:
    """The docs sources, with the chapters after `number` and the instructor's guide left out
    of the site's navigation and pages."""
    docs = root / "docs"
    shutil.copytree(docs, out / "docs", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "site", ".cache", "chapters", "instructors.md", "student-edition*"))
    config = (out / "docs" / "mkdocs.yml").read_text()
    kept = []
    for line in config.splitlines():
        match = re.search(r"chapters/(\d\d)_", line)
        if (match and match.group(1) > number) or "instructors.md" in line or "student-edition" in line \
                or line.strip() == "- Instructors:":
            continue
        kept.append(line)
    (out / "docs" / "mkdocs.yml").write_text("\n".join(kept) + "\n")


def _readme(number: str) -> str:
    released = [ch for ch in CHAPTERS if not _later(ch, number)]
    rows = "\n".join(f"| {ch.number} | [{ch.title}](chapters/{ch.slug}/) | "
                     f"{'solutions included' if ch.number < number else 'your exercises'} |" for ch in released)
    return f"""# numba-fp8-tutorial: student edition, chapter {number}

Learn FP8 quantization for GPU matrix work by building it, kernel by kernel, in Numba CUDA.

| chapter | | |
| --- | --- | --- |
{rows}

```bash
pip install .
jupyter lab chapters/                     # or open a notebook in your editor
fp8-tutorial grade {number}                  # grades your exercise files
```

Each exercise is in two places; write it in either. In the notebook, its cell holds the
function with a `TODO`; the check cell under it (`check(name)`) runs the graded tests on it and
says what is wrong. In `chapters/{chapter(number).slug}/exercise*.py`, fill in the TODOs and run
`fp8-tutorial grade {number}`. Both are graded by the same tests. Without a GPU, kernels run on
Numba's CUDA simulator: nothing to set up.
"""


def find_leaks(folder: Path, lines: set[str]) -> list[str]:
    """Files under `folder` (any kind, notebooks by their cells) holding one of `lines`, a
    solution marker, or compiled Python."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            text = file_text(path)
        except OSError:
            continue
        stripped = {line.strip() for line in text.splitlines()}
        if BEGIN.search(text) or path.suffix in (".pyc", ".pyo") or stripped & lines:
            found.append(str(path))
    return found


__all__ = ["make_release", "find_leaks", "withheld_lines", "test_files", "LeakError", "HIDDEN_TESTS"]
