"""The `fp8-tutorial` command (also `python -m tutorial`)."""

from __future__ import annotations

import argparse
import sys

from ..version import __version__
from . import doctor as doctor_module


def doctor(args) -> int:
    return doctor_module.run(args.json)


def exercises(args) -> int:
    from .chapters import find_root
    from .exercises import stale, stale_notebook_cells, write_all, write_notebook_cells

    root = find_root()
    if args.check:
        old = [str(path.relative_to(root)) for path in stale(root)] + stale_notebook_cells(root)
        for what in old:
            print(f"stale: {what} (run `fp8-tutorial exercises`)")
        return 1 if old else 0
    kept = False
    for path, what in write_all(root, force=args.force):
        print(f"{path.relative_to(root)}: {what}")
        kept |= what.startswith("kept")
    for cell in write_notebook_cells(root):
        print(f"{cell}: regenerated from the library")
    return 1 if kept else 0


def release(args) -> int:
    from .chapters import find_root
    from .release import make_release

    try:
        out = make_release(args.chapter, args.out, find_root())
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"fp8-tutorial release: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the student edition for chapter {args.chapter} to {out}")
    return 0


def autograde(args) -> int:
    from .autograde import autograde as run_autograder
    from .sandbox import Limits

    try:
        report = run_autograder(args.chapter, args.out, args.submissions, jobs=args.jobs, points_file=args.points,
                                seed=args.seed, limits=Limits(case_s=args.timeout))
    except (RuntimeError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"fp8-tutorial autograde: {exc}", file=sys.stderr)
        return 2
    print(f"graded {len(report['students'])} submissions of chapter {report['chapter']} in {report['seconds']} s "
          f"({report['cases']} cases, {report['hidden_cases']} hidden; seed {report['seed']}; containment: "
          f"{report['containment']}): {args.out}/grades.csv")
    for student, s in report["students"].items():
        print(f"  {student}: {s['score']:g} points" + (f" (note: {', '.join(s['changed'])} changed during grading)"
                                                     if s["changed"] else ""))
    return 0


def grade(args) -> int:
    from .grading import grade as run_grader

    try:
        text, _, ok = run_grader(args.chapter, args.exercise)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"fp8-tutorial grade: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0 if ok else 1


def demo(args) -> int:
    from .demo import run

    return run(args.out)


def bench_command(args) -> int:
    from ..perf.sweeps import run
    from ..perf.timing import SimulatorTimingError

    try:
        paths = run(args.chapter)
    except (SimulatorTimingError, ValueError, FileNotFoundError) as exc:  # (chapter 07 without its model)
        print(f"fp8-tutorial: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        figure = path.with_suffix('.png')
        print(f"wrote {path}" + (f" and {figure.name}" if figure.exists() else ""))
    return 0


def verify_fp8(args) -> int:
    from ..perf.exhaustive import main as run_exhaustive_check

    return run_exhaustive_check(args.out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fp8-tutorial", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="which device mode is active and why, versions, known problems")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=doctor)
    p = sub.add_parser("demo", help="run every chapter, check each kernel, print a summary, write figures")
    p.add_argument("--out", default="fp8-tutorial-demo", help="folder for the figures (default: %(default)s)")
    p.set_defaults(run=demo)
    p = sub.add_parser("bench", help="GPU only: a chapter's benchmark sweep, recorded as JSON and PNG under results/")
    p.add_argument("chapter", nargs="?", help="a chapter number such as 00 (default: all)")
    p.set_defaults(run=bench_command)
    p = sub.add_parser("exercises", help="bring every chapter's exercise.py up to date with the solutions "
                       "(files holding your edits are kept)")
    p.add_argument("--check", action="store_true", help="only report exercise files that are stale")
    p.add_argument("--force", action="store_true",
                   help="also replace files holding your edits (each is saved beside it as a .bak file first)")
    p.set_defaults(run=exercises)
    p = sub.add_parser("release", help="write the student edition of the course up to a chapter")
    p.add_argument("--chapter", required=True, help="the chapter handed out now, such as 01")
    p.add_argument("--out", required=True, help="an empty (or new) folder for the edition")
    p.set_defaults(run=release)
    p = sub.add_parser("grade", help="run the graded tests against your exercise files and report "
                       "(exit code 0 only if everything passed)")
    p.add_argument("chapter", nargs="?", help="a chapter number such as 00 (default: all)")
    p.add_argument("exercise", nargs="?", help="one exercise of that chapter, such as warp_max (default: all)")
    p.set_defaults(run=grade)
    p = sub.add_parser("autograde", help="instructors: grade a class's submissions of a chapter (sandboxed; "
                       "CSV gradebook, Gradescope results; exit code 0 when grading worked)")
    p.add_argument("--chapter", required=True, help="the chapter graded, such as 01")
    p.add_argument("--out", required=True, help="folder for grades.csv and a folder per student")
    p.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded at once (default: %(default)s)")
    p.add_argument("--points", help="JSON: {\"points\": {exercise: points}, \"weights\": {case: weight}}")
    p.add_argument("--seed", type=int, help="the inputs' seed (default: a fresh one, written to summary.json)")
    p.add_argument("--timeout", type=float, default=60.0, help="CPU seconds per case, import included "
                   "(default: %(default)s; ten times as many on the clock)")
    p.add_argument("submissions", nargs="+", help="exercise files, notebooks, or folders holding them")
    p.set_defaults(run=autograde)
    p = sub.add_parser("verify-fp8", help="GPU only: compare the FP8 encoders with ml_dtypes on all 2^32 float32 patterns")
    p.add_argument("--out", help="also write the JSON result here")
    p.set_defaults(run=verify_fp8)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
