"""`fp8-tutorial autograde`: a class's chapter 01, graded in one run, forgers and saboteurs included.

Every hole the issue found is a submission here, graded beside a correct one and beside each
other (two at a time), and each must cost only its own points: a forged verdict earns nothing,
a crash, a hang or a flood is reported as such, and a neighbour's grade and files stay as
they were. One run grades them all (the simulator is slow; the submissions are not).
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tutorial
from tutorial.course import sandbox
from tutorial.course.chapters import chapter
from tutorial.course.exercises import exercise_source

ROOT = Path(__file__).resolve().parents[1]
CH = chapter("01")
LESSON = CH.exercised[0]
SOLVED = exercise_source(CH, LESSON, solved=set(LESSON.exercises))
STUB = exercise_source(CH, LESSON)
TIMEOUT_S = 30  # CPU seconds per case: the longest correct case (1024 simulated threads) uses ~13; hangs reach it
pytestmark = [pytest.mark.skipif(not tutorial.ON_SIMULATOR, reason="grades on the simulator (a GPU run is the same code)"),
              pytest.mark.xdist_group("autograde")]  # one worker grades the class once for all these tests


def replace_body(source, name, body):
    """`source` with function `name`'s body replaced by `body` (indented lines)."""
    from tutorial.runtime.sources import function_source, replace_function

    old = function_source(source, name)
    header = old[:old.index("):") + 2] if "):" in old else old.splitlines()[0]
    decorators = "".join(line + "\n" for line in old.splitlines() if line.startswith("@"))
    header = header[header.index("def "):] if "def " in header else header
    return replace_function(source, name, decorators + header + "\n" + body)


CONFTEST_FORGERY = """
import pytest
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
"""

SUBMISSIONS = {
    # the holes of issue 18, one student each
    "star_import": STUB + "\nfrom tutorial.reduction import *\n",
    "calls_library": STUB.replace('raise NotImplementedError("warp_max: not yet attempted")',
                                  "import tutorial.reduction as r; return r.warp_max(value)"),
    "fake_report": STUB + ("\nimport json, os\npath = os.environ.get('TUTORIAL_GRADE_REPORT', 'report.json')\n"
                           "open(path, 'w').write(json.dumps({'results': {}, 'running': None, 'finished': True}))\n"
                           "os._exit(0)\n"),
    "conftest_hook": STUB,  # with the hookwrapper below in its tests/conftest.py, as every submission here
    "gc_plugin": STUB + ("\nimport gc\nfor o in gc.get_objects():\n"
                         "    if type(o).__name__ == 'ReportPlugin':\n"
                         "        o.results = {k: dict(v, outcome='passed') for k, v in o.results.items()}\n"),
    "step_short": SOLVED.replace("while offset > 0:", "while offset > 1:"),
    "patched_judge": SOLVED.replace("while offset > 0:", "while offset > 1:") + (
        "\nimport numpy as np\nfrom tutorial.course import grading\n"
        "grading.assert_array_matches = lambda *args, **kwargs: None\nnp.isnan = lambda x: np.ones_like(x, bool)\n"),
    # leaking out of its box
    "hangs_at_import": SOLVED + "\nwhile True:\n    pass\n",
    "exits_at_import": SOLVED + "\nimport sys\nsys.exit(0)\n",
    "aborts_at_import": SOLVED + "\nimport os\nos._exit(1)\n",
    "floods": SOLVED + "\nimport sys\nfor _ in range(110):\n    sys.stdout.write('x' * (1 << 20))\n",
    "fills_disk": SOLVED + ("\nwith open('filler', 'wb') as f:\n    for _ in range(400):\n"
                            "        f.write(bytes(1 << 20))\n"),
    # a crash and a hang in one exercise cost that exercise only
    "crashes_in_absmax": replace_body(SOLVED, "absmax_kernel", "    import os\n    os._exit(3)\n"),
    "hangs_in_absmax": replace_body(SOLVED, "absmax_kernel", "    while True:\n        pass\n"),
    # the correct one, and one that writes into its neighbour's file
    "correct": SOLVED,
    "neighbour": SOLVED + "\n",  # rewritten below: it needs the folder's path
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    class_folder = tmp_path_factory.mktemp("class")
    for student, text in SUBMISSIONS.items():
        folder = class_folder / student
        (folder / "chapters" / CH.slug).mkdir(parents=True)
        (folder / "chapters" / CH.slug / "exercise.py").write_text(text)
        # what a forger would put beside its exercise file: never read
        (folder / "tests").mkdir()
        (folder / "tests" / "conftest.py").write_text(CONFTEST_FORGERY)
        (folder / "tutorial").mkdir()
        (folder / "tutorial" / "__init__.py").write_text("raise SystemExit('the submission's own package ran')\n")
    victim = class_folder / "correct" / "chapters" / CH.slug / "exercise.py"
    vandal = SOLVED + f"\ntry:\n    open({str(victim)!r}, 'w').write('# gone\\n')\nexcept OSError:\n    pass\n"
    (class_folder / "neighbour" / "chapters" / CH.slug / "exercise.py").write_text(vandal)
    out = tmp_path_factory.mktemp("grades")
    proc = subprocess.run([sys.executable, "-m", "tutorial", "autograde", "--chapter", "01", "--out", str(out), "-j", "2",
                           "--timeout", str(TIMEOUT_S), "--seed", "7",  # the hangs first: they take longest
                           *[str(class_folder / s) for s in sorted(SUBMISSIONS, key=lambda s: "hang" not in s)]],
                          cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    return {"out": out, "rows": rows, "victim": victim, "stdout": proc.stdout}


def points(graded, student, exercise=None):
    return sum(float(r["points"]) for r in graded["rows"] if r["student"] == student
               and (exercise is None or r["exercise"] == exercise))


def report(graded, student):
    return (graded["out"] / student / "report.txt").read_text()


def test_a_correct_submission_gets_full_marks_and_the_gradebook_has_its_columns(graded):
    assert list(graded["rows"][0]) == ["student", "exercise", "points", "max_points", "status"]
    mine = [r for r in graded["rows"] if r["student"] == "correct"]
    assert [r["exercise"] for r in mine] == list(CH.exercises)
    assert all(r["status"] == "passed" and float(r["points"]) == float(r["max_points"]) == 10 for r in mine), mine


@pytest.mark.parametrize("student", ["star_import", "calls_library", "conftest_hook", "fake_report", "gc_plugin"])
def test_forged_verdicts_earn_nothing(graded, student):
    """The library in the box is the student edition (no solutions to import or call), the
    verdict is computed outside it (no report, plugin or hook to forge)."""
    assert points(graded, student) == 0, report(graded, student)


def test_patching_the_judges_comparison_does_not_pass_a_wrong_answer(graded):
    """warp_max a step short, with grading.assert_array_matches and np.isnan patched in the box,
    earns exactly what the same wrong answer earns unpatched: less than full marks."""
    for exercise in CH.exercises:
        assert points(graded, "patched_judge", exercise) == points(graded, "step_short", exercise)
    assert points(graded, "patched_judge", "warp_max") < 10
    assert "failed  warp_max" in report(graded, "patched_judge")


@pytest.mark.parametrize("student, why", [
    ("hangs_at_import", f"stopped after {TIMEOUT_S} s of CPU time"),
    ("exits_at_import", "SystemExit"),
    ("aborts_at_import", "exit code 1"),
])
def test_a_submission_that_hangs_or_exits_at_import_is_reported_and_scores_zero(graded, student, why):
    text = report(graded, student)
    assert points(graded, student) == 0 and why in text, text


def test_a_flood_of_output_and_a_full_disk_are_stopped_and_reported(graded):
    assert "printed more than" in report(graded, "floods"), report(graded, "floods")
    assert points(graded, "floods") == 0
    text = report(graded, "fills_disk")
    assert points(graded, "fills_disk") == 0 and ("File too large" in text or "No space left" in text), text


@pytest.mark.parametrize("student, why", [("crashes_in_absmax", "exit code 3"),
                                          ("hangs_in_absmax", f"stopped after {TIMEOUT_S} s of CPU time")])
def test_a_crash_or_hang_in_one_exercise_costs_only_that_exercises_points(graded, student, why):
    assert points(graded, student, "warp_max") == points(graded, student, "block_max") == 10, report(graded, student)
    assert points(graded, student, "absmax_kernel") == 0 and why in report(graded, student)


def test_a_neighbours_write_changes_neither_the_grade_nor_where_namespaces_exist_the_file(graded):
    assert points(graded, "correct") == 30
    if sandbox.containment() == sandbox.NAMESPACES:
        assert graded["victim"].read_text() == SOLVED
    else:  # the same user can write there: the grade is of the copy, and the report says the file changed
        assert "changed while the class was graded" in report(graded, "correct")


def test_gradescope_results_give_every_case_and_hide_the_hidden_ones(graded):
    results = json.loads((graded["out"] / "correct" / "results.json").read_text())
    assert results["score"] == pytest.approx(30)
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
    assert all(set(t) >= {"name", "score", "max_score", "output", "visibility"} for t in results["tests"])
    summary = json.loads((graded["out"] / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["hidden_cases"] > 0 and summary["containment"] == sandbox.containment()


def test_the_report_is_the_learners_graders(graded):
    text = report(graded, "patched_judge")
    assert "score: " in text and "failed  warp_max" in text and "the first is [" in text, text


def test_a_notebook_submission_is_graded_like_its_exercise_file(tmp_path):
    """The instructor's chapter 01 notebook (its exercise cells hold the solutions): full marks;
    with warp_max's cell a step short: warp_max fails."""
    from tutorial.course.autograde import read_submission

    notebook = CH.folder(ROOT) / "notebook.ipynb"
    sub = read_submission(notebook, CH)
    assert sub.student == "notebook" and not sub.problems
    text = sub.files[LESSON.module]
    assert "while offset > 0:" in text and "not yet attempted\")" not in text.split("def warp_max")[1].split("\ndef ")[0]
    broken = json.loads(notebook.read_text())
    for cell in broken["cells"]:
        if "exercise:warp_max" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = ["def warp_max(value:\n"]
    (tmp_path / "alice.ipynb").write_text(json.dumps(broken))
    sub = read_submission(tmp_path / "alice.ipynb", CH)
    assert sub.student == "alice" and "does not parse" in sub.problems["warp_max"]


def test_bad_arguments_are_clear_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tutorial", "autograde", "--chapter", "01", "--out", str(tmp_path),
                           str(tmp_path / "nobody")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no submission at" in proc.stderr, proc.stderr
    (tmp_path / "points.json").write_text(json.dumps({"points": {"no_such_exercise": 3}}))
    (tmp_path / "s.py").write_text(STUB)
    proc = subprocess.run([sys.executable, "-m", "tutorial", "autograde", "--chapter", "01", "--out", str(tmp_path / "o"),
                           "--points", str(tmp_path / "points.json"), str(tmp_path / "s.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no_such_exercise" in proc.stderr, proc.stderr
