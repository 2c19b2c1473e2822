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
    parser.addoption("--chapter", default=None, help="only the tests of this chapter, e.g. 00")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded(function): a graded test of the exercise `function`")
    config.addinivalue_line("markers", "chapter(number): the chapter whose library code a test checks")
    grading.use(config.getoption("impl"), ROOT)


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("chapter")
    if wanted is None:
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("chapter")
        (keep if mark and mark.args[0] == wanted.zfill(2) else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_report_header(config):
    return (f"tutorial device: {tutorial.SELECTION.mode} ({tutorial.SELECTION.reason}); "
            f"implementation under test: {config.getoption('impl')}")
