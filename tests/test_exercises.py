"""The exercises: generated from the solutions, up to date, and failing every graded test until solved."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tutorial.course import grading
from tutorial.course.chapters import CHAPTERS
from tutorial.course.exercises import (FINGERPRINT, NOT_ATTEMPTED, exercise_files, exercise_source, stale, state,
                                       stub_solutions, untouched, write_all)

ROOT = Path(__file__).resolve().parents[1]


def make_course(root, solved=(), hidden=False):
    """A course folder for the grader: the tests (the visible ones, as a student edition has
    them, unless `hidden`), and every chapter's exercise file freshly generated, with the
    exercises named in `solved` filled in with their solutions."""
    skip = ["__pycache__"] + ([] if hidden else ["test_hidden_*"])
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns(*skip))
    for ch, lesson, path in exercise_files(root):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exercise_source(ch, lesson, solved=set(solved) & set(lesson.exercises)))
    return root


def first_file(ch, root):
    """The chapter's first exercise file."""
    return ch.exercise_path(root, ch.exercised[0])


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def on_path(monkeypatch):
    """Grader subprocesses import this checkout's `tutorial`, installed or not."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def grade_cli(root, *args):
    return subprocess.run([sys.executable, "-m", "tutorial", "grade", *args], cwd=root,
                          capture_output=True, text=True, timeout=1200)


# -- generating exercise files, and never losing a learner's work -----------------------------


def test_committed_exercise_files_are_up_to_date():
    """An untouched stub must match what the solutions generate; a learner's edited file is theirs."""
    edited = [path.name for ch, lesson, path in exercise_files(ROOT) if state(path, ch, lesson) == "edited"]
    assert stale(ROOT) == [], "run `fp8-tutorial exercises` and commit the result"
    if edited:
        pytest.skip(f"{', '.join(edited)}: exercise files hold your edits, so they are not compared")


def test_exercises_command_keeps_edited_files_and_regenerates_untouched_ones(tmp_path, on_path):
    root = make_course(tmp_path / "course")
    ch00, ch01, ch02 = (first_file(ch, root) for ch in CHAPTERS[:3])
    mine = ch00.read_text().replace('raise NotImplementedError("fp8_to_float32_bits: not yet attempted")',
                                    "return 0  # my attempt")
    ch00.write_text(mine)
    ch01.write_text(ch01.read_text().replace("Chapter 01", "Chapter 01 (an older stub)").replace(
        FINGERPRINT, "# an old fingerprint: "))  # edited, as far as anyone can tell
    ch02.unlink()
    run = lambda *args: subprocess.run([sys.executable, "-m", "tutorial", "exercises", *args], cwd=root,
                                       capture_output=True, text=True, timeout=300)
    proc = run()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "chapters/00_fp8_formats/exercise.py: kept: it holds your edits" in proc.stdout
    assert ch00.read_text() == mine
    assert "chapters/02_per_tensor/exercise.py: written" in proc.stdout and ch02.exists()
    proc = run("--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ch00.read_text() == exercise_source(CHAPTERS[0])
    backups = list(ch00.parent.glob("exercise.py.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == mine
    assert "your version is in exercise.py." in proc.stdout


def test_an_untouched_stub_from_older_solutions_is_stale_and_regenerated(tmp_path):
    root = make_course(tmp_path / "course")
    ch = CHAPTERS[1]
    path = first_file(ch, root)
    # what the generator made before a docstring changed: consistent with its own fingerprint
    older = exercise_source(ch).replace("Fill in every TODO", "Fill in the TODOs")
    older_body = "".join(line for line in older.splitlines(keepends=True) if not line.startswith(FINGERPRINT))
    fingerprint = hashlib.sha256(older_body.encode()).hexdigest()[:16]
    path.write_text(re.sub(f"^{re.escape(FINGERPRINT)}\\w+", FINGERPRINT + fingerprint, older, flags=re.M))
    assert state(path, ch) == "stale" and path in stale(root)
    assert dict(write_all(root))[path] == "regenerated"
    assert state(path, ch) == "current"


def test_a_marked_region_becomes_a_todo_with_a_length_hint():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        "    y = 1\n"
        "    # BEGIN SOLUTION: add one\n"
        "    # a comment does not count\n"
        "    y = x + 1\n"
        "    return y\n"
        "    # END SOLUTION\n"
    )
    stub = stub_solutions(source)
    assert '    """Doc."""\n    y = 1\n' in stub
    assert "    # TODO (f): add one (roughly 2 lines)\n" in stub
    assert f'    raise NotImplementedError("f: {NOT_ATTEMPTED}")\n' in stub
    assert "x + 1" not in stub


def test_an_edited_stub_no_longer_counts_as_not_attempted(tmp_path):
    source = "def f(x):\n    # BEGIN SOLUTION: one\n    return x\n    # END SOLUTION\n"
    path = tmp_path / "exercise.py"
    path.write_text(stub_solutions(source))
    assert untouched(path) == {"f"}
    path.write_text(path.read_text().replace('    raise NotImplementedError("f: not yet attempted")', "    return 2 * x"))
    assert untouched(path) == set()


@pytest.mark.parametrize("source", ["    # BEGIN SOLUTION\n    x = 1\n", "    x = 1\n    # END SOLUTION\n"])
def test_unbalanced_markers_are_errors(source):
    with pytest.raises(ValueError, match="SOLUTION"):
        stub_solutions(source)


@pytest.mark.parametrize("ch", [ch for ch in CHAPTERS if ch.exercises], ids=lambda ch: ch.number)
def test_every_graded_test_fails_on_its_chapters_fresh_stubs(ch, tmp_path, on_path):
    """As the grader runs them: only this chapter's stubs swapped in, the library for the rest
    (hidden tests included)."""
    root = make_course(tmp_path / "course", hidden=True)
    # (60 s of CPU a test, not the grader's 120: the simulator's whole-GEMM tests take ~1 s, so
    # the limit only matters if one sticks, and then it must end well inside this test's own)
    results = grading.run_graded_tests(ch, root, impl="exercise", timeout_s=60)
    assert results, "no graded tests ran"
    passed = [nodeid for nodeid, r in results.items() if r["outcome"] == "passed"]
    assert passed == [], f"graded tests that pass on the untouched stubs: {passed}"
    untouched_stubs = set().union(*(untouched(path) for path in ch.exercise_paths(root)))
    summary = grading.summarize(results, untouched_stubs)
    assert all(e["status"] == "not yet attempted" for e in summary.values()), summary
    assert set(summary) == set(ch.exercises)


def test_chapters_list_exactly_the_exercises_their_stubs_hold():
    for ch, lesson, _ in exercise_files(ROOT):
        assert set(re.findall(r"# TODO \((\w+)\)", exercise_source(ch, lesson))) == set(lesson.exercises), lesson


def test_exercise_files_are_lesson_sized_and_list_their_todos():
    """Under 400 lines; a header naming each TODO's line; hints wrapped at 100 columns."""
    for ch, lesson, _ in exercise_files(ROOT):
        lines = exercise_source(ch, lesson).splitlines()
        assert len(lines) < 400, (lesson.file, len(lines))
        listed = [(int(m.group(1)), m.group(2)) for line in lines if (m := re.match(r"#   line +(\d+): (\w+)", line))]
        assert listed and {name for _, name in listed} == set(lesson.exercises)
        for number, name in listed:
            assert lines[number - 1].lstrip().startswith(f"# TODO ({name})"), (lesson.module, number)
        hints = [line for line in lines if line.lstrip().startswith(("# TODO", "#   "))]
        assert max(map(len, hints)) <= 100, lesson.module


def test_every_graded_test_says_what_its_input_shows():
    """The grader prints a failing test's docstring: each graded test must have one."""
    import ast

    missing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marks = " ".join(ast.get_source_segment(source, d) for d in node.decorator_list)
                if ("graded(" in marks or "_exercise" in marks) and not ast.get_docstring(node):
                    missing.append(f"{path.name}::{node.name}")
    assert missing == []


def test_grade_command_reports_each_exercise_a_score_and_an_exit_code(tmp_path, on_path):
    root = make_course(tmp_path / "course")
    proc = grade_cli(root, "00")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # not everything passed
    assert "not yet attempted  round_bits_to_fp8" in proc.stdout
    assert "not yet attempted  fp8_to_float32_bits" in proc.stdout
    assert "score: 0/2 exercises passed" in proc.stdout


def test_one_exercise_graded_by_name_and_exit_code_zero_when_it_passes(tmp_path, on_path):
    root = make_course(tmp_path / "course", solved={"warp_max"})
    proc = grade_cli(root, "01", "warp_max")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"passed  warp_max  \((\d+)/\1 tests\)", proc.stdout) and "block_max" not in proc.stdout
    assert "score: 1/1 exercises passed" in proc.stdout
    proc = grade_cli(root, "01", "round_bits_to_fp8")
    assert proc.returncode == 2 and "an exercise of chapter 00" in proc.stderr


@pytest.mark.parametrize("exercise", ["warp_max", "pack4", "row_group_kernel", "tile_kernel", "load_fragment_a",
                                      "load_fragment_b"])
def test_each_graded_test_counts_for_the_exercise_it_exercises(exercise, tmp_path, on_path):
    """With only `exercise` solved, every test counted for it passes: none of them needs
    another exercise of the chapter (the tests that do are those of exercises that build on it)."""
    root = make_course(tmp_path / "course", solved={exercise})
    _, graded, _ = grading.grade(exercise=exercise, root=root)
    (summary,) = graded.values()
    assert summary[exercise]["status"] == "passed", summary[exercise]


def run_with_exercises(root, chapters, code):
    """Run `code` in a fresh Python whose `tutorial` loads the chapters' exercise files under `root`."""
    env = dict(os.environ, **grading.exercise_environment(root, chapters))
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_learners_code_runs_wherever_the_library_uses_it(tmp_path, on_path):
    """The exercise file is loaded as the lesson module itself: the library's own entry points
    (tutorial.absmax; the tensor-core kernel behind scaled_matmul) run the learner's code."""
    root = make_course(tmp_path / "course", solved={"warp_max", "block_max", "absmax_kernel", "load_fragment_a",
                                                     "load_fragment_b"})
    edit(first_file(CHAPTERS[1], root), "    finish_grid_max(m, partials, counter, out)",
         "    finish_grid_max(m + float32(42.0), partials, counter, out)")  # the learner's bug
    proc = run_with_exercises(root, ["01"], "import tutorial; print(tutorial.absmax([1.0, -2.0]))")
    assert proc.stdout.strip() == "44.0", proc.stderr
    mma_file = CHAPTERS[5].exercise_path(root, CHAPTERS[5].lesson_of("load_fragment_a"))
    edit(mma_file, "sa[row0 + g, word0 + t + 4], sa[row0 + g + 8, word0 + t + 4])",
         "sa[row0 + g + 8, word0 + t + 4], sa[row0 + g, word0 + t + 4])")  # a2 and a3 swapped
    code = ("import numpy as np, tutorial; from tutorial.reference import blockwise_reference, scaled_matmul_reference\n"
            "rng = np.random.default_rng(0); a, b = rng.standard_normal((16, 64)), rng.standard_normal((64, 8))\n"
            "qa, qb = blockwise_reference(a, (1, 64)), blockwise_reference(b, (64, 8))\n"
            "c = tutorial.scaled_matmul(qa, qb, 'promote', kernel='tensor_core')\n"
            "print(np.abs(c - scaled_matmul_reference(qa, qb)).max() > 1e-3)")
    proc = run_with_exercises(root, ["05"], code)
    assert proc.stdout.strip() == "True", proc.stderr  # the swapped registers show in C


def test_an_exercise_that_fails_only_because_of_one_it_builds_on_is_blocked(tmp_path, on_path):
    root = make_course(tmp_path / "course", solved={"warp_max", "block_max", "absmax_kernel"})
    edit(first_file(CHAPTERS[1], root), "while offset > 0:", "while offset > 1:")  # a step short
    report, graded, ok = grading.grade("01", root=root)
    summary = graded["01"]
    assert not ok
    assert summary["warp_max"]["status"] == "failed"
    assert summary["block_max"]["status"] == "blocked"
    assert summary["block_max"]["first_failure"].startswith("depends on warp_max, which fails")
    assert summary["absmax_kernel"]["status"] == "blocked"
    assert "block_max: depends on" not in report and "depends on warp_max, which fails" in report
    # the report says what the failing test's input was meant to show, and where it went wrong
    assert "maximum, warp 0's in lane 0" in summary["warp_max"]["first_failure"]
    assert re.search(r"the first is \[\d+\] for input", summary["warp_max"]["first_failure"])


def test_a_stub_an_exercise_builds_on_is_named_as_not_yet_attempted(tmp_path, on_path):
    root = make_course(tmp_path / "course", solved={"block_max"})
    _, graded, _ = grading.grade("01", "block_max", root=root)
    e = graded["01"]["block_max"]
    assert e["status"] == "blocked", e
    assert e["first_failure"].startswith("depends on warp_max, which is not yet attempted")


def test_one_chapters_file_cannot_change_another_chapters_grade(tmp_path, on_path):
    root = make_course(tmp_path / "course", solved={"warp_max", "block_max", "absmax_kernel"})
    broken = first_file(CHAPTERS[0], root)
    broken.write_text(broken.read_text() + "\ndef oops(:\n")
    _, graded, ok = grading.grade("01", root=root)
    assert ok and all(e["status"] == "passed" for e in graded["01"].values()), graded
    _, graded, ok = grading.grade("00", root=root)
    assert not ok
    for e in graded["00"].values():
        assert e["status"] == "failed" and "does not import: SyntaxError: invalid syntax (line" in e["first_failure"], e


def test_an_exercise_that_fails_at_import_fails_its_own_chapter_only(tmp_path, on_path):
    root = make_course(tmp_path / "course", solved={"warp_max", "block_max", "absmax_kernel"})
    text = first_file(CHAPTERS[0], root).read_text()
    line = text.splitlines().index("import numpy as np") + 2
    edit(first_file(CHAPTERS[0], root), "import numpy as np\n", "import numpy as np\nundefined_name + 1\n")
    _, graded, _ = grading.grade("00", root=root)
    for e in graded["00"].values():
        assert e["status"] == "failed" and e["first_failure"] == (
            f"exercise.py does not import: NameError: name 'undefined_name' is not defined (line {line})"), e
    _, graded, ok = grading.grade("01", root=root)
    assert ok, graded  # chapter 01's lessons load chapter 00's library module, not the broken file


def test_a_wrong_answer_is_reported_with_the_first_wrong_element():
    with pytest.raises(AssertionError) as info:
        grading.assert_array_matches(np.array([0x38, 0x39], np.uint8), np.array([0x38, 0x38], np.uint8),
                                     inputs=np.float32([1.0, 1.0]), what="E4M3 code")
    message = str(info.value)
    assert "1 of 2 elements wrong" in message and "[1]" in message
    assert "expected 0x38, got 0x39" in message and "1.0 (float32 bits 0x3f800000)" in message


def test_element_indices_print_as_plain_lists():
    with pytest.raises(AssertionError, match=r"the first is \[0, 1\]: expected"):
        grading.assert_array_matches(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32) + np.eye(3, k=1,
                                                                                                     dtype=np.float32))


def test_wrong_shape_and_dtype_are_named():
    with pytest.raises(AssertionError, match=r"wrong shape \(3,\), expected \(2,\)"):
        grading.assert_array_matches(np.zeros(3), np.zeros(2))
    with pytest.raises(AssertionError, match="wrong dtype float64, expected uint8"):
        grading.assert_array_matches(np.zeros(2), np.zeros(2, np.uint8))


def test_grader_survives_an_endless_loop_and_reports_it(tmp_path, on_path):
    """A learner's decoder that never returns: that test is stopped, the others still run."""
    root = make_course(tmp_path / "course")
    ch = CHAPTERS[0]
    endless = "    n = 0\n    while n >= 0:\n        n = (n + 1) % 7\n    return sign\n"
    edit(first_file(ch, root), f'    raise NotImplementedError("fp8_to_float32_bits: {NOT_ATTEMPTED}")\n', endless)
    results = grading.run_graded_tests(ch, root, timeout_s=10)
    summary = grading.summarize(results, untouched(first_file(ch, root)))
    assert summary["fp8_to_float32_bits"]["status"] == "failed"
    assert "stopped after 10 s" in summary["fp8_to_float32_bits"]["first_failure"]
    assert summary["round_bits_to_fp8"]["status"] == "not yet attempted"
    from test_graded_ch00 import CASES  # every visible case has a result, run or given up on

    assert len(results) == len(CASES)
    hung = [r["message"] for r in results.values() if r["exercise"] == "fp8_to_float32_bits"]
    assert hung.count("stopped after 10 s of CPU time: an endless loop?") == grading.MAX_HANGS
    assert all(m.startswith(("stopped after", "not run: 2 of fp8_to_float32_bits's tests hung")) for m in hung), hung


HANGS_AT = {  # a course conftest that never lets the test process finish, at two places
    "exit": "import pytest\n@pytest.hookimpl(trylast=True)\ndef pytest_sessionfinish(session):\n"
            "    while True:\n        pass\n",
    "collection": "while True:\n    pass\n"}


@pytest.mark.parametrize("where", HANGS_AT)
def test_grader_stops_a_process_stuck_between_tests(tmp_path, on_path, where):
    """Outside any test (collecting, exiting) the same limit holds: after every test ran, the
    results stand; before, the grader says the process was stuck, rather than waiting for ever."""
    root = make_course(tmp_path / "course")
    with open(root / "tests" / "conftest.py", "a") as conftest:
        conftest.write("\n" + HANGS_AT[where])
    if where == "exit":
        results = grading.run_graded_tests(CHAPTERS[0], root, timeout_s=10)
        from test_graded_ch00 import CASES

        assert len(results) == len(CASES) and all(r["outcome"] == "failed" for r in results.values())
    else:
        with pytest.raises(RuntimeError, match="before running any graded test"):
            grading.run_graded_tests(CHAPTERS[0], root, timeout_s=10)


# -- exercises in the notebooks: check() -------------------------------------------------------

CHECK_SCRIPT = '''
import sys
import tutorial
from numba import cuda
from tutorial.reduction import FULL_MASK, nan_max
from tutorial.course.notebook import check, ready

exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"))  # the learner's cell, as a notebook runs it
check(warp_max, timeout_s=float(sys.argv[2]))
print("ready:", ready("warp_max"))
import numpy as np
if ready("warp_max"):
    print("library absmax:", tutorial.absmax(np.arange(100, dtype=np.float32)))
'''

WARP_MAX = '''
@cuda.jit(device=True)
def warp_max(v):
    offset = 16
    while offset > {stop}:
        v = nan_max(v, cuda.shfl_xor_sync(FULL_MASK, v, offset))
        offset //= 2
    return v
'''


@pytest.mark.parametrize("case, body, verdict", [
    ("a right answer", WARP_MAX.format(stop=0), r"passed  warp_max  \((\d+)/\1 tests\)"),
    ("a wrong answer", WARP_MAX.format(stop=1), r"failed  warp_max  \(\d+/\d+ tests\)"),
    ("an endless loop", WARP_MAX.format(stop=0).replace("offset //= 2", "offset = offset"), "stopped after 10 s"),
])
def test_check_grades_a_function_where_it_was_written(case, body, verdict, tmp_path, on_path):
    """check(warp_max) grades the notebook's own function with the graded tests, in other
    processes: a wrong answer names its first wrong element, an endless loop is stopped, and
    the caller goes on; a passing one takes the library's place."""
    cell = tmp_path / "cell.py"
    cell.write_text(body)
    proc = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(cell), "10"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(verdict, proc.stdout), proc.stdout
    assert ("ready: True" in proc.stdout) == (case == "a right answer")
    if case == "a right answer":
        assert "library absmax: 99.0" in proc.stdout  # tutorial.absmax ran the checked warp_max
    if case == "a wrong answer":
        assert "the first is [" in proc.stdout and "expected" in proc.stdout


def test_a_chapter_without_exercises_is_not_graded(tmp_path):
    """Chapter 07 measures and has no exercise: graders say so by name, and grading every
    chapter leaves it out."""
    from tutorial.course.autograde import autograde

    with pytest.raises(ValueError, match="chapter 07 has no exercises to grade; chapters with exercises: 00, 01"):
        grading.grade("07")
    with pytest.raises(ValueError, match="chapter 07 has no exercises"):
        autograde("07", tmp_path / "out", [])
    assert "07" not in {ch.number for ch in CHAPTERS if ch.exercises}
