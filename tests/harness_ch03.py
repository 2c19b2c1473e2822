"""Chapter 03's harnesses: run the learner's per-channel quantization (the per-row kernel,
per_row_kernel_vec4, behind quantize_per_channel) on the inputs they are given and return what
came out. Only this runs beside the learner's code (in the class autograder, in its sandbox), so
it holds no reference and judges nothing.

Inputs are numbers only: a format is its index in `tutorial.fp8.FORMATS` ("e4m3" 0, "e5m2" 1), and
bfloat16 input arrives as its uint16 bit patterns. A QTensor comes back as its codes, its scales,
its block and its format's index.
"""

import numpy as np
from numba import cuda

from tutorial import fp8
from tutorial.quant import per_channel  # the library, or chapter 03's exercise file when grading

FORMAT_NAMES = tuple(fp8.FORMATS)  # an input `fmt` is an index into these
BFLOAT16 = np.dtype("bfloat16")  # registered with numpy by ml_dtypes, which tutorial imports


def qtensor(q):
    """A QTensor as arrays: codes and scales (copied to the host if they are device arrays),
    block, and its format's index in FORMAT_NAMES (-1: none of them)."""
    fmt = next((i for i, f in enumerate(fp8.FORMATS.values()) if f is q.fmt), -1)
    return {"codes": q.codes, "scales": q.scales, "block": np.array(q.block, np.int64), "fmt": np.int64(fmt)}


def quantize(x, axis, fmt):
    """quantize_per_channel along `axis`."""
    return qtensor(per_channel.quantize_per_channel(x, int(axis), FORMAT_NAMES[int(fmt)]))


def quantize_bfloat16(bits, axis, fmt):
    """quantize_per_channel of the bfloat16 array with these bit patterns."""
    return quantize(bits.view(BFLOAT16), axis, fmt)


def quantize_on_device(x, axis, fmt):
    """quantize_per_channel of a device array; and whether its codes and scales stayed on the device."""
    q = per_channel.quantize_per_channel(cuda.to_device(x), int(axis), FORMAT_NAMES[int(fmt)])
    return {**qtensor(q), "codes_on_device": np.bool_(hasattr(q.codes, "copy_to_host")),
            "scales_on_device": np.bool_(hasattr(q.scales, "copy_to_host"))}
