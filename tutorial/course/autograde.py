"""`fp8-tutorial autograde --chapter NN --out DIR [-j N] SUBMISSION...`: grade a class.

Each SUBMISSION is a learner's exercise file, a notebook (its exercise cells, found by their
`exercise:NAME` tags or their `# Exercise: NAME` first line), or a folder holding one; the
student is named for the folder or the file's stem. Submissions are graded against the
instructor's graded cases, visible and hidden (`tests/test_graded_chNN.py`,
`tests/test_hidden_chNN.py`): a submission's own `tests/`, `conftest.py` or `tutorial/` are
never read.

The trust model. This process (the autograder) never runs a student's code. It draws every
case's inputs for this run (seeded: `--seed`, or a fresh one, written to the results), takes a
copy of every submission before any is run, and starts one child per submission in a sandbox
([`tutorial.course.sandbox`][]): the student edition of the chapter for a library, the
student's exercise files as its lesson modules, the harnesses, and the inputs. The child sends
back outputs only; this process judges them with the cases' references. What a child prints,
exits with, or writes is never a verdict.

What comes out, in DIR:

* `grades.csv`: `student,exercise,points,max_points,status`;
* `<student>/results.json`: Gradescope's autograder format (`score`, and `tests` with `name`,
  `score`, `max_score`, `output`, `visibility`: hidden cases are `after_published`);
* `<student>/report.txt`: the learner's grader's report (`fp8-tutorial grade`'s words);
* `summary.json`: the run (seed, containment, device, versions, time per submission).

Points: `--points FILE` (JSON) gives `{"points": {exercise: points}, "weights": {case id:
weight}}`; by default each exercise is worth 10 points, shared among its cases by their
weights (1 each unless a case says otherwise), and a passed case earns its share: partial
credit.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime.sources import function_source, replace_function
from . import sandbox
from .cases import Case
from .chapters import Chapter, find_root, graded_chapter
from .exercises import EXERCISE_TAG, exercise_source, untouched
from .grading import format_report, summarize
from .release import make_release

DEFAULT_POINTS = 10.0
MAX_LOST = 2  # cases of one exercise that hung or ended the process before its others are not run


@dataclass
class Submission:
    student: str
    files: dict[str, str]  # lesson module -> the exercise file's text
    problems: dict[str, str] = field(default_factory=dict)  # exercise -> why it could not be read
    origin: dict[str, str] = field(default_factory=dict)  # file -> sha256 when read (to see writes later)


# -- reading submissions (text only: nothing of a student's is run here) -------------------------


def _student(path: Path) -> str:
    name = path.stem if path.is_file() else path.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "student"


def _notebook_cells(text: str) -> dict[str, str]:
    """{exercise: cell source} of a notebook's exercise cells (by tag, or by first line)."""
    found = {}
    for cell in json.loads(text).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", []))
        tags = cell.get("metadata", {}).get("tags", [])
        names = [t[len(EXERCISE_TAG):] for t in tags if isinstance(t, str) and t.startswith(EXERCISE_TAG)]
        first = source.lstrip().splitlines()[0] if source.strip() else ""
        if not names and first.startswith("# Exercise: "):
            names = [first[len("# Exercise: "):].split(".")[0].strip()]
        for name in names:
            found[name] = source
    return found


def _from_notebook(ch: Chapter, text: str, student: str) -> Submission:
    """The exercise files a notebook amounts to: each lesson's stub with the notebook's
    functions in place of the stubs."""
    cells = _notebook_cells(text)
    sub = Submission(student, {})
    for lesson in ch.exercised:
        source = exercise_source(ch, lesson)
        for name in lesson.exercises:
            if name not in cells:
                continue
            cell = "\n".join(line for line in cells[name].splitlines() if not line.startswith(("%", "!")))
            try:
                source = replace_function(source, name, function_source(cell, name))
            except SyntaxError as exc:
                sub.problems[name] = f"its notebook cell does not parse: {exc.msg} (line {exc.lineno})"
            except ValueError:
                sub.problems[name] = f"its notebook cell defines no function {name}"
        sub.files[lesson.module] = source
    return sub


def read_submission(path: Path, ch: Chapter) -> Submission:
    """A submission's exercise files, from a file, a notebook or a folder holding them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"autograde: no submission at {path}")
    student = _student(path)
    names = {lesson.file: lesson for lesson in ch.exercised}
    if path.is_dir():
        found = {}
        for lesson in ch.exercised:  # the chapter's own folder first, then anywhere
            candidates = sorted(path.rglob(lesson.file), key=lambda p: (ch.slug not in p.parts, len(p.parts)))
            if candidates:
                found[lesson.module] = candidates[0]
        if not found:
            notebooks = sorted(path.rglob("*.ipynb"), key=lambda p: (ch.slug not in p.parts, len(p.parts)))
            if not notebooks:
                raise ValueError(f"autograde: {path} holds no {' or '.join(names)} and no notebook")
            return _with_origin(_from_notebook(ch, notebooks[0].read_text(errors="replace"), student), [notebooks[0]])
        sub = Submission(student, {m: p.read_text(errors="replace") for m, p in found.items()})
        return _with_origin(sub, list(found.values()))
    if path.suffix == ".ipynb":
        return _with_origin(_from_notebook(ch, path.read_text(errors="replace"), student), [path])
    lesson = names.get(path.name) or (ch.exercised[0] if len(ch.exercised) == 1 else None)
    if lesson is None:
        raise ValueError(f"autograde: {path.name} is none of chapter {ch.number}'s exercise files ({', '.join(names)})")
    return _with_origin(Submission(student, {lesson.module: path.read_text(errors="replace")}), [path])


def _with_origin(sub: Submission, paths: list[Path]) -> Submission:
    sub.origin = {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    return sub


# -- the cases, their inputs, and judging ---------------------------------------------------------


def load_cases(root: Path, ch: Chapter) -> list[tuple[Case, bool]]:
    """(case, hidden) for the chapter's visible and hidden graded cases, from the instructor's tests."""
    tests = str(root / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    found = []
    for name, hidden in ((f"test_graded_ch{ch.number}", False), (f"test_hidden_ch{ch.number}", True)):
        if (root / "tests" / f"{name}.py").exists():
            found += [(case, hidden) for case in importlib.import_module(name).CASES]
    if not found:
        raise RuntimeError(f"autograde: no graded cases for chapter {ch.number} in {tests}")
    return found


def judge(case: Case, inputs: dict, header: dict | None, payload: bytes) -> tuple[str, str]:
    """(outcome, message) of one case, from what the child sent for it."""
    if header is None:
        return "failed", "no output came back"
    if header.get("status") != "ok":
        return "failed", str(header.get("message", "failed"))[:2000]
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            outputs = {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - whatever the bytes were, they are no outputs
        return "failed", f"its outputs could not be read ({type(exc).__name__})"
    try:
        case.judge(inputs, outputs)
    except AssertionError as exc:
        return "failed", str(exc).removeprefix("AssertionError: ")[:2000]
    except Exception as exc:  # noqa: BLE001 - malformed outputs (a shape the reference cannot use)
        return "failed", f"unexpected outputs: {type(exc).__name__}: {exc}"[:2000]
    return "passed", ""


# -- one submission -----------------------------------------------------------------------------


@dataclass
class Run:
    """What every submission of one grading run shares."""

    ch: Chapter
    cases: list[tuple[Case, bool]]
    inputs: list[dict]
    staging: Path  # edition/, inputs/, harness/, subs/, work/
    site: list[str]
    limits: sandbox.Limits
    simulator: bool
    hide: list[Path]


def _job(run: Run, sub: Submission, work: Path, todo: list[int]) -> dict:
    files = {}
    for module, text in sub.files.items():
        name = module.replace(".", "_") + ".py"
        (work / name).write_text(text)
        files[module] = name
    return {"path": [".", str(run.staging / "edition"), str(run.staging / "harness")], "site": run.site,
            "files": files, "cases": [{"index": i, "run": run.cases[i][0].run,
                                       "inputs": str(run.staging / "inputs" / f"{i}.npz")} for i in todo]}


def grade_submission(run: Run, sub: Submission) -> tuple[dict, dict]:
    """{case id: {exercise, shows, outcome, message, hidden}}, and what happened to the child
    (restarts, seconds, what it printed at the end)."""
    results: dict[str, dict] = {}
    todo = list(range(len(run.cases)))
    restarts, started, printed = 0, time.time(), ""
    lost: dict[str, int] = {}  # exercise -> cases of it that hung or ended the process
    while todo:
        work = Path(tempfile.mkdtemp(prefix=f"{sub.student}-", dir=run.staging / "work"))
        (work / "bootstrap.py").write_text(sandbox.BOOTSTRAP)
        (work / "job.json").write_text(json.dumps(_job(run, sub, work, todo)))
        argv = [sys._base_executable if hasattr(sys, "_base_executable") else sys.executable, "-I", "-S",
                "bootstrap.py", "job.json"]
        box = run.staging / "boxes" / work.name
        finished = sandbox.run(argv, work, box, run.limits, run.simulator, run.hide,
                               total_s=run.limits.case_s * run.limits.wall_factor * (len(todo) + 2))
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(box, ignore_errors=True)
        printed = finished.output
        sent = {}
        import_error = None
        for header, payload in finished.messages:
            if "import_error" in header and import_error is None:
                import_error = str(header["import_error"])
            if isinstance(header.get("case"), int) and header["case"] in todo and header["case"] not in sent:
                sent[header["case"]] = (header, payload)
        for i in list(todo):
            if i not in sent:
                continue
            case, hidden = run.cases[i]
            outcome, message = judge(case, run.inputs[i], *sent[i])
            results[case.id] = {"exercise": case.exercise, "shows": case.shows, "outcome": outcome,
                                "message": message, "hidden": hidden}
            todo.remove(i)
        if not todo:
            break
        if import_error or finished.stage in ("starting", "import"):
            why = (f"the exercise file does not import: {import_error}" if import_error else
                   f"while importing the exercise file: {sandbox.why(finished, run.limits)}")
            for i in todo:
                _fail(results, run.cases[i], why)
            break
        stage = finished.stage or ""
        culprit = int(stage.split()[1]) if stage.startswith("case ") and stage.split()[1].isdigit() else todo[0]
        culprit = culprit if culprit in todo else todo[0]
        _fail(results, run.cases[culprit], sandbox.why(finished, run.limits))
        todo.remove(culprit)
        restarts += 1
        exercise = run.cases[culprit][0].exercise
        lost[exercise] = lost.get(exercise, 0) + 1
        if lost[exercise] == MAX_LOST:  # an exercise that hangs costs minutes per case, not hours per class
            for i in [i for i in todo if run.cases[i][0].exercise == exercise]:
                _fail(results, run.cases[i], f"not run: {MAX_LOST} of {exercise}'s cases hung or ended the process")
                todo.remove(i)
    return results, {"restarts": restarts, "seconds": round(time.time() - started, 2), "output_tail": printed[-2000:]}


def _fail(results: dict, case_hidden: tuple[Case, bool], message: str) -> None:
    case, hidden = case_hidden
    results[case.id] = {"exercise": case.exercise, "shows": case.shows, "outcome": "failed", "message": message,
                        "hidden": hidden}


# -- points and what is written ------------------------------------------------------------------


def read_points(path: Path | None) -> tuple[dict, dict]:
    """({exercise: points}, {case id: weight}) from a points file (JSON), or the defaults."""
    if path is None:
        return {}, {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"autograde: --points {path}: {exc}") from None
    points, weights = data.get("points", {}), data.get("weights", {})
    bad = [k for k, v in {**points, **weights}.items() if not isinstance(v, (int, float)) or v < 0]
    if bad or not isinstance(points, dict) or not isinstance(weights, dict):
        raise ValueError(f"autograde: --points {path}: points and weights must be non-negative numbers ({bad[:3]})")
    return points, weights


def scores(ch: Chapter, cases: list[tuple[Case, bool]], results: dict, points: dict, weights: dict) -> list[dict]:
    """Per case: name, score, max_score, output, visibility (Gradescope's fields), exercise."""
    rows = []
    for case, hidden in cases:
        mine = [c for c, _ in cases if c.exercise == case.exercise]
        weight = weights.get(case.id, case.weight)
        share = float(points.get(case.exercise, DEFAULT_POINTS)) * weight / sum(weights.get(c.id, c.weight) for c in mine)
        r = results[case.id]
        rows.append({"name": case.id, "exercise": case.exercise, "max_score": share,
                     "score": share if r["outcome"] == "passed" else 0.0,
                     "output": r["message"] or "passed", "visibility": "after_published" if hidden else "visible"})
    return rows


def write_student(out: Path, ch: Chapter, student: str, rows: list[dict], summary: dict, extra: str) -> None:
    folder = out / student
    folder.mkdir(parents=True, exist_ok=True)
    tests = [{**{k: row[k] for k in ("name", "output", "visibility")}, "score": round(row["score"], 6),
              "max_score": round(row["max_score"], 6)} for row in rows]
    (folder / "results.json").write_text(json.dumps(
        {"score": round(sum(row["score"] for row in rows), 4), "output": extra, "tests": tests}, indent=1))
    (folder / "report.txt").write_text(format_report({ch.number: summary}) + "\n" + (extra + "\n" if extra else ""))


def _hidden_paths(paths: list[Path], keep: list[Path]) -> list[Path]:
    """`paths` to hide from a child; where one holds something the child needs (`keep`: its
    Python, the dependencies, the staging folder), its other entries instead."""
    out = []
    for path in sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not path.exists() or any(path.is_relative_to(o) for o in out) or any(path.is_relative_to(k) for k in keep):
            continue  # hidden already with a folder above it, or needed
        if not any(k.is_relative_to(path) for k in keep):
            out.append(path)
        elif path.is_dir():
            out += _hidden_paths([p for p in path.iterdir() if p.is_dir() and not p.is_symlink()], keep)
    return out


def autograde(number: str, out: Path, submissions: list[Path], jobs: int = 1, points_file: Path | None = None,
              seed: int | None = None, limits: sandbox.Limits = sandbox.Limits(), root: Path | None = None) -> dict:
    """Grade `submissions` of chapter `number` into `out`; returns the run's summary."""
    import site

    import tutorial

    ch = graded_chapter(number)
    root = Path(root) if root else find_root()
    out = Path(out).resolve()
    points, weights = read_points(points_file)
    cases = load_cases(root, ch)
    unknown = sorted(set(points) - set(ch.exercises))
    if unknown:
        raise ValueError(f"autograde: --points names {unknown}, which are not exercises of chapter {ch.number}")
    seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
    subs = [read_submission(Path(s), ch) for s in submissions]
    students = [s.student for s in subs]
    twice = sorted({s for s in students if students.count(s) > 1})
    if twice:
        raise ValueError(f"autograde: two submissions are both called {twice[0]!r}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fp8-autograde-") as tmp:
        staging = Path(tmp)
        make_release(ch.number, staging / "edition", root)
        for folder in ("inputs", "harness", "subs", "work", "boxes"):
            (staging / folder).mkdir()
        shutil.copy(root / "tests" / f"harness_ch{ch.number}.py", staging / "harness")
        inputs = [case.inputs(seed) for case, _ in cases]
        for i, drawn in enumerate(inputs):
            np.savez(staging / "inputs" / f"{i}.npz", **drawn)
        site_dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
        keep = [Path(d).resolve() for d in site_dirs] + [staging.resolve(), Path(sys.base_prefix).resolve()]
        hide = _hidden_paths([root, out, Path(tutorial.__file__).parent, *[Path(s).resolve().parent for s in submissions]],
                             keep) + [staging / "subs", staging / "work"]
        run = Run(ch, cases, inputs, staging, site_dirs, limits, tutorial.ON_SIMULATOR, hide)
        for sub in subs:  # the copies graded: what a neighbour writes later changes nothing
            folder = staging / "subs" / sub.student
            folder.mkdir()
            for module, text in sub.files.items():
                (folder / f"{module.replace('.', '_')}.py").write_text(text)

        def one(sub: Submission):
            results, child = grade_submission(run, sub)
            for exercise, problem in sub.problems.items():
                for case, hidden in cases:
                    if case.exercise == exercise:
                        results[case.id] = {**results[case.id], "outcome": "failed", "message": problem}
            return results, child

        with ThreadPoolExecutor(max(1, int(jobs))) as pool:
            graded = list(pool.map(one, subs))
    rows_csv, per_student = [], {}
    for sub, (results, child) in zip(subs, graded):
        not_attempted = set()
        for module, text in sub.files.items():
            with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
                f.write(text)
            not_attempted |= untouched(Path(f.name))
            Path(f.name).unlink()
        rows = scores(ch, cases, results, points, weights)
        summary = summarize({cid: r for cid, r in results.items()}, not_attempted)
        changed = [p for p, digest in sub.origin.items()
                   if not Path(p).exists() or hashlib.sha256(Path(p).read_bytes()).hexdigest() != digest]
        extra = (f"note: {', '.join(changed)} changed while the class was graded; this grade is of the copy taken "
                 "before any submission ran" if changed else "")
        write_student(out, ch, sub.student, rows, summary, extra)
        for name in ch.exercises:
            mine = [r for r in rows if r["exercise"] == name]
            rows_csv.append({"student": sub.student, "exercise": name, "points": round(sum(r["score"] for r in mine), 4),
                             "max_points": round(sum(r["max_score"] for r in mine), 4),
                             "status": summary.get(name, {}).get("status", "failed")})
        per_student[sub.student] = {**child, "score": round(sum(r["score"] for r in rows), 4), "changed": changed}
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["student", "exercise", "points", "max_points", "status"])
        writer.writeheader()
        writer.writerows(rows_csv)
    report = {"chapter": ch.number, "seed": seed, "containment": sandbox.containment(), "jobs": jobs,
              "device": "simulator" if tutorial.ON_SIMULATOR else "gpu", "cases": len(cases),
              "hidden_cases": sum(h for _, h in cases), "seconds": round(time.time() - started, 1),
              "date": time.strftime("%Y-%m-%d"), "python": sys.version.split()[0], "numpy": np.__version__,
              "students": per_student}
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    return report


__all__ = ["autograde", "read_submission", "load_cases", "grade_submission", "judge", "scores", "read_points",
           "Submission", "DEFAULT_POINTS"]
