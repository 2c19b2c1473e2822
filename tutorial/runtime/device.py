"""Where kernels run: the real GPU or Numba's CUDA simulator.

Numba reads `NUMBA_ENABLE_CUDASIM` once, when `numba.cuda` is first imported, and
cannot switch afterwards. So the choice is made here, by `import tutorial`, before
anything imports `numba.cuda`:

* `TUTORIAL_DEVICE=gpu` - the GPU; an error if there is none.
* `TUTORIAL_DEVICE=sim` - the simulator, even where a GPU exists.
* unset (or `auto`) - the GPU if the CUDA driver reports one, else the simulator.

The GPU is looked for through the driver library itself (`cuInit` and
`cuDeviceGetCount` through ctypes), so that asking does not import `numba.cuda`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

ENV_VAR = "TUTORIAL_DEVICE"
MODES = ("gpu", "sim")


class DeviceSelectionError(RuntimeError):
    """The requested device mode cannot be had (no GPU, or numba.cuda imported too early)."""


@dataclass(frozen=True)
class Selection:
    mode: str  # "gpu" or "sim"
    reason: str  # one sentence a person can act on


def probe_gpus() -> tuple[int, str]:
    """Count CUDA devices by asking the driver directly. Returns (count, explanation)."""
    names = {"win32": ["nvcuda.dll"], "darwin": []}.get(sys.platform, ["libcuda.so.1", "libcuda.so"])
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        rc = lib.cuInit(0)
        if rc != 0:
            return 0, f"the CUDA driver ({name}) is installed but cuInit failed with error {rc}"
        count = ctypes.c_int(0)
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
        if rc != 0:
            return 0, f"cuDeviceGetCount failed with error {rc}"
        if count.value == 0:
            return 0, "the CUDA driver reports no devices"
        return count.value, f"the CUDA driver reports {count.value} device(s)"
    return 0, "no CUDA driver library (libcuda) was found"


def _requested() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value not in MODES:
        raise DeviceSelectionError(f"{ENV_VAR}={value!r}: expected 'gpu', 'sim' or 'auto'")
    return value


def _mode_of_imported_numba_cuda() -> str | None:
    """The mode numba.cuda was imported in, or None if it has not been imported yet."""
    cuda = sys.modules.get("numba.cuda")
    if cuda is None or not hasattr(cuda, "jit"):
        return None
    return "sim" if cuda.jit.__module__.startswith("numba.cuda.simulator") else "gpu"


def _decide() -> Selection:
    requested = _requested()
    already = _mode_of_imported_numba_cuda()
    if already is not None:
        # Too late to choose: numba.cuda has fixed its mode. Accept it only if it can work.
        if requested not in ("auto", already):
            raise DeviceSelectionError(
                f"{ENV_VAR}={requested} but numba.cuda was already imported in {already} mode; "
                "import tutorial before numba.cuda (or restart the kernel/interpreter)")
        if already == "gpu" and probe_gpus()[0] == 0:
            raise DeviceSelectionError(
                "numba.cuda was imported before tutorial, in GPU mode, but this machine has no GPU "
                f"({probe_gpus()[1]}); import tutorial first so it can choose the simulator, "
                "or set NUMBA_ENABLE_CUDASIM=1")
        return Selection(already, f"numba.cuda was already imported in {already} mode")
    if requested == "sim":
        return Selection("sim", f"{ENV_VAR}=sim")
    count, why = probe_gpus()
    if requested == "gpu":
        if count == 0:
            raise DeviceSelectionError(f"{ENV_VAR}=gpu, but no GPU can be used: {why}")
        return Selection("gpu", f"{ENV_VAR}=gpu and {why}")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return Selection("sim", "NUMBA_ENABLE_CUDASIM is set")
    if count:
        return Selection("gpu", f"{why} ({ENV_VAR} unset)")
    return Selection("sim", f"{why}, so kernels run on Numba's CUDA simulator")


def _apply(sel: Selection) -> None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1" if sel.mode == "sim" else "0"
    if "numba.core.config" in sys.modules:
        # `import numba` already read the environment; make it read it again.
        sys.modules["numba.core.config"].reload_config()
    if sel.mode == "sim":
        from . import simulator

        simulator.install()
    else:
        _name_device_functions_called_from_the_host()


def _name_device_functions_called_from_the_host() -> None:
    """On a GPU, Numba answers `warp_max(1.0)` from the host with "Kernel launch configuration
    was not specified", which sends a learner looking for a grid; say what it is instead (the
    simulator says the same, tutorial.runtime.simulator)."""
    from numba.cuda.dispatcher import CUDADispatcher

    if getattr(CUDADispatcher.__call__, "_names_device_functions", False):
        return
    launch = CUDADispatcher.__call__

    def __call__(self, *args, **kwargs):
        if self.targetoptions.get("device"):
            raise TypeError(f"{self.py_func.__name__} is a device function: call it from inside a kernel "
                            "(@cuda.jit), not from the host")
        return launch(self, *args, **kwargs)

    __call__._names_device_functions = True
    CUDADispatcher.__call__ = __call__


def _running_as_command() -> bool:
    """True for `fp8-tutorial ...` and `python -m tutorial ...`."""
    argv = getattr(sys, "orig_argv", sys.argv)
    as_module = any(a == "-m" and b == "tutorial" for a, b in zip(argv, argv[1:]))
    return as_module or os.path.basename(sys.argv[0]).startswith("fp8-tutorial")


try:
    SELECTION: Selection = _decide()
except DeviceSelectionError as exc:
    if not _running_as_command():
        raise
    print(f"fp8-tutorial: {exc}", file=sys.stderr)  # a command's user needs no traceback
    raise SystemExit(2) from None
_apply(SELECTION)
MODE = SELECTION.mode
ON_SIMULATOR = MODE == "sim"


def hardware_fp8_available() -> bool:
    """True on a GPU whose compute capability (>= 8.9) has FP8 conversion instructions."""
    if ON_SIMULATOR:
        return False
    from numba import cuda

    try:
        return cuda.get_current_device().compute_capability >= (8, 9)
    except Exception:  # no usable context: no hardware conversion either
        return False


def warpgroup_mma_available() -> bool:
    """True on a GPU of compute capability 9.0 (Hopper: H100, H200), whose kernels Numba
    compiles for sm_90a, the target of `wgmma`, TMA and `setmaxnreg`."""
    if ON_SIMULATOR:
        return False
    from numba import cuda

    try:
        return cuda.get_current_device().compute_capability == (9, 0)
    except Exception:  # no usable context
        return False
