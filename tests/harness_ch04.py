"""Chapter 04's harnesses: run the learner's row_group_kernel and tile_kernel (through
quantize_blockwise and quantize_groups_interleaved, or tile_kernel launched directly) on the
inputs they are given and return what they produced. Only this runs beside the learner's code (in
the class autograder, in its sandbox), so it holds no reference and judges nothing.

Inputs arrive as numbers only: a format as its index in `FORMATS`, an input dtype as its index in
`DTYPES` (the values themselves as float32, exact for every one of them); a QTensor leaves as its
codes, scales, block and format's index (see `qtensor`).
"""

import numpy as np
from numba import cuda

from tutorial import fp8
from tutorial.qtensor import QTensor
from tutorial.runtime.loads import load4

from tutorial.quant import blockwise, interleaved  # blockwise: the library, or chapter 04's exercise file

FORMATS = tuple(fp8.FORMATS)  # ("e4m3", "e5m2"): a format's number is its index here
DTYPES = ("float32", "bfloat16")  # an input dtype's number is its index here (bfloat16: ml_dtypes', via tutorial)


def as_input(x, dtype):
    """x (float32 values) in the dtype numbered `dtype`."""
    return np.ascontiguousarray(x).astype(np.dtype(DTYPES[int(dtype)]))


def qtensor(q):
    """A QTensor as named arrays: codes, scales, block, fmt (its format's index in FORMATS, -1 if
    none), and scales_m_major (whether the scales are stored column by column: their transpose
    C-contiguous)."""
    return {"codes": q.codes, "scales": q.scales, "block": np.array(q.block, np.int64),
            "fmt": next((i for i, name in enumerate(FORMATS) if q.fmt is fp8.FORMATS[name]), -1),
            "scales_m_major": np.bool_(q.scales.T.flags["C_CONTIGUOUS"])}


def quantize_blockwise(x, block, fmt=0, pow2_scales=False, scales_m_major=False, dtype=0):
    """blockwise.quantize_blockwise on x (in the dtype numbered `dtype`) in `block` blocks."""
    q = blockwise.quantize_blockwise(as_input(x, dtype), tuple(int(b) for b in block), FORMATS[int(fmt)],
                                     bool(pow2_scales), scales_m_major=bool(scales_m_major))
    return qtensor(q)


def quantize_groups_interleaved(x, group):
    """interleaved.quantize_groups_interleaved's buffer for x in groups of `group`."""
    return interleaved.quantize_groups_interleaved(np.ascontiguousarray(x), int(group))


def tile_kernel(x, block, fmt, pow2, threads):
    """quantize_blockwise's tile-kernel launch, made directly: `threads` threads per block,
    one tile per block at a time, into poisoned codes and scales."""
    fmt = fp8.as_format(FORMATS[int(fmt)])
    x = np.ascontiguousarray(x)
    rows, cols = x.shape
    bm, bn = (int(b) for b in block)
    threads = int(threads)
    grid = (-(-rows // bm), -(-cols // bn))
    codes = cuda.to_device(np.full(rows * cols, 0xAA, np.uint8))
    scales = cuda.to_device(np.full(grid, np.nan, np.float32))
    kernel = blockwise.tile_kernel(fmt, bm, bn, threads, load4, pow2=bool(pow2))
    kernel[min(scales.size, 4), threads](cuda.to_device(x.reshape(-1)), rows, cols, codes.view(np.uint32),
                                         scales.reshape(scales.size))
    return qtensor(QTensor(codes.copy_to_host().reshape(rows, cols), scales.copy_to_host(), fmt, (bm, bn)))
