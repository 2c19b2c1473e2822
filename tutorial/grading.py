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
import time
from pathlib import Path

import numpy as np

from .chapters import CHAPTERS, Chapter, chapter
from .exercises import NOT_ATTEMPTED, untouched

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
        if ch is None:  # no exercise made from this module (yet): its tests check the library
            return importlib.import_module(module_name)
        from .chapters import find_root

        path = ch.exercise_path(_root or find_root())
        try:
            spec = importlib.util.spec_from_file_location(f"exercise_{ch.slug}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # numba looks functions' modules up here
            spec.loader.exec_module(module)
        except Exception as exc:  # a learner's syntax error must fail that chapter's tests only
            module = _Unloadable(path, exc)
        _loaded[module_name] = module
    return _loaded[module_name]


class _Unloadable:
    """Stands in for an exercise file that cannot be imported: every use says why."""

    def __init__(self, path, error):
        self._message = f"could not import {path}: {type(error).__name__}: {error}"

    def __getattr__(self, name):
        raise RuntimeError(self._message)


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
    """Writes, after every graded test, its exercise, outcome and message to a JSON file, and
    which test is running: if a learner's code hangs or crashes the process, the grader still
    knows what happened to every test before it, and which one never finished."""

    def __init__(self, path: str, done: set[str]):
        self.path = Path(path)
        self.done = done  # tests finished in an earlier process: not run again
        self.exercise_of: dict[str, str] = {}
        self.results: dict[str, dict] = json.loads(self.path.read_text())["results"] if self.path.exists() else {}
        self.running: dict | None = None  # {"nodeid", "exercise"} of the test under way

    def _write(self, finished: bool = False):
        partial = self.path.with_suffix(".partial")  # the grader reads this file while we run
        state = {"results": self.results, "running": self.running, "finished": finished}
        partial.write_text(json.dumps(state, indent=1))
        os.replace(partial, self.path)

    def pytest_collection_modifyitems(self, config, items):
        keep = [item for item in items if item.nodeid not in self.done]
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in self.done])
        items[:] = keep
        for item in items:
            mark = item.get_closest_marker("graded")
            if mark and mark.args:
                self.exercise_of[item.nodeid] = mark.args[0]

    def pytest_collectreport(self, report):
        """A test file that cannot even be collected (its exercise does not import) is one
        failure, named for the file, so that the other chapters are still graded."""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            self.results[report.nodeid] = {"exercise": f"(importing {report.nodeid})", "outcome": "failed",
                                           "message": crash.message if crash else str(report.longrepr)[-2000:]}
            self._write()

    def pytest_runtest_logstart(self, nodeid, location):
        if nodeid in self.exercise_of:
            self.running = {"nodeid": nodeid, "exercise": self.exercise_of[nodeid], "started": time.time()}
            self._write()

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.exercise_of or (report.when != "call" and report.passed):
            return
        entry = self.results.get(report.nodeid)
        if entry and entry["outcome"] == "failed":
            return  # keep the first failure (a call's, rather than its teardown's)
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash else str(report.longrepr)
        self.results[report.nodeid] = {"exercise": self.exercise_of[report.nodeid],
                                       "outcome": report.outcome, "message": message}
        self.running = None
        self._write()

    def pytest_sessionfinish(self, session):
        self.running = None
        self._write(finished=True)


def pytest_configure(config):  # used when this module is loaded with `-p tutorial.grading`
    path = os.environ.get("TUTORIAL_GRADE_REPORT")
    if path:
        done = set(json.loads(Path(path).read_text())["results"]) if Path(path).exists() else set()
        config.pluginmanager.register(ReportPlugin(path, done), "tutorial-grade-report")


# -- the grader -------------------------------------------------------------------------------


def run_graded_tests(ch: Chapter | None, root: Path, impl: str = "exercise", timeout_s: float = 120,
                     max_restarts: int = 50) -> dict:
    """Run the graded tests in fresh processes; return {nodeid: {exercise, outcome, message}}.

    The grader watches the clock itself: a learner's endless loop in compiled code holds the
    GIL, so no timer inside the test process could interrupt it. A test that runs longer than
    `timeout_s`, or crashes the process, is recorded as failed, and a new process carries on
    with the tests after it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, TUTORIAL_GRADE_REPORT=str(report))
        cmd = [sys.executable, "-m", "pytest", str(root / "tests"), "-q", "-p", "no:cacheprovider",
               "-p", "tutorial.grading", f"--impl={impl}", "-m", "graded", "--rootdir", str(root),
               "-o", "addopts=", "-p", "no:timeout", "--continue-on-collection-errors"]
        if ch is not None:
            cmd += ["--chapter", ch.number]
        for _ in range(max_restarts):
            code, output = _run_watched(cmd, root, env, report, timeout_s)
            if not report.exists():
                raise RuntimeError(f"the test run ended before running any graded test (exit {code}):\n"
                                   + output[-3000:])
            state = json.loads(report.read_text())
            if state.get("finished"):
                return state["results"]
            if state["running"] is None:  # died between tests: not a learner's test to blame
                raise RuntimeError(f"the test process ended unexpectedly (exit {code}):\n" + output[-3000:])
            why = (f"stopped after {timeout_s:g} s: an endless loop?" if code is None else
                   f"the test process crashed (exit code {code})")
            state["results"][state["running"]["nodeid"]] = {
                "exercise": state["running"]["exercise"], "outcome": "failed", "message": why}
            state["running"] = None
            state["finished"] = False
            report.write_text(json.dumps(state))
        raise RuntimeError(f"gave up after {max_restarts} restarts of the test process")


def _run_watched(cmd, cwd, env, report: Path, timeout_s: float):
    """Run `cmd`; kill it when one test has run for `timeout_s`. Returns (exit code or None, output)."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            time.sleep(0.2)
            try:
                running = json.loads(report.read_text())["running"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                continue  # not started yet, or caught mid-write
            if running and time.time() - running["started"] > timeout_s:
                proc.kill()
                proc.wait()
                log.seek(0)
                return None, log.read()
        log.seek(0)
        return proc.returncode, log.read()


def summarize(results: dict, not_attempted: set[str] = frozenset()) -> dict[str, dict]:
    """Per exercise: counts, a status, and the first failure's message.

    `not_attempted`: the exercises whose stubs are untouched in the learner's file.
    """
    exercises: dict[str, dict] = {}
    for nodeid, r in results.items():
        e = exercises.setdefault(r["exercise"], {"passed": 0, "failed": 0, "not_attempted": 0, "first_failure": None})
        if r["outcome"] == "passed":
            e["passed"] += 1
            continue
        if r["exercise"] in not_attempted or NOT_ATTEMPTED in r["message"]:
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
    not_attempted = set().union(*(untouched(c.exercise_path(root)) for c in ([ch] if ch else CHAPTERS)
                                  if c.exercise_path(root).exists()))
    exercises = summarize(run_graded_tests(ch, root), not_attempted)
    return format_report(exercises), exercises
