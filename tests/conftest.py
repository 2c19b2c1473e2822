"""Test set-up.

`tutorial` is imported first, so it chooses GPU or simulator before numba.cuda loads.
`--impl exercise` runs the tests against the learners' exercise files instead of the library
(see tutorial.grading); `--chapter NN` keeps only that chapter's tests.
"""

from pathlib import Path


import tutorial  # noqa: F401  (must precede any numba.cuda import)
from tutorial import grading

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--impl", choices=grading.IMPLEMENTATIONS, default="solution",
                     help="test the library (solution) or the chapters' exercise.py files")
    parser.addoption("--chapter", default=None, help="only the tests of this chapter, e.g. 00; with "
                     "--impl exercise, only this chapter's exercise file is used")
    parser.addoption("--exercise", default=None, help="only the graded tests of these exercises, e.g. warp_max "
                     "or warp_max,block_max")
    parser.addoption("--isolate", default=None, help="with --impl exercise: this exercise from the learner's "
                     "file, the chapter's other exercises from the library")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded(function): a graded test of the exercise `function`")
    config.addinivalue_line("markers", "chapter(number): the chapter whose library code a test checks")
    wanted = config.getoption("chapter")
    grading.use(config.getoption("impl"), ROOT, chapters=None if wanted is None else [wanted],
                isolate=config.getoption("isolate"))


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
