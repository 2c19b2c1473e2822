"""`fp8-tutorial doctor`: which device mode is active and why, the GPU, the packages, known
problems, and whether a kernel launches and gives the right answer."""

from __future__ import annotations

import json

import numpy as np

from .. import fp8
from ..runtime.report import device_report


def self_test() -> str:
    """Launch one tiny kernel through the active mode and check it against the host encoder."""
    x = np.array([0.0, -1.0, 0.3, 448.0, 1e6, 2.0**-9], np.float32)
    codes = np.zeros(x.size, np.uint8)
    fp8.encode_kernel(fp8.encode_e4m3)[1, 32](x, codes)
    ok = np.array_equal(codes, fp8.encode(x))
    return "ok: a kernel ran and matched the host encoder" if ok else f"FAILED: {codes} != {fp8.encode(x)}"


def report_with_self_test() -> dict:
    report = device_report()
    try:
        report["self_test"] = self_test()
    except Exception as exc:  # the point of doctor is to say what is wrong, not to crash
        report["self_test"] = f"FAILED: {type(exc).__name__}: {exc}"
    return report


def format_report(report: dict) -> str:
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
    return "\n".join(lines)


def run(as_json: bool = False) -> int:
    report = report_with_self_test()
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0 if report["self_test"].startswith("ok") else 1
