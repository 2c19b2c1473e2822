# Chapter 01 exercise: Warp-shuffle max reduction.
# Generated from tutorial.reduction by `fp8-tutorial exercises` (which overwrites this
# file: keep your work elsewhere before regenerating). Fill in every TODO, then run
# `fp8-tutorial grade 01` to run the graded tests against this file.

"""Chapter 01: the absolute-maximum reduction every FP8 scale is computed from.

From the inside out:

* :func:`warp_max` - 32 lanes combine their values with five ``shfl_xor_sync`` steps
  (offsets 16, 8, 4, 2, 1). No shared memory, no barrier: a warp's lanes exchange registers.
* :func:`block_max` - each warp reduces itself, lane 0 of each warp writes one value to
  shared memory, one barrier, and the first warp reduces those (at most 32) values.
* :func:`absmax` - the whole array: every block reduces a grid-stride slice to one partial,
  a second one-block launch reduces the partials. Max is exact and order-free, so the result
  is the same bits every run (deterministic), unlike a floating-point sum.
* :func:`absmax_rows` / :func:`absmax_blocks` - per-row and per-tile maxima of a matrix,
  the inputs of per-channel (chapter 03) and block (chapter 04) scales.

NaN anywhere gives NaN, as ``np.max(np.abs(x))`` does: the combining step is
:func:`nan_max`, which keeps a NaN instead of letting ``a > b`` (always false for NaN)
drop it. ``-0.0`` counts as 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from tutorial.device import ON_SIMULATOR

FULL_MASK = 0xFFFFFFFF
WARP = 32
MAX_WARPS = 32  # a block has at most 1024 threads = 32 warps

# Launch shapes. On a GPU: 256 threads (8 warps) per block, enough blocks to fill every SM
# several times over. The simulator runs one Python thread per CUDA thread, so it gets a
# few small blocks (still more than one warp, so that block_max has work to do).
THREADS = 64 if ON_SIMULATOR else 256
UNROLL = 4  # independent loads in flight per thread per loop trip: hides memory latency


@cuda.jit(device=True)
def nan_max(a, b):
    """max(a, b) that returns NaN if either is NaN (a comparison with NaN is always False)."""
    if a > b or a != a:
        return a
    return b


@cuda.jit(device=True)
def warp_max(v):
    """The maximum of `v` over the 32 lanes of the calling warp, returned to every lane.

    All 32 lanes must call it (full mask). A butterfly: at offset 16 lane i swaps with lane
    i ^ 16, then 8, 4, 2, 1; after five steps every lane has seen every value.
    """
    # TODO (warp_max): five butterfly steps, offsets 16, 8, 4, 2, 1, combining with nan_max (roughly 5 lines)
    raise NotImplementedError("warp_max: not yet attempted")


@cuda.jit(device=True)
def block_max(v):
    """The maximum of `v` over the calling block (1-D, a multiple of 32 threads), returned to
    every thread. Every thread of the block must call it: it contains a barrier."""
    partials = cuda.shared.array(MAX_WARPS, float32)
    lane = cuda.threadIdx.x % WARP
    warp = cuda.threadIdx.x // WARP
    # TODO (block_max): reduce each warp; lane 0 of each warp stores its result in partials; barrier; every warp reduces the stored values (lanes past the number of warps use -inf) (roughly 7 lines)
    raise NotImplementedError("block_max: not yet attempted")
    cuda.syncthreads()  # partials may be reused by the caller's next block_max
    return v


@cuda.jit(device=True)
def abs_at(x, i):
    """|x[i]| as float32 (float16 inputs widen exactly)."""
    return abs(float32(x[i]))


@cuda.jit
def absmax_partials(x, partials):
    """Each block: the absmax of a grid-stride slice of 1-D `x`, into partials[blockIdx.x]."""
    # TODO (absmax_partials): grid-stride over x, UNROLL loads per trip, nan_max into m; block_max; thread 0 writes partials[blockIdx.x] (roughly 17 lines)
    raise NotImplementedError("absmax_partials: not yet attempted")


@cuda.jit
def _max_of(values, out):
    """One block: out[0] = max of `values` (already non-negative)."""
    m = float32(0.0)
    for i in range(cuda.threadIdx.x, values.size, cuda.blockDim.x):
        m = nan_max(m, values[i])
    m = block_max(m)
    if cuda.threadIdx.x == 0:
        out[0] = m


@cuda.jit
def _absmax_row_segments(x, seg, out):
    """One warp per (row, segment of `seg` columns) at a time: out[row, s] = absmax of it.

    Lane l reads columns l, l + 32, l + 64, ... of the segment: consecutive lanes read
    consecutive elements, so each warp's loads are coalesced. Warps stride over the groups,
    so any grid size covers any matrix.
    """
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
        for j in range(start + lane, stop, WARP):
            m = nan_max(m, abs(float32(x[row, j])))
        m = warp_max(m)
        if lane == 0:
            out[row, group % nseg] = m
        group += cuda.gridDim.x * warps_per_block


@cuda.jit
def _absmax_tiles(x, bm, bn, out):
    """One block per (bm, bn) tile at a time: out[ti, tj] = absmax of the tile (edge tiles are
    smaller). Blocks stride over the tiles."""
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

_FLOATS = (np.float16, np.float32, np.float64)


def _on_device(x, name: str):
    """(device array, came_from_host) for a numpy array, a numba device array or any
    __cuda_array_interface__ object (torch, cupy). Checks dtype and emptiness."""
    host = isinstance(x, np.ndarray) or not (cuda.is_cuda_array(x) or hasattr(x, "__cuda_array_interface__"))
    if host:
        x = np.asarray(x)
    dtype = np.dtype(x.dtype) if host else np.dtype(str(x.dtype).replace("torch.", ""))
    if dtype not in _FLOATS:
        raise ValueError(f"{name}: x must be float16, float32 or float64, got dtype {dtype}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)}); the maximum of nothing is undefined")
    if host:
        return cuda.to_device(np.ascontiguousarray(x)), True
    return cuda.as_cuda_array(x), False


def _grid_blocks(work_items: int, per_block: int) -> int:
    """Enough blocks for `work_items` at `per_block` each, capped: 8 per SM on a GPU (the
    kernels stride over the rest), 4 on the simulator (each simulated thread costs ~1 ms)."""
    cap = 4 if ON_SIMULATOR else 8 * cuda.get_current_device().MULTIPROCESSOR_COUNT
    return max(1, min(cap, math.ceil(work_items / per_block)))


def absmax(x):
    """max(|x|) over every element of `x`, any shape: a float for a numpy input, a one-element
    float32 device array (left on the device) for a device input. NaN anywhere gives NaN."""
    d, from_host = _on_device(x, "absmax")
    flat = d.reshape(math.prod(d.shape)) if d.ndim != 1 else d
    blocks = _grid_blocks(flat.size, THREADS * UNROLL)
    partials = cuda.device_array(blocks, np.float32)
    out = cuda.device_array(1, np.float32)
    absmax_partials[blocks, THREADS](flat, partials)
    _max_of[1, THREADS if ON_SIMULATOR else 1024](partials, out)
    return float(out.copy_to_host()[0]) if from_host else out


def absmax_rows(x):
    """max(|x[i, :]|) for each row of 2-D `x`: float32[M] (numpy in, numpy out; device stays device)."""
    rows, cols = _shape2d(x, "absmax_rows")
    return absmax_blocks(x, (1, cols), _name="absmax_rows").reshape(rows)


def _shape2d(x, name):
    if len(x.shape) != 2:
        raise ValueError(f"{name}: x must be 2-D, got shape {tuple(x.shape)}")
    return x.shape


def absmax_blocks(x, block=(1, 128), *, _name="absmax_blocks"):
    """max(|x|) over each (bm, bn) tile of 2-D `x`: float32[ceil(M/bm), ceil(N/bn)].

    Edge tiles, where M or N is not a multiple of the block, cover what is left. A row block
    (bm == 1) uses one warp per tile; a taller one, one thread block per tile.
    """
    rows, cols = _shape2d(x, _name)
    bm, bn = (int(b) for b in block)
    if bm <= 0 or bn <= 0:
        raise ValueError(f"{_name}: block must be two positive sizes, got {tuple(block)}")
    d, from_host = _on_device(x, _name)
    out = cuda.device_array((math.ceil(rows / bm), math.ceil(cols / bn)), np.float32)
    if bm == 1:
        _absmax_row_segments[_grid_blocks(out.size, THREADS // WARP), THREADS](d, bn, out)
    else:
        _absmax_tiles[_grid_blocks(out.size, 1), THREADS](d, bm, bn, out)
    return out.copy_to_host() if from_host else out
