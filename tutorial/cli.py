"""The `fp8-tutorial` command (also `python -m tutorial`)."""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import sys
from importlib import metadata

import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

from . import SELECTION, __version__, fp8
from .device import probe_gpus

PACKAGES = ["numpy", "numba", "numba-cuda", "llvmlite", "ml_dtypes", "matplotlib",
            "cuda-bindings", "cuda-core", "torch", "cupy-cuda12x", "cupy-cuda13x"]


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _driver_cuda_version() -> str | None:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0:
            return f"{v.value // 1000}.{v.value % 1000 // 10}"
    except OSError:
        pass
    return None


def _major_minor(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0"])[:2]
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in parts)


def device_report() -> dict:
    """Everything `doctor` prints, as a dict (also recorded with benchmark results)."""
    report = {"mode": SELECTION.mode, "reason": SELECTION.reason, "tutorial": __version__,
              "gpu": None, "compute_capability": None, "driver_cuda": _driver_cuda_version(),
              "gpus_seen_by_driver": probe_gpus()[0], "fp8_hardware": fp8.hardware_fp8_available(),
              "packages": package_versions(), "warnings": []}
    if SELECTION.mode == "gpu":
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        report["gpu"] = name
        report["compute_capability"] = "%d.%d" % dev.compute_capability
    report["warnings"] = known_problems(report)
    return report


def known_problems(report: dict) -> list[str]:
    pkgs = report["packages"]
    problems = []
    if report["mode"] == "gpu" and pkgs["numpy"] and _major_minor(pkgs["numpy"]) >= (2, 5):
        problems.append(f"numpy {pkgs['numpy']} with a real GPU: numba-cuda 0.30 calls np.row_stack, "
                        "which numpy 2.5 removed; install numpy<2.5")
    if pkgs["numba-cuda"] and _major_minor(pkgs["numba-cuda"]) != (0, 30):
        problems.append(f"numba-cuda {pkgs['numba-cuda']}: the course is written and tested for 0.30.x")
    if report["mode"] == "gpu" and not pkgs["cuda-bindings"]:
        problems.append("GPU mode without cuda-bindings: install the extra matching your driver, "
                        "numba-fp8-tutorial[cu12] or [cu13]")
    if report["mode"] == "sim" and report["gpus_seen_by_driver"]:
        problems.append("a GPU is present but the simulator was chosen "
                        f"({report['reason']}); kernels will be slow and timings meaningless")
    return problems


@cuda.jit
def _encode_kernel(x, codes):
    i = cuda.grid(1)
    if i < x.size:
        codes[i] = fp8.encode_e4m3(x[i])


def self_test() -> str:
    """Launch one tiny kernel through the active mode and check it against the host encoder."""
    x = np.array([0.0, -1.0, 0.3, 448.0, 1e6, 2.0**-9], np.float32)
    codes = np.zeros(x.size, np.uint8)
    _encode_kernel[1, 32](x, codes)
    ok = np.array_equal(codes, fp8.encode(x))
    return "ok: a kernel ran and matched the host encoder" if ok else f"FAILED: {codes} != {fp8.encode(x)}"


def doctor(args) -> int:
    report = device_report()
    try:
        report["self_test"] = self_test()
    except Exception as exc:  # the point of doctor is to say what is wrong, not to crash
        report["self_test"] = f"FAILED: {type(exc).__name__}: {exc}"
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["self_test"].startswith("ok") else 1
    mode = {"gpu": "GPU", "sim": "CUDA simulator"}[report["mode"]]
    if report["gpu"]:
        gpu = f"{report['gpu']}, compute capability {report['compute_capability']}"
    else:
        gpu = "none in use"
    fp8_hw = "yes (cvt.rn.satfinite, compute capability >= 8.9)" if report["fp8_hardware"] else (
        "no: the simulator has none" if report["mode"] == "sim" else "no: needs compute capability >= 8.9")
    lines = [
        f"numba-fp8-tutorial {report['tutorial']}",
        f"mode:               {mode}",
        f"why:                {report['reason']}",
        f"GPU:                {gpu}",
        f"driver CUDA:        {report['driver_cuda'] or 'no driver found'}",
        f"FP8 hardware cvt:   {fp8_hw}",
        f"self-test:          {report['self_test']}",
        "packages:",
    ]
    lines += [f"  {name:<14} {version or 'not installed'}" for name, version in report["packages"].items()]
    lines.append("warnings:" if report["warnings"] else "warnings:           none")
    lines += [f"  ! {w}" for w in report["warnings"]]
    print("\n".join(lines))
    return 0 if report["self_test"].startswith("ok") else 1


def exercises(args) -> int:
    from .chapters import find_root
    from .exercises import stale, write_all

    root = find_root()
    if args.check:
        old = stale(root)
        for path in old:
            print(f"stale: {path.relative_to(root)} (run `fp8-tutorial exercises`)")
        return 1 if old else 0
    kept = False
    for path, what in write_all(root, force=args.force):
        print(f"{path.relative_to(root)}: {what}")
        kept |= what.startswith("kept")
    return 1 if kept else 0


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
    from .bench import SimulatorTimingError
    from .sweeps import run

    try:
        paths = run(args.chapter)
    except (SimulatorTimingError, ValueError) as exc:
        print(f"fp8-tutorial: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


def verify_fp8(args) -> int:
    from .verify import main as run_exhaustive_check

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
    p = sub.add_parser("grade", help="run the graded tests against your exercise files and report "
                       "(exit code 0 only if everything passed)")
    p.add_argument("chapter", nargs="?", help="a chapter number such as 00 (default: all)")
    p.add_argument("exercise", nargs="?", help="one exercise of that chapter, such as warp_max (default: all)")
    p.set_defaults(run=grade)
    p = sub.add_parser("verify-fp8", help="GPU only: compare the FP8 encoders with ml_dtypes on all 2^32 float32 patterns")
    p.add_argument("--out", help="also write the JSON result here")
    p.set_defaults(run=verify_fp8)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
