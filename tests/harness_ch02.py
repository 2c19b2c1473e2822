"""Chapter 02's harnesses: run the learner's pack4 and per-tensor quantization on the inputs they
are given and return what came out. Only this runs beside the learner's code (in the class
autograder, in its sandbox), so it holds no reference and judges nothing.

Inputs are numbers only: a format is its index in `tutorial.fp8.FORMATS` ("e4m3" 0, "e5m2" 1), and
bfloat16 input arrives as its uint16 bit patterns. A QTensor comes back as its codes, its scales,
its block and its format's index.
"""

import numpy as np
from numba import cuda

from tutorial import fp8
from tutorial.quant import per_tensor  # the library, or chapter 02's exercise file when grading

FORMAT_NAMES = tuple(fp8.FORMATS)  # an input `fmt` is an index into these
BFLOAT16 = np.dtype("bfloat16")  # registered with numpy by ml_dtypes, which tutorial imports


@cuda.jit
def pack_kernel(codes, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = per_tensor.pack4(codes[4 * i], codes[4 * i + 1], codes[4 * i + 2], codes[4 * i + 3])


def pack4_words(codes, blocks, threads):
    """pack4 on each four codes, `blocks` blocks of `threads` threads in a grid-stride loop, into
    words poisoned with 0xDEADBEEF (an unwritten word shows)."""
    out = cuda.to_device(np.full(codes.size // 4, 0xDEADBEEF, np.uint32))
    pack_kernel[int(blocks), int(threads)](cuda.to_device(codes), out)
    return out.copy_to_host()


def qtensor(q):
    """A QTensor as arrays: codes and scales (copied to the host if they are device arrays),
    block, and its format's index in FORMAT_NAMES (-1: none of them)."""
    fmt = next((i for i, f in enumerate(fp8.FORMATS.values()) if f is q.fmt), -1)
    return {"codes": q.codes, "scales": q.scales, "block": np.array(q.block, np.int64), "fmt": np.int64(fmt)}


def quantize(x, fmt):
    """quantize_per_tensor with a dynamic scale."""
    return qtensor(per_tensor.quantize_per_tensor(x, FORMAT_NAMES[int(fmt)]))


def quantize_static(x, fmt, scale):
    """quantize_per_tensor with the static scale `scale`."""
    return qtensor(per_tensor.quantize_per_tensor(x, FORMAT_NAMES[int(fmt)], scale=float(scale)))


def quantize_bfloat16(bits, fmt):
    """quantize_per_tensor of the bfloat16 array with these bit patterns, dynamic scale."""
    return quantize(bits.view(BFLOAT16), fmt)


def quantize_bfloat16_static(bits, fmt, scale):
    """quantize_per_tensor of the bfloat16 array with these bit patterns, static scale."""
    return quantize_static(bits.view(BFLOAT16), fmt, scale)


def quantize_on_device(x, fmt):
    """quantize_per_tensor of a device array; and whether its codes and scales stayed on the device."""
    q = per_tensor.quantize_per_tensor(cuda.to_device(x), FORMAT_NAMES[int(fmt)])
    return {**qtensor(q), "codes_on_device": np.bool_(hasattr(q.codes, "copy_to_host")),
            "scales_on_device": np.bool_(hasattr(q.scales, "copy_to_host"))}
