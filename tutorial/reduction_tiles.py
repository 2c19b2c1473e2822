"""Chapter 01, applied to tiles: the maximum magnitude of each row, or of each (bm, bn) tile, of
a matrix. These are the inputs of per-channel (chapter 03) and block (chapter 04) scales.

* A row block (`bm == 1`) takes one warp per (row, segment of `bn` columns): lane l reads
  columns l, l + 32, ... of the segment and [`warp_max`][tutorial.reduction.warp_max]
  combines them. Where rows are whole segments of a multiple of 128 float32 values, each lane
  reads 4 values per 16-byte load and a warp takes several segments per trip, so their loads
  overlap.
* A taller block takes one thread block per tile, combined with
  [`block_max`][tutorial.reduction.block_max]; where rows are a multiple of 4 float32 long,
  every load is 16 bytes wide ([`tile_absmax_kernel_vec4`][]).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from .reduction import THREADS, WARP, absmax4, block_max, nan_max, on_device, warp_max
from .runtime.device import ON_SIMULATOR
from .runtime.launch import as_block, grid_blocks
from .runtime.loads import aligned16


@functools.cache
def row_segment_kernel(seg: int):
    """A kernel for (1, seg) blocks: one warp per (row, segment of `seg` columns) at a time.

    Lane l reads columns l, l + 32, l + 64, ... of its segment, so consecutive lanes read
    consecutive elements (coalesced). `seg` is baked in: the per-lane loop has a constant
    trip count, which the compiler unrolls into independent loads. Warps stride over the
    groups, so any grid covers any matrix.
    """
    per_lane = -(-seg // WARP)

    @cuda.jit
    def kernel(x, out):
        rows, cols = x.shape
        nseg = out.shape[1]
        lane = cuda.threadIdx.x % WARP
        warps_per_block = cuda.blockDim.x // WARP
        group = cuda.blockIdx.x * warps_per_block + cuda.threadIdx.x // WARP
        while group < rows * nseg:  # the same for every lane of a warp: warps never split here
            row = group // nseg
            start = (group % nseg) * seg
            stop = min(start + seg, cols)
            m = float32(0.0)
            for u in range(per_lane):
                j = start + lane + u * WARP
                if j < stop:
                    m = nan_max(m, abs(float32(x[row, j])))
            m = warp_max(m)
            if lane == 0:
                out[row, group % nseg] = m
            group += cuda.gridDim.x * warps_per_block

    return kernel


@functools.cache
def row_segment_kernel_vec4(seg: int, groups: int):
    """(1, seg) blocks of a float32 matrix whose rows are whole segments, seg a multiple of 128,
    and whose segments per row are a multiple of `groups` (1, 2 or 4).

    Each lane reads 4 consecutive floats per load, so a warp covers 128 columns per load
    instruction, and a warp takes `groups` neighbouring segments of one row per trip, issuing
    all their loads before the first shuffle: their memory latency overlaps instead of adding
    up. `x` is the matrix flattened to 1-D (`load4` addresses 1-D arrays). The sizes are baked
    in, so every loop below has a constant trip count and unrolls into independent loads.
    """
    per_lane = seg // 128

    @cuda.jit(device=True)
    def lane_part(x, start, lane):
        m = float32(0.0)
        for u in range(per_lane):
            m = nan_max(m, absmax4(x, start + 128 * u + 4 * lane))
        return m

    @cuda.jit
    def kernel(x, out):
        nseg = out.shape[1]
        lane = cuda.threadIdx.x % WARP
        warps_per_block = cuda.blockDim.x // WARP
        first = (cuda.blockIdx.x * warps_per_block + cuda.threadIdx.x // WARP) * groups
        while first < out.size:  # the same for every lane of a warp
            row = first // nseg
            s = first - row * nseg
            start = first * seg  # segments tile the rows exactly: segment k starts at k * seg
            if groups == 4:  # a constant: the other branches compile away
                m0 = lane_part(x, start, lane)  # all loads first ...
                m1 = lane_part(x, start + seg, lane)
                m2 = lane_part(x, start + 2 * seg, lane)
                m3 = lane_part(x, start + 3 * seg, lane)
                m0 = warp_max(m0)  # ... then the shuffles
                m1 = warp_max(m1)
                m2 = warp_max(m2)
                m3 = warp_max(m3)
                if lane == 0:
                    out[row, s] = m0
                    out[row, s + 1] = m1
                    out[row, s + 2] = m2
                    out[row, s + 3] = m3
            elif groups == 2:
                m0 = lane_part(x, start, lane)
                m1 = lane_part(x, start + seg, lane)
                m0 = warp_max(m0)
                m1 = warp_max(m1)
                if lane == 0:
                    out[row, s] = m0
                    out[row, s + 1] = m1
            else:
                m0 = warp_max(lane_part(x, start, lane))
                if lane == 0:
                    out[row, s] = m0
            first += cuda.gridDim.x * warps_per_block * groups

    return kernel


TILE_THREADS = 32 if ON_SIMULATOR else 256  # threads per tile of tile_absmax_kernel_vec4


@functools.cache
def tile_absmax_kernel_vec4(bm: int, bn: int, threads: int):
    """(bm, bn) tiles of a float32 matrix whose rows are a multiple of 4 long, `bn % 4 == 0`:
    one thread block per tile at a time, every load 16 bytes.

    Thread t owns the 4 columns `4 * (t % (bn / 4))` of the tile, in rows `t // (bn / 4)`,
    `+ threads / (bn / 4)`, ...: a warp reads whole 512-byte row pieces, and `bm`, `bn` are baked
    in, so the per-thread loop unrolls into `bm * bn / 4 / threads` independent loads. `x` is
    the matrix flattened to 1-D; `out` is (ceil(M / bm), ceil(N / bn)). Edge tiles are smaller.

    Why not [`tile_absmax_kernel`][]: it reads one float per load and turns a flat index into
    a row and a column with a 64-bit division and remainder per element. On the H200 that
    made (128, 128) tiles 4x slower than (1, 128) groups.
    """
    groups_per_row = bn // 4
    row_step = threads // groups_per_row
    per_thread = -(-bm // row_step)

    @cuda.jit
    def kernel(x, cols, out):
        rows = x.size // cols
        tiles_across = out.shape[1]
        gc = cuda.threadIdx.x % groups_per_row
        r0 = cuda.threadIdx.x // groups_per_row
        for tile in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):  # the same for the whole block
            ti = tile // tiles_across
            tj = tile - ti * tiles_across
            c = tj * bn + 4 * gc
            m = float32(0.0)
            for u in range(per_thread):
                r = ti * bm + r0 + u * row_step
                if r0 + u * row_step < bm and r < rows and c < cols:
                    m = nan_max(m, absmax4(x, r * cols + c))
            m = block_max(m)
            if cuda.threadIdx.x == 0:
                out[ti, tj] = m

    return kernel


@cuda.jit
def tile_absmax_kernel(x, bm, bn, out):
    """One block per `(bm, bn)` tile at a time: `out[ti, tj]` = absmax of the tile (edge tiles
    are smaller). Blocks stride over the tiles."""
    rows, cols = x.shape
    tile = cuda.blockIdx.x
    while tile < out.size:  # the same for the whole block: block_max's barrier is safe
        ti = tile // out.shape[1]
        tj = tile % out.shape[1]
        r0 = ti * bm
        c0 = tj * bn
        h = min(bm, rows - r0)
        w = min(bn, cols - c0)
        m = float32(0.0)
        for k in range(cuda.threadIdx.x, h * w, cuda.blockDim.x):
            m = nan_max(m, abs(float32(x[r0 + k // w, c0 + k % w])))
        m = block_max(m)
        if cuda.threadIdx.x == 0:
            out[ti, tj] = m
        tile += cuda.gridDim.x


# -- host functions ---------------------------------------------------------------------------


def absmax_rows(x):
    """`max(|x[i, :]|)` for each row of 2-D `x`: float32[M] (numpy in, numpy out; device stays
    device). Input as for [`absmax`][tutorial.reduction.absmax]."""
    d, from_host = on_device(x, "absmax_rows", ndim=2)
    rows, cols = d.shape
    out = cuda.device_array((rows, 1), np.float32)
    absmax_blocks_into(d, 1, cols, out)
    return out.copy_to_host().reshape(rows) if from_host else out.reshape(rows)


def absmax_blocks(x, block=(1, 128)):
    """`max(|x|)` over each `(bm, bn)` tile of 2-D `x`: `float32[ceil(M/bm), ceil(N/bn)]`.

    Edge tiles, where M or N is not a multiple of the block, cover what is left; a block larger
    than `x` is one tile of all of it. Input as for [`absmax`][tutorial.reduction.absmax]. A row block (`bm == 1`) uses one warp per tile; a taller
    one, one thread block per tile.
    """
    bm, bn = as_block(block, "absmax_blocks")
    d, from_host = on_device(x, "absmax_blocks", ndim=2)
    rows, cols = d.shape
    out = cuda.device_array((math.ceil(rows / bm), math.ceil(cols / bn)), np.float32)
    absmax_blocks_into(d, min(bm, rows), min(bn, cols), out)  # (memory and time follow x, not the block)
    return out.copy_to_host() if from_host else out


def absmax_blocks_into(d, bm, bn, out):
    """The launch of [`absmax_blocks`][] on preallocated device arrays."""
    rows, cols = d.shape
    groups = max(1, 4 // (bn // 128)) if bn % 128 == 0 else 0  # segments per warp per trip
    if (bm == 1 and groups and cols % bn == 0 and (cols // bn) % groups == 0 and d.is_c_contiguous()
            and aligned16(d.reshape(rows * cols))):
        blocks = grid_blocks(out.size, groups * THREADS // WARP)
        row_segment_kernel_vec4(bn, groups)[blocks, THREADS](d.reshape(rows * cols), out)
    elif bm == 1:
        row_segment_kernel(bn)[grid_blocks(out.size, THREADS // WARP), THREADS](d, out)
    elif (bn % 4 == 0 and cols % 4 == 0 and bn // 4 <= TILE_THREADS and TILE_THREADS % (bn // 4) == 0
          and d.is_c_contiguous() and aligned16(d.reshape(rows * cols))):
        kernel = tile_absmax_kernel_vec4(bm, bn, TILE_THREADS)
        kernel[grid_blocks(out.size, 1), TILE_THREADS](d.reshape(rows * cols), cols, out)
    else:
        tile_absmax_kernel[grid_blocks(out.size, 1), THREADS](d, bm, bn, out)
