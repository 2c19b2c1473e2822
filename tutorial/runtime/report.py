"""What a run happened on: the device mode and why, the GPU, the driver, the packages that
matter, and known-bad combinations. `fp8-tutorial doctor` prints it; every recorded benchmark
stores it beside its timings."""

from __future__ import annotations

import ctypes
import platform
from importlib import metadata

from ..version import __version__
from .device import SELECTION, hardware_fp8_available, probe_gpus

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


def driver_cuda_version() -> str | None:
    """The CUDA version the driver supports ("13.0"), or None without a driver."""
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
              "gpu": None, "compute_capability": None, "driver_cuda": driver_cuda_version(),
              "gpus_seen_by_driver": probe_gpus()[0], "fp8_hardware": hardware_fp8_available(),
              "packages": package_versions(), "warnings": []}
    if SELECTION.mode == "gpu":
        from numba import cuda

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
