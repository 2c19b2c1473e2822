# Chapter 03 exercise: Per-channel quantization (tutorial.quant.per_channel).
# Generated from tutorial.quant.per_channel by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 03`: the graded tests use this file as tutorial.quant.per_channel.
# TODOs:
#   line   91: per_row_kernel_vec4
# stub fingerprint: 1f0f66e42ab57cd3 (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Chapter 03: per-channel FP8 quantization, one scale per row or per column of a matrix.

Along rows (`axis=0`, block `(1, N)`) everything a row needs is in the row, so one thread
block owns a row: each thread loads its share of the row into registers, chapter 01's
`block_max` finds the row's finite amax, every thread turns it into the same scale and
encodes the values it holds. x is read from memory once; one launch.

Along columns (`axis=1`, block `(M, 1)`) a scale needs a whole column before any of its codes can
be written, and a column of a large matrix is far bigger than any cache. So it is two
launches, and x is read twice: the first finds every column's amax (blocks split the rows
and combine their maxima with an atomic max on the float bits, which order like the
non-negative floats they encode), the second computes the scales and encodes.

Both match [`tutorial.reference.per_channel_reference`][tutorial.reference.per_channel_reference]
bit for bit, codes and scales.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from tutorial import fp8
from tutorial.qtensor import QTensor
from tutorial.reduction import THREADS, block_max
from tutorial.runtime.bitcast import bits_float32, float32_bits
from tutorial.runtime.device import ON_SIMULATOR
from tutorial.runtime.launch import as_device, grid_blocks, sm_count
from tutorial.runtime.loads import BF16, load4, widen_bf16
from tutorial.quant.common import finite_abs, finite_amax4, loader, scale_rule, vec4_ready
from tutorial.quant.encoders import check_encoder, factor_rule, quotient_encoder
from tutorial.quant.per_tensor import pack4, word_encoder

COLUMN_TILE = (8, 32)  # (rows, 4-column groups) per block of the column kernels: 8 warps, 128 columns
ROWS_PER_BLOCK = 64 if ON_SIMULATOR else 256  # rows a column-amax block reduces before its atomics
ROW_THREADS = 32 if ON_SIMULATOR else THREADS  # a simulated barrier costs ~1 ms per thread: keep blocks small
ROW_BLOCKS_PER_SM = 4  # on the H100, 4 blocks of 256 threads per SM beat 2 (2.19 TB/s) and 8 (2.58): 2.68
COLUMN_ROWS_PER_THREAD = 8  # rows an encode thread of the column path takes (H200: 8 3.99 TB/s, 62: 3.92)


# -- rows ---------------------------------------------------------------------------------------

MAX_GROUPS_PER_THREAD = 16  # 64 floats of a row per thread, in registers; longer rows take the general kernel


@functools.cache
def per_row_kernel_vec4(fmt, per_thread: int, load=load4, encoder: str = "exact"):
    """One block per row at a time, the row held in registers: its finite amax, its scale,
    then its codes, with x read from memory once.

    The kernel's arguments:

    * `x`: the matrix flattened to 1-D (the loads address 1-D arrays), read 4 elements at a
      time with `load`: `load4` for float32 (16-byte aligned), `load4_bf16` for bfloat16 bits.
    * `cols`: the row length, a multiple of 4, so every row starts on an aligned boundary.
    * `words`: the (M, N) codes viewed as uint32 and flattened: word g of a row holds 4 codes.
    * `scales`: float32 (M, 1), one per row.

    `per_thread`: 16-byte groups of a row per thread, `ceil(N / 4 / blockDim)`, baked in: with
    a constant trip count the loops unroll and `vals` lives in registers, not in memory.
    Thread t reads groups t, t + blockDim, ...: a block's loads cover consecutive bytes.

    Why hold the row: a version that re-reads the row for the encode (one warp per row, 64
    rows in flight per SM) ran at about half the copy bandwidth on an H100, because the
    re-reads missed the caches and went back to memory.

    `encoder`: "exact" or "fast"; `encode4` takes its operand `factor_of(amax, scale)`.
    """
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    factor_of = factor_rule(fmt, encoder)
    fmax = float32(fmt.max)

    @cuda.jit
    def kernel(x, cols, words, scales):
        rows = scales.shape[0]
        groups = cols // 4  # 16-byte groups (and code words) per row
        t = cuda.threadIdx.x
        vals = cuda.local.array((per_thread, 4), float32)
        for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):  # the same for the whole block
            start = row * cols
            # TODO (per_row_kernel_vec4): load this thread's groups into vals (zeros past the row's
            #   end), its finite amax, block_max across the block, the scale (thread 0 stores it)
            #   and the encoder's factor_of(amax, scale), then the encode4 word of each group into
            #   words (roughly 17 lines)
            raise NotImplementedError("per_row_kernel_vec4: not yet attempted")

    return kernel


@functools.cache
def per_row_kernel(fmt, encoder: str = "exact"):
    """The general version (any float dtype, any row length): one block per row at a time,
    `block_max` across the block, one code per thread per trip."""
    encode = quotient_encoder(fmt, encoder)
    factor_of = factor_rule(fmt, encoder)
    fmax = float32(fmt.max)

    @cuda.jit
    def kernel(x, codes, scales):
        rows, cols = x.shape
        for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):  # the same for the whole block
            m = float32(0.0)
            for j in range(cuda.threadIdx.x, cols, cuda.blockDim.x):
                m = max(m, finite_abs(x[row, j]))
            amax = block_max(m)
            scale = scale_rule(amax, fmax)
            factor = factor_of(amax, scale)
            if cuda.threadIdx.x == 0:
                scales[row, 0] = scale
            for j in range(cuda.threadIdx.x, cols, cuda.blockDim.x):
                codes[row, j] = encode(x[row, j], factor)

    return kernel


# -- columns ------------------------------------------------------------------------------------

@cuda.jit
def zero_fill(a):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = 0


@functools.cache
def column_amax_bits_vec4(load=load4):
    """A kernel: `amax_bits[j] = max(amax_bits[j], bits of the finite amax of column j)`, an
    atomic max (so start from zeros), reading x 4 elements at a time with `load`.

    Block (32, 8): thread (tx, ty) owns columns 4q .. 4q + 3, `q = blockIdx.x * 32 + tx`, and
    reads every 8th row of the block's slab of `rows_per_block` rows: a warp reads 512
    consecutive bytes of a row per load. The 8 warps' maxima meet in shared memory, so each
    block does one atomic per column, not eight.
    """

    @cuda.jit
    def kernel(x, cols, rows_per_block, amax_bits):
        rows = x.size // cols
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        q = cuda.blockIdx.x * 32 + tx
        inside = 4 * q < cols
        m0 = m1 = m2 = m3 = float32(0.0)
        start = cuda.blockIdx.y * rows_per_block
        if inside:
            for i in range(start + ty, min(start + rows_per_block, rows), 8):
                a, b, c, d = load(x, i * cols + 4 * q)
                m0 = max(m0, finite_abs(a))
                m1 = max(m1, finite_abs(b))
                m2 = max(m2, finite_abs(c))
                m3 = max(m3, finite_abs(d))
        partial = cuda.shared.array((8, 128), float32)
        partial[ty, 4 * tx] = m0
        partial[ty, 4 * tx + 1] = m1
        partial[ty, 4 * tx + 2] = m2
        partial[ty, 4 * tx + 3] = m3
        cuda.syncthreads()
        k = ty * 32 + tx  # 256 threads, 128 columns: the first 128 threads finish one column each
        j = cuda.blockIdx.x * 128 + k
        if k < 128 and j < cols:
            m = partial[0, k]
            for r in range(1, 8):
                m = max(m, partial[r, k])
            cuda.atomic.max(amax_bits, j, float32_bits(m))

    return kernel


@functools.cache
def per_column_kernel_vec4(fmt, load=load4, encoder: str = "exact"):
    """`codes[i, j] = encode(x[i, j] / scale[j])`, 4 columns per thread; the scales are
    computed from `amax_bits` once per thread and kept in registers. Block (32, 8) as in
    [`column_amax_bits_vec4`][]; blocks along y stride over rows.

    (Walking the rows bottom-up, so as to start on the rows the amax pass left in L2, was
    tried on the H200: no measurable gain.)
    """
    encode = quotient_encoder(fmt, encoder)
    factor_of = factor_rule(fmt, encoder)
    fmax = float32(fmt.max)

    @cuda.jit(device=True)
    def scale_and_factor(amax_bits, j):
        amax = bits_float32(amax_bits[j])
        scale = scale_rule(amax, fmax)
        return scale, factor_of(amax, scale)

    @cuda.jit
    def kernel(x, cols, amax_bits, words, scales):
        rows = x.size // cols
        q = cuda.blockIdx.x * 32 + cuda.threadIdx.x
        if 4 * q >= cols:
            return
        s0, f0 = scale_and_factor(amax_bits, 4 * q)
        s1, f1 = scale_and_factor(amax_bits, 4 * q + 1)
        s2, f2 = scale_and_factor(amax_bits, 4 * q + 2)
        s3, f3 = scale_and_factor(amax_bits, 4 * q + 3)
        first = cuda.blockIdx.y * 8 + cuda.threadIdx.y
        if first == 0:
            scales[0, 4 * q] = s0
            scales[0, 4 * q + 1] = s1
            scales[0, 4 * q + 2] = s2
            scales[0, 4 * q + 3] = s3
        groups = cols // 4
        for i in range(first, rows, cuda.gridDim.y * 8):
            a, b, c, d = load(x, i * cols + 4 * q)
            words[i * groups + q] = pack4(encode(a, f0), encode(b, f1), encode(c, f2), encode(d, f3))

    return kernel


@cuda.jit
def column_amax_bits(x, rows_per_block, amax_bits):
    """The general version of [`column_amax_bits_vec4`][]: one column per thread, blocks
    along y split the rows and combine with the atomic max."""
    rows, cols = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= cols:
        return
    m = float32(0.0)
    start = cuda.blockIdx.y * rows_per_block
    for i in range(start, min(start + rows_per_block, rows)):
        m = max(m, finite_abs(x[i, j]))
    cuda.atomic.max(amax_bits, j, float32_bits(m))


@functools.cache
def per_column_kernel(fmt, encoder: str = "exact"):
    encode = quotient_encoder(fmt, encoder)
    factor_of = factor_rule(fmt, encoder)
    fmax = float32(fmt.max)

    @cuda.jit
    def kernel(x, amax_bits, codes, scales):
        rows, cols = x.shape
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if j >= cols:
            return
        amax = bits_float32(amax_bits[j])
        scale = scale_rule(amax, fmax)
        factor = factor_of(amax, scale)
        if cuda.blockIdx.y == 0:
            scales[0, j] = scale
        for i in range(cuda.blockIdx.y, rows, cuda.gridDim.y):
            codes[i, j] = encode(x[i, j], factor)

    return kernel


# -- host functions -----------------------------------------------------------------------------

def per_channel_into(d, axis, codes, scales, amax_bits, fmt, encoder="exact"):
    """The launches of [`quantize_per_channel`][] on preallocated device arrays. `amax_bits`
    (int32[N]) is scratch for `axis=1`: zeroed here, then left holding the column maxima."""
    fmt = fp8.as_format(fmt)
    rows, cols = d.shape
    fast = vec4_ready(d)
    if not fast and np.dtype(d.dtype) == BF16:
        d = widen_bf16(d)  # the general kernels read float elements one by one
    flat = d.reshape(rows * cols) if fast else None
    load = loader(d)
    per_thread = math.ceil(cols / 4 / ROW_THREADS)
    if axis == 0 and fast and per_thread <= MAX_GROUPS_PER_THREAD:
        words = codes.reshape(rows * cols).view(np.uint32)
        blocks = min(grid_blocks(rows, 1), ROW_BLOCKS_PER_SM * sm_count())
        per_row_kernel_vec4(fmt, per_thread, load, encoder)[blocks, ROW_THREADS](flat, cols, words, scales)
    elif axis == 0:
        per_row_kernel(fmt, encoder)[grid_blocks(rows, 1), ROW_THREADS](d, codes, scales)
    elif fast:
        zero_fill[grid_blocks(cols, THREADS), THREADS](amax_bits)
        words = codes.reshape(rows * cols).view(np.uint32)
        tile_rows, tile_groups = COLUMN_TILE
        stripes = math.ceil(cols / (4 * tile_groups))
        column_amax_bits_vec4(load)[(stripes, math.ceil(rows / ROWS_PER_BLOCK)), (tile_groups, tile_rows)](
            flat, cols, ROWS_PER_BLOCK, amax_bits)
        slabs = max(1, grid_blocks(rows, tile_rows * COLUMN_ROWS_PER_THREAD, per_sm=None))
        kernel = per_column_kernel_vec4(fmt, load, encoder)
        kernel[(stripes, slabs), (tile_groups, tile_rows)](flat, cols, amax_bits, words, scales)
    else:
        zero_fill[grid_blocks(cols, THREADS), THREADS](amax_bits)
        grid = (math.ceil(cols / THREADS), math.ceil(rows / ROWS_PER_BLOCK))
        column_amax_bits[grid, THREADS](d, ROWS_PER_BLOCK, amax_bits)
        per_column_kernel(fmt, encoder)[grid, THREADS](d, amax_bits, codes, scales)


def quantize_per_channel(x, axis, fmt="e4m3", *, encoder="exact") -> QTensor:
    """One scale per index along `axis` of 2-D `x`: `axis=0` one per row (block `(1, N)`),
    `axis=1` one per column (block `(M, 1)`). Dynamic: each scale from its channel's finite amax.
    Returns a QTensor on the host for numpy input, on the device for device input. float64
    input is rounded to float32 first, and a finite float64 value beyond float32's range is an
    error. `encoder`: "exact" or "fast" (see `tutorial.quant.encoders`)."""
    fmt = fp8.as_format(fmt, "quantize_per_channel")
    encoder = check_encoder(encoder, "quantize_per_channel")
    if isinstance(axis, (bool, np.bool_)) or axis not in (0, 1):
        raise ValueError(f"quantize_per_channel: axis must be 0 (rows) or 1 (columns), got {axis!r}")
    d, from_host = as_device(x, "quantize_per_channel", ndim=2)
    rows, cols = d.shape
    codes = cuda.device_array((rows, cols), np.uint8)
    scales = cuda.device_array((rows, 1) if axis == 0 else (1, cols), np.float32)
    amax_bits = cuda.device_array(cols if axis == 1 else 1, np.int32)
    per_channel_into(d, axis, codes, scales, amax_bits, fmt, encoder)
    q = QTensor(codes, scales, fmt, (1, cols) if axis == 0 else (rows, 1))
    return q.to_host() if from_host else q


__all__ = ["quantize_per_channel", "per_channel_into", "per_row_kernel_vec4", "per_row_kernel", "column_amax_bits",
           "column_amax_bits_vec4", "per_column_kernel", "per_column_kernel_vec4", "ROWS_PER_BLOCK"]
