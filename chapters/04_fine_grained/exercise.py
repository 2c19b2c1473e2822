# Chapter 04 exercise: Fine-grained (block) quantization (tutorial.quant.blockwise).
# Generated from tutorial.quant.blockwise by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 04`: the graded tests use this file as tutorial.quant.blockwise.
# TODOs:
#   line  160: row_group_kernel
#   line  212: tile_kernel
# stub fingerprint: 374e44831b0c615a (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Chapter 04: fine-grained (block) FP8 quantization, DeepSeek-V3 / DeepGEMM style.

One scale per tile of the matrix: 1 x 128 groups along a row for activations (one scale per
token and 128 channels: an outlier channel inflates only its own group's scale), 128 x 128
squares for weights. The meaning is chapter 02's [`QTensor`][] with `block = (bm, bn)`:
`x[i, j] ~= decode(codes[i, j]) * scales[i // bm, j // bn]`; edge tiles that do not fill a
whole block get their own scale.

Two kernels do the work on the fast path (float32 or bfloat16, rows a multiple of 4 long):

* [`row_group_kernel`][] for `(1, bn)` blocks: a warp's 32 lanes read 128 consecutive
  values (one `load4` each), so a 1 x 128 group is exactly one warp-load; a warp takes
  several groups per trip and issues all their loads before the first shuffle. The group's
  amax is chapter 01's `warp_max` (or its last steps, for groups narrower than 128), the
  codes are packed 4 to a word by chapter 02's `word_encoder`. Three scale layouts: a
  separate (M, N / bn) array, the same transposed (M-major, the layout DeepGEMM's GEMM
  reads), or interleaved with the codes (each group's codes followed by its scale).
* [`tile_kernel`][] for `(bm, bn)` tiles with bm > 1: a thread block holds a whole tile in
  registers, `block_max` gives its amax, and every thread encodes what it holds: the tile
  is read from memory once.

Everything else (odd row lengths, float16/float64, misaligned views) takes
[`general_kernel`][]: one thread block per tile, one element per thread at a time.
All match [`tutorial.reference.blockwise_reference`][tutorial.reference.blockwise_reference]
bit for bit, codes and scales.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, uint32, uint64

from tutorial import fp8
from tutorial.qtensor import QTensor
from tutorial.reduction import WARP, block_max
from tutorial.runtime.bitcast import float32_bits
from tutorial.runtime.device import ON_SIMULATOR
from tutorial.runtime.launch import as_block, as_device, grid_blocks, jit_options, sm_count
from tutorial.runtime.loads import BF16, as_float32, load4, widen_bf16
from tutorial.quant.common import finite_abs, finite_amax4, lanes_max, loader, scale_rule, scale_rule_of, vec4_ready
from tutorial.quant.encoders import check_encoder, factor_rule, quotient_encoder
from tutorial.quant.groups_x8 import group_x8_ready, groups_x8_into
from tutorial.quant.per_tensor import word_encoder

LAYOUTS = ("separate", "m_major", "interleaved")
# A 128 x 128 tile with 512 threads is 32 floats per thread, at most 64 registers each: two
# blocks per SM. H200, fast encoder: 1024 threads capped at 32 registers 3.71 TB/s, 512 at 64
# registers 3.99 (H100, exact encoder: 512 threads 1.57 TB/s, 1024: 2.13; it needed more registers).
TILE_THREADS = 64 if ON_SIMULATOR else 512
LOADS_PER_TRIP = 4  # 16-byte loads a lane issues before its first shuffle: hides memory latency
# bfloat16 loads are 8 bytes: twice as many keep as many bytes in flight (H200, 1 x 128, bfloat16
# in, fast encoder: 4 loads 3.25 TB/s, 8 loads 3.68)
LOADS_PER_TRIP_BF16 = 8
# H100, 1 x 128 float32: 256 threads 2.52 TB/s, 512: 2.54-2.56. H200, with a grid that covers
# the matrix in one trip: 256 threads 4.17, 512 3.88; the same with 16 blocks per SM: 3.98.
GROUP_THREADS = 64 if ON_SIMULATOR else 256
TILE_MAX_REGISTERS = 64  # two 512-thread tile blocks fit an SM


# -- (1, bn) groups ------------------------------------------------------------------------------

@functools.cache
def row_group_kernel(fmt, bn: int, load=load4, layout="separate", pow2=False, encoder="exact",
                     loads_per_trip=LOADS_PER_TRIP, whole=False, max_registers=None):
    """A kernel for `(1, bn)` blocks over a matrix whose rows are whole groups (`N % bn == 0`).

    Launch with 1-D blocks of a multiple of 32 threads. The kernel's arguments:

    * `x`: the matrix flattened to 1-D, read with `load` (`load4`: float32, 16-byte aligned;
      `load4_bf16`: bfloat16 bits, 8-byte aligned).
    * `out`: uint32 words. "separate" and "m_major": the codes (M, N) viewed as uint32 and
      flattened. "interleaved": each group's bn / 4 code words followed by one word holding
      its scale's float32 bits.
    * `scales`: float32, flattened: (M, N / bn) row-major for "separate", (N / bn, M) for
      "m_major" (scale of row i, group j at j * M + i); unused for "interleaved".
    * `rows`: M, so that the m_major position of a scale can be found.

    The flat matrix is cut into warp tiles of `128 * per_lane` values (one `load4` per lane per
    tile part); a group is a whole tile (bn >= 128) or the share of bn / 4 lanes (bn < 128).
    Sizes are baked in, so the loops unroll and `vals` lives in registers. `whole`: the
    matrix is a whole number of trips (M * N a multiple of `128 * loads_per_trip`), so no load
    or store needs a bounds check. `encoder`: "exact" or "fast"; `encode4` takes its operand
    `factor_of(amax, scale)`.
    """
    if bn % 4 or not (bn % 128 == 0 or 128 % bn == 0) or bn < 16:
        raise ValueError(f"row_group_kernel: bn must be 16, 32, 64 or a multiple of 128, got {bn}")
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    factor_of = factor_rule(fmt, encoder, from_scale=pow2)
    fmax = float32(fmt.max)
    lanes = min(WARP, bn // 4)  # lanes that share one group
    per_lane = max(1, bn // 128)  # load4s per lane per group
    tiles_per_trip = max(1, loads_per_trip // per_lane)
    tile = 128 * per_lane  # values a warp covers per tile
    held = tiles_per_trip * per_lane  # load4s a lane holds per trip (a constant: local array size)
    group_words = bn // 4 + (1 if layout == "interleaved" else 0)
    scale_of = scale_rule_of(pow2)
    group_max = lanes_max(lanes)

    group_shift = bn.bit_length() - 1 if bn & (bn - 1) == 0 else -1  # bn = 2^group_shift

    # Indices here are never negative. Computed as uint64 (shifts for powers of two), they
    # cost a few instructions; as int64, `//` adds a sign fix-up and every array access a
    # negative-index wraparound test: about a quarter of the kernel's instructions.
    @cuda.jit(device=True)
    def group_of(e):
        if group_shift >= 0:
            return uint64(e) >> uint64(group_shift)
        return uint64(e // bn)

    @cuda.jit(device=True)
    def word_index(e, group):
        """The output word of values e .. e + 3 (all in `group`)."""
        if layout == "interleaved":
            return group * uint64(group_words) + ((uint64(e) - group * uint64(bn)) >> uint64(2))
        return uint64(e) >> uint64(2)

    @cuda.jit(device=True)
    def store_scale(out, scales, group, groups_per_row, rows, scale):
        if layout == "interleaved":
            out[group * uint64(group_words) + uint64(bn // 4)] = uint32(float32_bits(scale))
        elif layout == "m_major":
            row = group // uint64(groups_per_row)
            scales[(group - row * uint64(groups_per_row)) * uint64(rows) + row] = scale
        else:
            scales[group] = scale

    @cuda.jit(**jit_options(max_registers))
    def kernel(x, out, scales, rows):
        total = x.size
        n_tiles = (total + tile - 1) // tile
        groups_per_row = total // rows // bn
        lane = cuda.threadIdx.x % WARP
        warp = (cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x) // WARP
        n_warps = cuda.gridDim.x * cuda.blockDim.x // WARP
        vals = cuda.local.array((held, 4), float32)
        t0 = warp * tiles_per_trip
        while t0 < n_tiles:  # the same for every lane of a warp
            for u in range(tiles_per_trip):  # every load of the trip first ...
                for p in range(per_lane):
                    e = (t0 + u) * tile + 128 * p + 4 * lane
                    k = u * per_lane + p
                    if whole or e < total:
                        vals[k, 0], vals[k, 1], vals[k, 2], vals[k, 3] = load(x, e)
                    else:
                        vals[k, 0] = vals[k, 1] = vals[k, 2] = vals[k, 3] = float32(0.0)
            for u in range(tiles_per_trip):  # ... then one group (or several) at a time
                first = (t0 + u) * tile + 4 * lane  # this lane's first value in the tile
                group = group_of(first)
                # TODO (row_group_kernel): the group's finite amax (finite_amax4 over this lane's
                #   vals, then group_max over the group's lanes), its scale (scale_of) and the
                #   encoder's factor_of(amax, scale); the group's first lane stores the scale with
                #   store_scale, then every lane stores the encode4 word (given the factor) of each
                #   of its 4 values at out[word_index(e, group)] (roughly 14 lines)
                raise NotImplementedError("row_group_kernel: not yet attempted")
            t0 += n_warps * tiles_per_trip

    return kernel


# -- (bm, bn) tiles --------------------------------------------------------------------------

@functools.cache
def tile_kernel(fmt, bm: int, bn: int, threads: int, load=load4, pow2=False, encoder="exact", max_registers=None,
                whole=False):
    """A kernel for `(bm, bn)` tiles, one thread block per tile at a time, the tile in registers.

    Launch with `threads` threads per block (a multiple of 32, bn / 4 dividing it). The
    kernel's arguments:

    * `x`: the matrix flattened to 1-D, read 4 values at a time with `load`; `cols % 4 == 0`.
    * `rows`: M. `cols`: N. Edge tiles are smaller: values past M or N are left out.
    * `words`: the codes viewed as uint32 and flattened.
    * `scales`: float32 (ceil(M / bm), ceil(N / bn)), flattened.

    Thread t owns the 4-value column group `t % (bn / 4)` of the tile, in rows `t // (bn / 4)`,
    `+ threads / (bn / 4)`, ...: a warp reads whole 512-byte row segments. `whole`: M and N are
    multiples of bm and bn, so no tile crosses the matrix's edge and no access needs a check.
    `encoder`: "exact" or "fast", as in [`row_group_kernel`][].
    """
    groups_per_row = bn // 4
    if bn % 4 or threads % groups_per_row or threads % WARP:
        raise ValueError(f"tile_kernel: bn / 4 = {groups_per_row} must divide threads = {threads}")
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    factor_of = factor_rule(fmt, encoder, from_scale=pow2)
    fmax = float32(fmt.max)
    row_step = threads // groups_per_row  # tile rows covered by one pass of the block
    per_thread = -(-bm // row_step)
    scale_of = scale_rule_of(pow2)

    @cuda.jit(**jit_options(max_registers))
    def kernel(x, rows, cols, words, scales):
        tiles_across = (cols + bn - 1) // bn
        n_tiles = ((rows + bm - 1) // bm) * tiles_across
        t = cuda.threadIdx.x
        gc = t % groups_per_row
        r0 = t // groups_per_row
        vals = cuda.local.array((per_thread, 4), float32)
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):  # the same for the whole block
            ti = tile // tiles_across
            c = (tile - ti * tiles_across) * bn + 4 * gc
            # TODO (tile_kernel): load this thread's rows of the tile into vals (zeros outside the
            #   matrix), the finite amax, block_max, the scale (thread 0 stores scales[tile]) and
            #   the encoder's factor_of(amax, scale), then store the encode4 words (roughly 17
            #   lines)
            raise NotImplementedError("tile_kernel: not yet attempted")

    return kernel


# -- anything else ---------------------------------------------------------------------------

@functools.cache
def general_kernel(fmt, pow2=False, encoder="exact"):
    """Any block shape, dtype (float16/32/64) and alignment: one thread block per tile at a
    time, one element per thread per trip; scales (ceil(M / bm), ceil(N / bn)) row-major."""
    encode = quotient_encoder(fmt, encoder)
    factor_of = factor_rule(fmt, encoder, from_scale=pow2)
    fmax = float32(fmt.max)
    scale_of = scale_rule_of(pow2)

    @cuda.jit
    def kernel(x, bm, bn, codes, scales):
        rows, cols = x.shape
        tiles_across = scales.shape[1]
        for tile in range(cuda.blockIdx.x, scales.size, cuda.gridDim.x):  # the same for the whole block
            ti = tile // tiles_across
            r0 = ti * bm
            c0 = (tile - ti * tiles_across) * bn
            h = min(bm, rows - r0)
            w = min(bn, cols - c0)
            m = float32(0.0)
            for k in range(cuda.threadIdx.x, h * w, cuda.blockDim.x):
                m = max(m, finite_abs(x[r0 + k // w, c0 + k % w]))
            amax = block_max(m)
            scale = scale_of(amax, fmax)
            factor = factor_of(amax, scale)
            if cuda.threadIdx.x == 0:
                scales[ti, tile - ti * tiles_across] = scale
            for k in range(cuda.threadIdx.x, h * w, cuda.blockDim.x):
                codes[r0 + k // w, c0 + k % w] = encode(x[r0 + k // w, c0 + k % w], factor)

    return kernel


# -- host functions ------------------------------------------------------------------------------

def blockwise_into(d, bm, bn, out, scales, fmt, *, layout="separate", pow2=False, encoder="exact"):
    """The launch of [`quantize_blockwise`][] on preallocated device arrays.

    Args:
        d: (M, N) device array.
        bm: the block's rows.
        bn: the block's columns.
        out: the codes, (M, N) uint8, or for the interleaved layout the buffer, uint8
            (M, N / bn * (bn + 4)).
        scales: float32 (ceil(M / bm), ceil(N / bn)), or (N / bn, M) for "m_major"; ignored
            for "interleaved".
        fmt: the FP8 format.
        layout: "separate", "m_major" or "interleaved" (see [`row_group_kernel`][]).
        pow2: power-of-two (UE8M0) scales.
        encoder: "exact", "fast", or "software" / "hardware" (the exact encoder on one
            implementation; see `tutorial.quant.encoders`).
    """
    fmt = fp8.as_format(fmt)
    rows, cols = d.shape
    encoder = check_encoder(encoder, "quantize_blockwise")
    fast = vec4_ready(d)
    # The fast encoder's 1 x 128 groups go one step further (8 values a lane, groups_x8). With
    # the exact encoder that kernel is slower (H200: 3.58 TB/s against 3.77 here): its longer
    # encode is better spread over 4 values a lane.
    if encoder == "fast" and bm == 1 and group_x8_ready(d, bn, layout, out):
        groups_x8_into(d, out, scales, fmt, pow2=pow2, encoder=encoder)
        return
    if fast and bm == 1 and cols % bn == 0 and (bn % 128 == 0 or (128 % bn == 0 and bn >= 16)):
        loads = LOADS_PER_TRIP_BF16 if np.dtype(d.dtype) == BF16 else LOADS_PER_TRIP
        trip = 128 * max(1, bn // 128) * max(1, loads // max(1, bn // 128))  # values per warp-trip
        whole = (rows * cols) % trip == 0
        kernel = row_group_kernel(fmt, bn, loader(d), layout, pow2, encoder, loads, whole=whole)
        work = -(-rows * cols // trip)
        # A lane holds trip / 32 values in registers; past 32 of them (groups wider than 1024),
        # 512 threads would need more registers than an SM has (bn = 4096: 157 per thread).
        threads = GROUP_THREADS if trip <= 1024 else WARP * 4
        blocks = grid_blocks(max(1, work), threads // WARP, per_sm=None)  # every warp one trip: no grid cap
        flat_scales = scales.reshape(scales.size)
        kernel[blocks, threads](d.reshape(rows * cols), out.reshape(out.size).view(np.uint32),
                                      flat_scales, rows)
        return
    if layout != "separate":
        raise ValueError(f"quantize_blockwise: layout {layout!r} needs float32 or bfloat16 rows that are whole "
                         f"groups: block (1, bn) with bn in 16, 32, 64 or a multiple of 128, N % bn == 0; "
                         f"got block ({bm}, {bn}) on shape {tuple(d.shape)}")
    # The tile kernel holds a tile, at most 128 x 128 values, in registers, with a block of
    # threads that a row's 4-value groups divide (whole warps); other tiles take the general kernel.
    threads = max(TILE_THREADS, bn // 4) if bn % 4 == 0 else 0
    if (fast and bm > 1 and threads and threads % (bn // 4) == 0 and threads % WARP == 0 and threads <= 1024
            and bm * bn <= 128 * 128):
        kernel = tile_kernel(fmt, bm, bn, threads, loader(d), pow2, encoder,
                             TILE_MAX_REGISTERS if threads == TILE_THREADS else None, rows % bm == 0 and cols % bn == 0)
        blocks = min(grid_blocks(scales.size, 1), 4 * sm_count())
        kernel[blocks, threads](d.reshape(rows * cols), rows, cols, out.reshape(out.size).view(np.uint32),
                                scales.reshape(scales.size))
        return
    if np.dtype(d.dtype) == BF16:
        d = widen_bf16(d)
    general_kernel(fmt, pow2, encoder)[grid_blocks(scales.size, 1), 32 if ON_SIMULATOR else 256](d, bm, bn, out, scales)


def quantize_blockwise(x, block=(1, 128), fmt="e4m3", pow2_scales=False, *, scales_m_major=False,
                       encoder="exact") -> QTensor:
    """One scale per `block` tile of 2-D `x`: scales of shape (ceil(M / bm), ceil(N / bn)).

    Args:
        x: a 2-D float array (float16, bfloat16, float32 or float64), numpy or on the device.
            float64 is rounded to float32 first; a finite float64 value beyond float32's
            range is an error.
        block: (1, 128) for activations (per token, 128 channels), (128, 128) for weights; any
            two positive integers work, edge tiles get their own scale, and a block larger
            than `x` is one block covering it.
        fmt: "e4m3" or "e5m2" (or `fp8.E4M3`, `fp8.E5M2`).
        pow2_scales: power-of-two (UE8M0) scales, rounded up so that nothing saturates.
        scales_m_major: for (1, bn) blocks, store the scales M-major (transposed, contiguous
            along M, as DeepGEMM's GEMM reads them); the QTensor's scales are then a transposed
            view, same shape and meaning.
        encoder: "exact" (the correctly rounded codes of x / scale), "fast" (the codes of
            x * (fmax / amax), DeepGEMM's `per_token_cast_to_fp8` bit for bit), or
            "software" / "hardware" (the exact codes, on one implementation).

    Returns:
        On the host for numpy input, on the device for device input.
    """
    fmt = fp8.as_format(fmt, "quantize_blockwise")
    bm, bn = as_block(block, "quantize_blockwise")
    d, from_host = as_device(x, "quantize_blockwise", ndim=2)
    rows, cols = d.shape
    grid_shape = (math.ceil(rows / bm), math.ceil(cols / bn))
    tile = (min(bm, rows), min(bn, cols))  # a block past the edge is the same as one the matrix's size
    codes = cuda.device_array((rows, cols), np.uint8)
    if scales_m_major:
        if bm != 1:
            raise ValueError(f"quantize_blockwise: scales_m_major is for (1, bn) blocks, got block {(bm, bn)}")
        stored = cuda.device_array((grid_shape[1], rows), np.float32)
        d = as_float32(d) if not vec4_ready(d) else d  # the layout's kernel reads 4 values per load
        blockwise_into(d, *tile, codes, stored, fmt, layout="m_major", pow2=pow2_scales, encoder=encoder)
        scales = stored.T if not from_host else stored.copy_to_host().T
    else:
        scales = cuda.device_array(grid_shape, np.float32)
        blockwise_into(d, *tile, codes, scales, fmt, pow2=pow2_scales, encoder=encoder)
    if from_host:
        return QTensor(codes.copy_to_host(), scales if scales_m_major else scales.copy_to_host(), fmt, (bm, bn))
    return QTensor(codes, scales, fmt, (bm, bn))


__all__ = ["quantize_blockwise", "blockwise_into", "row_group_kernel",
           "tile_kernel", "general_kernel", "lanes_max", "LAYOUTS", "TILE_THREADS", "GROUP_THREADS"]
