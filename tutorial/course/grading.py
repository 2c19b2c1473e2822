"""Grading: the same tests, run against the solutions or against a learner's exercise files.

* Tests import the library as usual. Under `pytest --impl exercise` (and in the grader) the
  chapters' exercise files are loaded *as* the lesson modules they were carved from
  ([`tutorial.runtime.swap`][tutorial.runtime.swap]), so the learner's code runs wherever the
  library uses it; [`exercise_environment`][] says which files.
* Graded tests carry `@pytest.mark.graded("<function the learner writes>")`.
* `fp8-tutorial grade [chapter [exercise]]` runs the graded tests in separate processes
  (so that a learner's crash or endless loop cannot take the grader down), one chapter at a
  time with only that chapter's exercise file swapped in, with a time limit per test. It
  prints passed / failed / blocked (an exercise it builds on fails) / not yet attempted per
  exercise, what the first failing test's input shows and why it failed, and a score; its
  exit code is 0 only when everything passed.
* [`assert_array_matches`][] is the comparison the graded tests use: it checks shape and
  dtype first, then names the first wrong element, its input, and what was expected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ..runtime import swap
from .chapters import CHAPTERS, Chapter, chapter_of_exercise, graded_chapter
from .exercises import NOT_ATTEMPTED, untouched

IMPLEMENTATIONS = ("solution", "exercise")
GIVE_UP_VAR = "TUTORIAL_GRADE_GIVE_UP"  # exercises whose remaining tests are not run (they hung)
MAX_HANGS = 2  # tests of one exercise stopped by the clock before its others are not run


def exercise_environment(root: Path, chapters=None, isolate: str | None = None) -> dict[str, str]:
    """Environment variables that make `import tutorial` load the learner's exercise files of
    `chapters` (numbers; None: all) under `root` as the library's lesson modules. `isolate`:
    of its chapter's exercises, only this one comes from the learner; the others from the
    library."""
    wanted = None if chapters is None else {str(c).zfill(2) for c in chapters}
    files = {lesson.module: ch.exercise_path(root, lesson) for ch in CHAPTERS if wanted is None or ch.number in wanted
             for lesson in ch.exercised}
    env = {swap.FILES_VAR: swap.encode_files(files), swap.LIBRARY_VAR: ""}
    if isolate is not None:
        others = [name for name in chapter_of_exercise(isolate).exercises if name != isolate]
        env[swap.LIBRARY_VAR] = ",".join(others)
    return env


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
    where = ", ".join(str(int(k)) for k in np.unravel_index(i, got.shape))
    message = f"{what}: {bad.size} of {got.size} elements wrong; the first is [{where}]"
    if inputs is not None:
        message += f" for input {_describe(np.asarray(inputs).reshape(-1)[i])}"
    message += f": expected {_describe(want.reshape(-1)[i])}, got {_describe(got.reshape(-1)[i])}"
    if want.dtype.kind == "f" and np.isnan(got).any() and not np.isnan(want).any():
        message += f" (the result holds {int(np.isnan(got).sum())} NaNs where none were expected)"
    raise AssertionError(message)


# -- the pytest side: a plugin that writes what happened to each graded test ----------------


def describe_test(item) -> str:
    """What a test's input is meant to show, for a learner: the first line of its docstring
    (or its name as words), and its parameters' id, e.g. "the warp's maximum in lane 17"."""
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    if hasattr(case, "shows"):  # a graded case (tutorial.course.cases) says it itself
        return case.shows
    doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
    text = doc[0].rstrip(".") if doc else item.originalname.removeprefix("test_").replace("_", " ")
    return f"{text} [{callspec.id}]" if callspec else text


class ReportPlugin:
    """Writes, after every graded test, its exercise, outcome and message to a JSON file, and
    which test is running: if a learner's code hangs or crashes the process, the grader still
    knows what happened to every test before it, and which one never finished."""

    def __init__(self, path: str, done: set[str]):
        self.path = Path(path)
        self.done = done  # tests finished in an earlier process: not run again
        self.tests: dict[str, dict] = {}  # nodeid -> {"exercise", "shows"} of each graded test
        self.results: dict[str, dict] = json.loads(self.path.read_text())["results"] if self.path.exists() else {}
        self.running: dict | None = None  # {"nodeid", "exercise"} of the test under way

    def _write(self, finished: bool = False):
        partial = self.path.with_suffix(".partial")  # the grader reads this file while we run
        state = {"results": self.results, "running": self.running, "finished": finished}
        partial.write_text(json.dumps(state, indent=1))
        os.replace(partial, self.path)

    @pytest.hookimpl(trylast=True)  # after the course's own filters (--chapter, --exercise)
    def pytest_collection_modifyitems(self, config, items):
        given_up = {name for name in os.environ.get(GIVE_UP_VAR, "").split(",") if name}
        for item in items:
            mark = item.get_closest_marker("graded")
            if mark and mark.args:
                self.tests[item.nodeid] = {"exercise": mark.args[0], "shows": describe_test(item)}
                if mark.args[0] in given_up and item.nodeid not in self.done:  # it hung twice: not run again
                    self.results[item.nodeid] = {**self.tests[item.nodeid], "outcome": "failed",
                                                 "message": f"not run: {MAX_HANGS} of {mark.args[0]}'s tests hung"}
                    self.done.add(item.nodeid)
        keep = [item for item in items if item.nodeid not in self.done]
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in self.done])
        items[:] = keep

    def pytest_collectreport(self, report):
        """A test file that cannot even be collected (its exercise does not import) is one
        failure, named for the file; the grader charges it to the chapter being graded."""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            self.results[report.nodeid] = {"exercise": None, "outcome": "failed", "shows": f"importing {report.nodeid}",
                                           "message": crash.message if crash else str(report.longrepr)[-2000:]}
            self._write()

    def pytest_runtest_logstart(self, nodeid, location):
        if nodeid in self.tests:
            self.running = {"nodeid": nodeid, **self.tests[nodeid], "started": time.time()}
            self._write()

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.tests or (report.when != "call" and report.passed):
            return
        entry = self.results.get(report.nodeid)
        if entry and entry["outcome"] == "failed":
            return  # keep the first failure (a call's, rather than its teardown's)
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash else str(report.longrepr)
            message = message.removeprefix("AssertionError: ")  # the learner wants the why, not the type
        self.results[report.nodeid] = {**self.tests[report.nodeid], "outcome": report.outcome, "message": message}
        self.running = None
        self._write()

    def pytest_sessionfinish(self, session):
        self.running = None
        self._write(finished=True)


def pytest_configure(config):  # used when this module is loaded with `-p tutorial.course.grading`
    path = os.environ.get("TUTORIAL_GRADE_REPORT")
    if path:
        done = set(json.loads(Path(path).read_text())["results"]) if Path(path).exists() else set()
        config.pluginmanager.register(ReportPlugin(path, done), "tutorial-grade-report")


# -- the grader -------------------------------------------------------------------------------


def run_graded_tests(ch: Chapter | None, root: Path, impl: str = "exercise", timeout_s: float = 120,
                     max_restarts: int = 50, exercise: str | None = None, isolate: str | None = None) -> dict:
    """Run the graded tests in fresh processes; return {nodeid: {exercise, shows, outcome, message}}.

    `ch`: only this chapter's tests, with only its exercise files swapped in (None: every
    chapter's, in one run). `exercise`: only the tests of that exercise (or of several, comma
    separated). `isolate`: that exercise from the learner's file, the chapter's other
    exercises from the library (see [`exercise_environment`][]).

    The grader watches the clock itself: a learner's endless loop in compiled code holds the
    GIL, so no timer inside the test process could interrupt it. A test that uses more than
    `timeout_s` seconds of CPU time (or ten times that on the clock), or crashes the process, is recorded as failed, and a new process carries on
    with the tests after it; once two tests of one exercise were stopped by the clock, its
    other tests fail without running (a hang costs two time limits, not one per test).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, TUTORIAL_GRADE_REPORT=str(report))
        env.pop(swap.FILES_VAR, None)
        env.pop(GIVE_UP_VAR, None)
        env.pop(swap.LIBRARY_VAR, None)
        if impl == "exercise":  # set before the test process first imports tutorial
            env.update(exercise_environment(root, None if ch is None else [ch.number], isolate))
        cmd = [sys.executable, "-m", "pytest", str(root / "tests"), "-q", "-p", "no:cacheprovider",
               "-p", "tutorial.course.grading", f"--impl={impl}", "-m", "graded", "--rootdir", str(root),
               "-o", "addopts=", "-p", "no:timeout", "--continue-on-collection-errors"]
        if ch is not None:
            cmd += ["--chapter", ch.number]
        if exercise is not None:
            cmd += ["--exercise", exercise]
        hung: dict[str, int] = {}
        for _ in range(max_restarts):
            code, output = _run_watched(cmd, root, env, report, timeout_s)
            if not report.exists():
                raise RuntimeError(f"the test run ended before running any graded test (exit {code}):\n"
                                   + output[-3000:])
            state = json.loads(report.read_text())
            if state.get("finished"):  # (killed only if its exit hung: every result is in)
                return state["results"]
            if state["running"] is None:  # died or stuck between tests: not a learner's test to blame
                how = f"was stopped between tests after {timeout_s:g} s" if code is None else f"ended unexpectedly (exit {code})"
                raise RuntimeError(f"the test process {how}:\n" + output[-3000:])
            why = (f"stopped after {timeout_s:g} s of CPU time: an endless loop?" if code is None else
                   f"the test process crashed (exit code {code})")
            running = state["running"]
            if code is None:  # an exercise that hangs costs two timeouts, not one per test
                hung[running["exercise"]] = hung.get(running["exercise"], 0) + 1
                if hung[running["exercise"]] >= MAX_HANGS:
                    env[GIVE_UP_VAR] = ",".join(name for name, n in hung.items() if n >= MAX_HANGS)
            state["results"][running["nodeid"]] = {"exercise": running["exercise"], "shows": running["shows"],
                                                   "outcome": "failed", "message": why}
            state["running"] = None
            state["finished"] = False
            report.write_text(json.dumps(state))
        raise RuntimeError(f"gave up after {max_restarts} restarts of the test process")


def _run_watched(cmd, cwd, env, report: Path, timeout_s: float):
    """Run `cmd`; kill it when one test has used `timeout_s` seconds of CPU time, or ten times
    that on the clock (an endless loop burns CPU; a correct test on a busy machine mostly
    waits for it). The stretches between tests (collecting them, a fixture's teardown, the
    process's exit) are held to the same limits: a process stuck there is killed too.
    Returns (exit code, or None if it was killed; its output)."""
    from .sandbox import cpu_seconds

    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        phase, cpu_at_start, clock_at_start = None, 0.0, time.monotonic()  # phase: the running test's id
        while proc.poll() is None:
            time.sleep(0.2)
            try:
                running = json.loads(report.read_text())["running"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                running = None  # not started yet, or caught mid-write: between tests
            now = running["nodeid"] if running else None
            if now != phase:
                phase, cpu_at_start, clock_at_start = now, cpu_seconds(proc.pid), time.monotonic()
            if cpu_seconds(proc.pid) - cpu_at_start > timeout_s or time.monotonic() - clock_at_start > 10 * timeout_s:
                proc.kill()
                proc.wait()
                log.seek(0)
                return None, log.read()
        log.seek(0)
        return proc.returncode, log.read()


def summarize(results: dict, not_attempted: set[str] = frozenset()) -> dict[str, dict]:
    """Per exercise: counts, a status, and the first failure (what its input shows, and why).

    `not_attempted`: the exercises whose stubs are untouched in the learner's file.
    """
    exercises: dict[str, dict] = {}
    for r in results.values():
        e = exercises.setdefault(r["exercise"], {"passed": 0, "failed": 0, "not_attempted": 0, "first_failure": None})
        if r["outcome"] == "passed":
            e["passed"] += 1
            continue
        if r["exercise"] in not_attempted or f"{r['exercise']}: {NOT_ATTEMPTED}" in r["message"]:
            e["not_attempted"] += 1
        else:
            e["failed"] += 1
            if e["first_failure"] is None:
                e["first_failure"] = f"{r['shows']}:\n{r['message'].strip()}"
    for e in exercises.values():
        total = e["passed"] + e["failed"] + e["not_attempted"]
        e["status"] = ("passed" if e["passed"] == total else
                       "not yet attempted" if e["not_attempted"] == total else "failed")
    return exercises


def _blame_dependencies(ch: Chapter, exercises: dict[str, dict], rerun) -> None:
    """An exercise that fails while one it builds on fails too is run again with the library's
    version of the others: if it passes then, it is "blocked", and the report names the one to
    fix first; if not, it failed on its own, and the report still says what else fails."""
    for name, e in exercises.items():
        broken = [d for d in ch.needs(name) if exercises.get(d, {}).get("status", "passed") != "passed"]
        if e["status"] != "failed" or not broken:
            continue
        first = broken[-1]  # the deepest: fixing it may fix the others
        why = "is not yet attempted" if exercises[first]["status"] == "not yet attempted" else "fails"
        alone = summarize(rerun(name)).get(name)
        if alone and alone["status"] == "passed":
            e["status"] = "blocked"
            e["first_failure"] = (f"depends on {first}, which {why}; with the library's "
                                  f"{' and '.join(broken)}, {name} passes all {alone['passed']} of its tests")
        elif alone:
            e["first_failure"] = (alone["first_failure"] or e["first_failure"]) + f"\n(and {first}, which it calls, {why})"


_IMPORT_CHECK = """
import importlib, json, os, sys
import tutorial
from tutorial.course.sandbox import import_error
from tutorial.runtime import swap
try:
    for module in swap.decode_files(os.environ[swap.FILES_VAR]):
        importlib.import_module(module)
except BaseException as exc:
    print(json.dumps(import_error(exc, sys.argv[1:])))
"""


def import_problem(ch: Chapter, root: Path, timeout_s: float = 120) -> str | None:
    """Why the chapter's exercise files do not import as the library's modules, or None if they
    do: a syntax error, or an exception while the file runs (in a separate process)."""
    paths = [str(p.resolve()) for p in ch.exercise_paths(root)]
    env = dict(os.environ, **exercise_environment(root, [ch.number]))
    try:
        proc = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, *paths], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"importing the exercise file took more than {timeout_s:g} s: an endless loop at module level?"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return None if proc.returncode == 0 else f"importing the exercise files crashed (exit code {proc.returncode})"
    found = json.loads(lines[-1])
    name = Path(found["file"]).name if found["file"] else "an exercise file"
    where = f" (line {found['line']})" if found["line"] else ""
    return f"{name} does not import: {found['error']}{where}"


def grade_chapter(ch: Chapter, root: Path, exercise: str | None = None, timeout_s: float = 120) -> dict[str, dict]:
    """Grade one chapter's exercise files (or one exercise): {exercise: summary}."""
    names = [exercise] if exercise else list(ch.exercises)
    missing = [p for p in ch.exercise_paths(root) if not p.exists()]
    problem = (f"{missing[0]} is missing: `fp8-tutorial exercises` writes it" if missing
               else import_problem(ch, root, timeout_s))
    if problem is None:  # one exercise is graded with those it builds on, to know if they fail
        wanted = None if exercise is None else ",".join([exercise, *ch.needs(exercise)])
        results = run_graded_tests(ch, root, timeout_s=timeout_s, exercise=wanted)
        uncollected = [r for r in results.values() if r["exercise"] is None]
        if uncollected:  # not the learner's doing (their files imported): say so rather than charge their grade
            raise RuntimeError(f"the graded tests could not be collected: {uncollected[0]['shows']}: "
                               f"{uncollected[0]['message']}")
    if problem is not None:
        return {n: {"passed": 0, "failed": 0, "not_attempted": 0, "status": "failed", "first_failure": problem}
                for n in names}
    exercises = summarize(results, set().union(*(untouched(p) for p in ch.exercise_paths(root))))
    _blame_dependencies(ch, exercises, lambda name: run_graded_tests(
        ch, root, timeout_s=timeout_s, exercise=name, isolate=name))
    return {n: exercises[n] for n in names if n in exercises}


def format_report(chapters: dict[str, dict[str, dict]]) -> str:
    """The learner's report: per chapter, each exercise's status and first failure, and a score."""
    lines, done, total = [], 0, 0
    for number, exercises in chapters.items():
        if len(chapters) > 1:
            lines.append(f"chapter {number}")
        for name, e in exercises.items():
            tests = e["passed"] + e["failed"] + e["not_attempted"]
            counts = f"{e['passed']}/{tests} tests" if tests else "no test could run"
            lines.append(f"{e['status']:>18}  {name}  ({counts})")
            if e["first_failure"] and e["status"] != "not yet attempted":
                lines.append(" " * 20 + e["first_failure"][:1500].replace("\n", "\n" + " " * 20))
            done += e["status"] == "passed"
            total += 1
    lines.append(f"score: {done}/{total} exercises passed")
    return "\n".join(lines)


def grade(key: str | None = None, exercise: str | None = None, root: Path | None = None,
          timeout_s: float = 120) -> tuple[str, dict, bool]:
    """Grade the learner's exercise files: every chapter, one (`key`), or one exercise of it.

    Each chapter runs in its own test processes with only its own exercise file swapped in.
    Returns the report, {chapter: {exercise: summary}}, and whether everything passed.
    """
    from .chapters import find_root

    root = Path(root) if root else find_root()
    chapters = [graded_chapter(key)] if key else [ch for ch in CHAPTERS if ch.exercises]
    if exercise is not None:
        owner = chapter_of_exercise(exercise)
        if key and owner is not chapters[0]:
            raise ValueError(f"{exercise} is an exercise of chapter {owner.number}, not {chapters[0].number}")
        chapters = [owner]
    graded = {ch.number: grade_chapter(ch, root, exercise, timeout_s) for ch in chapters}
    ok = all(e["status"] == "passed" for exercises in graded.values() for e in exercises.values())
    return format_report(graded), graded, ok
