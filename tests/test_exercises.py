"""The exercises: generated from the solutions, up to date, and failing every graded test until solved."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial import grading
from tutorial.chapters import CHAPTERS
from tutorial.exercises import NOT_ATTEMPTED, stale, stub_solutions, untouched

ROOT = Path(__file__).resolve().parents[1]


def test_committed_exercise_files_are_up_to_date():
    assert stale(ROOT) == [], "run `fp8-tutorial exercises` and commit the result"


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


def test_every_chapter_with_an_exercise_has_graded_tests_that_all_fail_on_the_stubs():
    results = grading.run_graded_tests(None, ROOT, impl="exercise")
    assert results, "no graded tests ran"
    exercises = {r["exercise"] for r in results.values()}
    for ch in CHAPTERS:
        assert ch.exercise_path(ROOT).exists()
    passed = [nodeid for nodeid, r in results.items() if r["outcome"] == "passed"]
    assert passed == [], f"graded tests that pass on the untouched stubs: {passed}"
    untouched_stubs = set().union(*(untouched(ch.exercise_path(ROOT)) for ch in CHAPTERS))
    summary = grading.summarize(results, untouched_stubs)
    assert all(e["status"] == "not yet attempted" for e in summary.values()), summary
    assert exercises == set(summary)


def test_graded_tests_all_pass_on_the_solutions():
    results = grading.run_graded_tests(None, ROOT, impl="solution")
    failed = {nodeid: r["message"][:300] for nodeid, r in results.items() if r["outcome"] != "passed"}
    assert results and failed == {}


def test_grade_command_reports_each_exercise_and_a_score():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "tutorial", "grade", "00"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "not yet attempted  round_bits_to_fp8" in proc.stdout
    assert "not yet attempted  fp8_to_float32_bits" in proc.stdout
    assert "score: 0/2 exercises passed" in proc.stdout


def test_a_wrong_answer_is_reported_with_the_first_wrong_element(tmp_path):
    import numpy as np

    with pytest.raises(AssertionError) as info:
        grading.assert_array_matches(np.array([0x38, 0x39], np.uint8), np.array([0x38, 0x38], np.uint8),
                                     inputs=np.float32([1.0, 1.0]), what="E4M3 code")
    message = str(info.value)
    assert "1 of 2 elements wrong" in message and "[1]" in message
    assert "expected 0x38, got 0x39" in message and "1.0 (float32 bits 0x3f800000)" in message


def test_an_exercise_that_does_not_import_fails_only_its_own_tests(tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "course"
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for ch in CHAPTERS:
        ch.exercise_path(root).parent.mkdir(parents=True)
        shutil.copy(ch.exercise_path(ROOT), ch.exercise_path(root))
    broken = CHAPTERS[0].exercise_path(root)
    broken.write_text(broken.read_text() + "\ndef oops(:\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    results = grading.run_graded_tests(None, root)
    broken_file = [r for nodeid, r in results.items() if nodeid.endswith("test_fp8.py")]
    assert broken_file and "could not import" in broken_file[0]["message"]
    assert "SyntaxError" in broken_file[0]["message"]
    assert any(r["exercise"] == "warp_max" for r in results.values())  # chapter 01 is still graded


def test_wrong_shape_and_dtype_are_named():
    import numpy as np

    with pytest.raises(AssertionError, match=r"wrong shape \(3,\), expected \(2,\)"):
        grading.assert_array_matches(np.zeros(3), np.zeros(2))
    with pytest.raises(AssertionError, match="wrong dtype float64, expected uint8"):
        grading.assert_array_matches(np.zeros(2), np.zeros(2, np.uint8))


def test_grader_survives_an_endless_loop_and_reports_it(tmp_path, monkeypatch):
    """A learner's decoder that never returns: that test is stopped, the others still run."""
    import shutil

    root = tmp_path / "course"
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    ch = CHAPTERS[0]
    ch.exercise_path(root).parent.mkdir(parents=True)
    text = ch.exercise_path(ROOT).read_text()
    endless = "    n = 0\n    while n >= 0:\n        n = (n + 1) % 7\n    return sign\n"
    text = text.replace(f'    raise NotImplementedError("fp8_to_float32_bits: {NOT_ATTEMPTED}")\n', endless)
    ch.exercise_path(root).write_text(text)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    results = grading.run_graded_tests(ch, root, timeout_s=10)
    summary = grading.summarize(results, untouched(ch.exercise_path(root)))
    assert summary["fp8_to_float32_bits"]["status"] == "failed"
    assert "stopped after 10 s" in summary["fp8_to_float32_bits"]["first_failure"]
    assert summary["round_bits_to_fp8"]["status"] == "not yet attempted"
    assert len(results) == len(grading.run_graded_tests(ch, ROOT, impl="solution"))
