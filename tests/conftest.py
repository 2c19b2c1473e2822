"""Test set-up.

`tutorial` is imported first, so it chooses GPU or simulator before numba.cuda loads; its
lessons load when first used. `--impl exercise` runs the tests against the learners' exercise
files: they are put in place of the lesson modules before any test module imports one (see
tutorial.runtime.swap), so the learner's code runs wherever the library uses it.
`--chapter NN` keeps only that chapter's tests (and, with `--impl exercise`, swaps in only its
exercise files); `--exercise NAME[,NAME]` only those exercises' graded tests.
"""

import os
from pathlib import Path

import tutorial  # noqa: F401  (must precede any numba.cuda import)
from tutorial.course import grading
from tutorial.runtime import swap

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--impl", choices=grading.IMPLEMENTATIONS, default="solution",
                     help="test the library (solution) or the chapters' exercise files")
    parser.addoption("--chapter", default=None, help="only the tests of this chapter, e.g. 00; with "
                     "--impl exercise, only this chapter's exercise files are used")
    parser.addoption("--exercise", default=None, help="only the graded tests of these exercises, e.g. warp_max "
                     "or warp_max,block_max")
    parser.addoption("--isolate", default=None, help="with --impl exercise: this exercise from the learner's "
                     "file, the chapter's other exercises from the library")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded(function): a graded test of the exercise `function`")
    config.addinivalue_line("markers", "chapter(number): the chapter whose library code a test checks")
    config.addinivalue_line("markers", "hidden: a graded test the student edition leaves out (it lives in a "
                            "tests/test_hidden_*.py file); the instructor's grading runs it")
    if config.getoption("impl") == "exercise" and not os.environ.get(swap.FILES_VAR):  # the grader sets it itself
        wanted = config.getoption("chapter")
        env = grading.exercise_environment(ROOT, None if wanted is None else [wanted], config.getoption("isolate"))
        swap.install(swap.decode_files(env[swap.FILES_VAR]), [n for n in env[swap.LIBRARY_VAR].split(",") if n])


def pytest_collection_modifyitems(config, items):
    wanted, exercises = config.getoption("chapter"), config.getoption("exercise")
    exercises = None if exercises is None else exercises.split(",")

    def selected(item):
        chapter, graded = item.get_closest_marker("chapter"), item.get_closest_marker("graded")
        return ((wanted is None or (chapter is not None and chapter.args[0] == wanted.zfill(2)))
                and (exercises is None or (graded is not None and graded.args[0] in exercises)))

    keep = [item for item in items if selected(item)]
    config.hook.pytest_deselected(items=[item for item in items if not selected(item)])
    items[:] = keep


def pytest_report_header(config):
    return (f"tutorial device: {tutorial.SELECTION.mode} ({tutorial.SELECTION.reason}); "
            f"implementation under test: {config.getoption('impl')}")
