"""The student edition (`fp8-tutorial release`): what a class gets for chapters 00, 01 and 04.

Each edition is installed in a fresh virtual environment (made once for this file: the
dependencies from PyPI, then each edition's own package in turn), its chapter's notebook is
run top to bottom on the simulator before anything is written and again with the solutions
filled in, and every file of it, the installed package included, is searched for the lines
of the solutions it withholds. The search is written here, separately from the library's.
"""

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

import tutorial
from tutorial.course.chapters import CHAPTERS, chapter
from tutorial.course.exercises import region_owners, solution_regions, stub_solutions
from tutorial.course.release import make_release

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.skipif(not tutorial.ON_SIMULATOR,
                                reason="installs packages from PyPI into a new environment: runs where CI runs"),
              pytest.mark.xdist_group("release")]  # one worker makes the environment once

RUN_NOTEBOOK = """
import sys, nbformat, nbclient
from pathlib import Path
path = Path(sys.argv[1])
nb = nbformat.read(path, 4)
nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
nbformat.write(nb, path.with_name("executed.ipynb"))
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """A fresh virtual environment holding the course's dependencies (the instructor's package
    is installed with them, then replaced by each edition's)."""
    folder = tmp_path_factory.mktemp("edition-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    # From a copy of the checkout: pip builds in the source tree (build/, *.egg-info), and two
    # test workers building the same tree at once can trip over each other.
    source = tmp_path_factory.mktemp("course-source") / "course"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".whl", ".gpu_model", ".san", "build", "*.egg-info", "site", "__pycache__", ".cache",
        ".pytest_cache", ".hypothesis", "fp8-tutorial-demo"))
    proc = subprocess.run([python, "-m", "pip", "install", "-q", f"{source}[test]"], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python


def site_package(python) -> Path:
    """Where `tutorial` is installed in the environment of `python`."""
    out = subprocess.run([python, "-c", "import importlib.util, pathlib; "
                          "print(pathlib.Path(importlib.util.find_spec('tutorial').origin).parent)"],
                         capture_output=True, text=True, check=True, cwd="/")
    return Path(out.stdout.strip())


def cells_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    return path.read_text(errors="ignore")


def distinctive_solution_lines(number: str) -> set[str]:
    """Lines of the regions withheld from the edition for `number` (its chapter's and later
    ones'), written nowhere else in the instructor's course nor in an earlier chapter's
    solution: finding one means a leak."""
    import importlib.util

    regions, everywhere_else = set(), set()
    for ch in CHAPTERS:
        for lesson in ch.exercised:
            text = Path(importlib.util.find_spec(lesson.module).origin).read_text()
            lines = {line.strip() for region in solution_regions(text) for line in region}
            if ch.number >= number:
                regions |= lines
            else:
                everywhere_else |= lines  # handed out with an earlier edition
    regions = {line for line in regions if len(line) >= 12 and not line.startswith("#")}
    for path in list((ROOT / "tutorial").rglob("*.py")) + list((ROOT / "tests").glob("*.py")) \
            + list((ROOT / "chapters").rglob("*.ipynb")) + list((ROOT / "docs" / "pages").rglob("*.md")):
        text = cells_text(path)
        everywhere_else |= {line.strip() for line in stub_solutions(text, keep=set()).splitlines()} \
            if "# BEGIN SOLUTION" in text else {line.strip() for line in text.splitlines()}
    return regions - everywhere_else


def leaks(folder: Path, lines: set[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix in (".pyc", ".pyo"):
            found.append(f"{path}: compiled Python")
            continue
        text = cells_text(path)
        if re.search(r"^\s*# (BEGIN|END) SOLUTION", text, re.M):
            found.append(f"{path}: a solution marker")
        hits = {line.strip() for line in text.splitlines()} & lines
        if hits:
            found.append(f"{path}: {sorted(hits)[:2]}")
    return found


def filled(notebook: Path, instructor: Path) -> Path:
    """The edition's notebook with every exercise cell holding the instructor's solution."""
    solutions = {tag: "".join(c["source"]) for c in json.loads(instructor.read_text())["cells"]
                 for tag in c.get("metadata", {}).get("tags", [])}
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("exercise:"):
                source = solutions[tag]
                cell["source"] = stub_solutions(source, keep=set(region_owners(source))).splitlines(keepends=True)
    out = notebook.with_name("filled.ipynb")
    out.write_text(json.dumps(nb, indent=1))
    return out


def outputs_of(executed: Path, tag_prefix: str) -> list[str]:
    """The text printed by the cells tagged `tag_prefix...`."""
    nb = json.loads(executed.read_text())
    return ["".join(o.get("text", "")) for c in nb["cells"]
            if any(t.startswith(tag_prefix) for t in c.get("metadata", {}).get("tags", []))
            for o in c.get("outputs", [])]


def needs_outputs(executed: Path) -> list[str]:
    """The text printed by the cells that begin with %%needs."""
    nb = json.loads(executed.read_text())
    return ["".join(o.get("text", "")) for c in nb["cells"] if "".join(c["source"]).startswith("%%needs")
            for o in c.get("outputs", [])]


def run_notebook(python, path: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTORIAL_EXERCISE", "PYTHONPATH"))}
    proc = subprocess.run([python, "-c", RUN_NOTEBOOK, str(path)], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path.with_name("executed.ipynb")


@pytest.mark.parametrize("number", ["00", "01", "04"])
def test_a_student_edition_runs_before_and_after_the_exercises_are_written_and_leaks_no_solution(
        number, environment, tmp_path):
    ch = chapter(number)
    edition = make_release(number, tmp_path / f"edition-{number}", ROOT)
    # What it holds: the chapters up to this one, visible tests only, no later chapter.
    assert sorted(p.name for p in (edition / "chapters").iterdir() if p.is_dir()) == \
        [c.slug for c in CHAPTERS if c.number <= number]
    assert not list((edition / "tests").glob("test_hidden_*")) and not (edition / "docs" / "site").exists()
    lines = distinctive_solution_lines(number)
    assert lines, "the search must have something to look for"
    assert leaks(edition, lines) == []
    subprocess.run([environment, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--force-reinstall",
                    str(edition)],
                   check=True, capture_output=True, timeout=600)
    installed = site_package(environment)
    assert str(installed).startswith(str(environment.parent.parent)), installed  # the edition's, not this checkout's
    assert leaks(installed, lines) == []
    # The learner's first run: every check says "not yet attempted", every cell that needs an
    # exercise says it is skipped, no cell fails.
    notebook = ch.folder(edition) / "notebook.ipynb"
    executed = run_notebook(environment, notebook)
    checks = outputs_of(executed, "check:")
    assert checks and all("not yet attempted" in out for out in checks), checks
    skipped = needs_outputs(executed)
    assert skipped and all("skipped until" in out for out in skipped), skipped
    # With the solutions written in: every check passes, every cell runs.
    executed = run_notebook(environment, filled(notebook, ch.folder(ROOT) / "notebook.ipynb"))
    checks = outputs_of(executed, "check:")
    assert checks and all(re.search(r"^\s*passed  ", out, re.M) for out in checks), checks
    # The grader of the edition grades the edition's exercise files.
    proc = subprocess.run([environment.parent / "fp8-tutorial", "grade", number], cwd=edition, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 1 and "not yet attempted" in proc.stdout, proc.stdout + proc.stderr


def test_a_release_into_a_folder_that_is_not_empty_is_refused(tmp_path):
    (tmp_path / "something").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        make_release("01", tmp_path, ROOT)


def test_hidden_tests_live_only_in_hidden_files():
    """A release drops tests/test_hidden_*.py: a hidden test anywhere else would ship."""
    marked = re.compile(r"^(pytestmark\b.*|@pytest)\.?.*mark\.hidden", re.M)
    for path in (ROOT / "tests").glob("test_*.py"):
        assert bool(marked.search(path.read_text())) == path.name.startswith("test_hidden_"), path.name


def test_every_chapter_has_hidden_graded_tests():
    names = {p.name for p in (ROOT / "tests").glob("test_hidden_ch*.py")}
    assert names == {f"test_hidden_ch{c.number}.py" for c in CHAPTERS if c.exercises}
    assert [c.number for c in CHAPTERS if not c.exercises] == ["07"]  # a chapter of measurement

