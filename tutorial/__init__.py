"""numba-fp8-tutorial: FP8 quantization for GPU matrix work, built kernel by kernel in Numba CUDA.

Importing this package chooses where kernels run (see
[`tutorial.runtime.device`][tutorial.runtime.device]): the GPU when there is one, else
Numba's CUDA simulator, which it teaches warp shuffles. The lessons load when first used
(`tutorial.absmax` imports `tutorial.reduction`), so that the grader can put a learner's
exercise file in a lesson's place first ([`tutorial.runtime.swap`][tutorial.runtime.swap]).

The layers, from the bottom: `runtime` (the device, the simulator's warp operations, Numba
extensions, launch helpers), the lessons (`fp8`, `reduction`, `quant`, `gemm`, ...), `perf`
(timing and figures) and `course` (the command line, exercises, grading). See
docs/pages/architecture.md.
"""

import importlib

from .runtime.device import MODE, ON_SIMULATOR, SELECTION  # noqa: F401  (must run before numba.cuda)
from .runtime import swap  # noqa: E402
from .version import __version__  # noqa: E402

swap.install_from_environment()  # the grader's: learners' exercise files as library modules

# The public API: name -> the module that defines it.
_EXPORTS = {
    "fp8": "tutorial.fp8",
    "absmax": "tutorial.reduction", "warp_max": "tutorial.reduction", "block_max": "tutorial.reduction",
    "absmax_rows": "tutorial.reduction_tiles", "absmax_blocks": "tutorial.reduction_tiles",
    "QTensor": "tutorial.qtensor",
    "quantize_per_tensor": "tutorial.quant.per_tensor", "calibrate": "tutorial.quant.per_tensor",
    "quantize_per_channel": "tutorial.quant.per_channel",
    "quantize_blockwise": "tutorial.quant.blockwise", "quantize_groups_interleaved": "tutorial.quant.interleaved",
    "split_interleaved": "tutorial.quant.interleaved",
    "scaled_matmul": "tutorial.gemm", "matmul_float32": "tutorial.gemm",
}

__all__ = ["MODE", "ON_SIMULATOR", "SELECTION", "fp8", "absmax", "absmax_rows", "absmax_blocks",
           "warp_max", "block_max", "QTensor", "quantize_per_tensor", "quantize_per_channel",
           "calibrate", "quantize_blockwise", "quantize_groups_interleaved", "split_interleaved",
           "scaled_matmul", "matmul_float32", "__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tutorial' has no attribute {name!r}")
    value = importlib.import_module(module)
    if name != "fp8":
        value = getattr(value, name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
