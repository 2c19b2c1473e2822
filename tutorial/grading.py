"""Grading: the same tests, run against the solutions or against a learner's exercise files.

* Tests get the module under test from :func:`load` (``fp8 = grading.load("tutorial.fp8")``):
  the library module, or, under ``pytest --impl exercise``, the chapter's ``exercise.py``.
* Graded tests carry ``@pytest.mark.graded("<function the learner writes>")``.
* ``fp8-tutorial grade [chapter]`` runs the graded tests in a separate process (so that a
  learner's crash or endless loop cannot take the grader down), with a time limit per test,
  and prints passed / failed / not yet attempted per exercise, the first failure's message,
  and a score.
* :func:`assert_array_matches` is the comparison the graded tests use: it checks shape and
  dtype first, then names the first wrong element, its input, and what was expected.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .chapters import CHAPTERS, Chapter, chapter
from .exercises import NOT_ATTEMPTED

IMPLEMENTATIONS = ("solution", "exercise")
_impl = "solution"
_root: Path | None = None
_loaded: dict[str, object] = {}


def use(impl: str, root: Path | None = None) -> None:
    """Choose what :func:`load` returns: the library ("solution") or the exercise files."""
    global _impl, _root
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    _impl, _root = impl, Path(root) if root else None
    _loaded.clear()


def load(module_name: str):
    """The module under test: `module_name` itself, or the exercise generated from it."""
    if _impl == "solution":
        return importlib.import_module(module_name)
    if module_name not in _loaded:
        ch = next((c for c in CHAPTERS if c.solution_module == module_name), None)
        if ch is None:
            raise ValueError(f"no chapter has an exercise for {module_name}")
        from .chapters import find_root

        path = ch.exercise_path(_root or find_root())
        spec = importlib.util.spec_from_file_location(f"exercise_{ch.slug}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # numba looks functions' modules up here
        spec.loader.exec_module(module)
        _loaded[module_name] = module
    return _loaded[module_name]


# -- messages a learner can act on --------------------------------------------------------


def _describe(value) -> str:
    value = np.asarray(value)
    if value.dtype == np.uint8:
        return f"{int(value):#04x}"
    if value.dtype.kind == "f":
        bits = value.astype(np.float32).reshape(1).view(np.uint32)[0]
        return f"{float(value)!r} (float32 bits {bits:#010x})"
    return repr(value.item())


def assert_array_matches(got, want, *, inputs=None, what="result") -> None:
    """Assert `got` equals `want` exactly (NaN matches NaN), explaining the first difference."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: wrong shape {got.shape}, expected {want.shape}")
    if got.dtype != want.dtype:
        raise AssertionError(f"{what}: wrong dtype {got.dtype}, expected {want.dtype}")
    same = got == want
    if want.dtype.kind == "f":
        same |= np.isnan(got) & np.isnan(want)
        same &= np.signbit(got) == np.signbit(want)
    bad = np.flatnonzero(~same)
    if bad.size == 0:
        return
    i = bad[0]
    where = np.unravel_index(i, got.shape) if got.ndim > 1 else i
    message = f"{what}: {bad.size} of {got.size} elements wrong; the first is [{where}]"
    if inputs is not None:
        message += f" for input {_describe(np.asarray(inputs).reshape(-1)[i])}"
    message += f": expected {_describe(want.reshape(-1)[i])}, got {_describe(got.reshape(-1)[i])}"
    if want.dtype.kind == "f" and np.isnan(got).any() and not np.isnan(want).any():
        message += f" (the result holds {int(np.isnan(got).sum())} NaNs where none were expected)"
    raise AssertionError(message)


# -- the pytest side: a plugin that writes what happened to each graded test ----------------


class ReportPlugin:
    """Collects, for every graded test, its exercise, outcome and message, into a JSON file."""

    def __init__(self, path: str):
        self.path = path
        self.exercise_of: dict[str, str] = {}
        self.results: dict[str, dict] = {}

    def pytest_collection_modifyitems(self, items):
        for item in items:
            mark = item.get_closest_marker("graded")
            if mark and mark.args:
                self.exercise_of[item.nodeid] = mark.args[0]

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.exercise_of:
            return
        if report.when != "call" and report.passed:
            return
        message = ""
        if report.failed:
            message = str(getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message
                          or report.longrepr)
        entry = self.results.get(report.nodeid)
        if entry and entry["outcome"] == "failed":
            return  # keep the first failure (call before teardown)
        self.results[report.nodeid] = {"exercise": self.exercise_of[report.nodeid],
                                       "outcome": report.outcome, "message": message}

    def pytest_sessionfinish(self, session):
        Path(self.path).write_text(json.dumps(self.results, indent=1))


def pytest_configure(config):  # used when this module is loaded with `-p tutorial.grading`
    path = os.environ.get("TUTORIAL_GRADE_REPORT")
    if path:
        config.pluginmanager.register(ReportPlugin(path), "tutorial-grade-report")


# -- the grader -------------------------------------------------------------------------------


def run_graded_tests(ch: Chapter | None, root: Path, impl: str = "exercise", timeout_s: int = 120) -> dict:
    """Run the graded tests in a fresh process; return {nodeid: {exercise, outcome, message}}."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, TUTORIAL_GRADE_REPORT=str(report))
        cmd = [sys.executable, "-m", "pytest", str(root / "tests"), "-q", "-p", "no:cacheprovider",
               "-p", "tutorial.grading", f"--impl={impl}", "-m", "graded", f"--timeout={timeout_s}",
               "--rootdir", str(root), "-o", "addopts="]
        if ch is not None:
            cmd += ["--chapter", ch.number]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        if not report.exists():
            raise RuntimeError(f"the test run ended before reporting (exit {proc.returncode}):\n"
                               + (proc.stdout + proc.stderr)[-3000:])
        return json.loads(report.read_text())


def summarize(results: dict) -> dict[str, dict]:
    """Per exercise: counts, a status, and the first failure's message."""
    exercises: dict[str, dict] = {}
    for nodeid, r in results.items():
        e = exercises.setdefault(r["exercise"], {"passed": 0, "failed": 0, "not_attempted": 0, "first_failure": None})
        if r["outcome"] == "passed":
            e["passed"] += 1
            continue
        if NOT_ATTEMPTED in r["message"]:
            e["not_attempted"] += 1
        else:
            e["failed"] += 1
            if e["first_failure"] is None:
                e["first_failure"] = f"{nodeid.split('::')[-1]}: {r['message'].strip()}"
    for e in exercises.values():
        total = e["passed"] + e["failed"] + e["not_attempted"]
        e["status"] = ("passed" if e["passed"] == total else
                       "not yet attempted" if e["not_attempted"] == total else "failed")
    return exercises


def format_report(exercises: dict[str, dict]) -> str:
    lines, done = [], 0
    for name, e in sorted(exercises.items()):
        total = e["passed"] + e["failed"] + e["not_attempted"]
        lines.append(f"{e['status']:>18}  {name}  ({e['passed']}/{total} tests)")
        if e["first_failure"]:
            lines.append(" " * 20 + e["first_failure"].replace("\n", "\n" + " " * 20)[:1500])
        done += e["status"] == "passed"
    lines.append(f"score: {done}/{len(exercises)} exercises passed")
    return "\n".join(lines)


def grade(key: str | None = None, root: Path | None = None) -> tuple[str, dict]:
    from .chapters import find_root

    root = Path(root) if root else find_root()
    ch = chapter(key) if key else None
    exercises = summarize(run_graded_tests(ch, root))
    return format_report(exercises), exercises
