# Chapter 01 exercise: Warp-shuffle max reduction.
# Generated from tutorial.reduction by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 01` to run the graded tests against this file.
# stub fingerprint: d90732839e3db04b (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Chapter 01: the absolute-maximum reduction every FP8 scale is computed from.

From the inside out:

* [`warp_max`][] - 32 lanes combine their values with five `shfl_xor_sync` steps
  (offsets 16, 8, 4, 2, 1). No shared memory, no barrier: a warp's lanes exchange registers.
* [`block_max`][] - each warp reduces itself, lane 0 of each warp writes one value to
  shared memory, one barrier, and then every warp reduces those (at most 32) values, so
  every thread of the block gets the result.
* [`absmax`][] - the whole array, in one launch: every block reduces its share (chunks of
  consecutive elements, the grid striding over the array) to one partial and stores it; the
  last block to finish reduces the partials ([`finish_grid_max`][]). Max is exact and
  order-free, so the result is the same bits every run (deterministic), unlike a
  floating-point sum.
* [`absmax_rows`][] / [`absmax_blocks`][] - per-row and per-tile maxima of a matrix, the
  inputs of per-channel (chapter 03) and block (chapter 04) scales.

NaN anywhere gives NaN, as `np.max(np.abs(x))` does: the combining step is [`nan_max`][],
which keeps a NaN instead of letting `a > b` (always false for NaN) drop it. `-0.0` counts
as 0.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, int32

from tutorial.device import ON_SIMULATOR
from tutorial.loads import aligned16, load4

FULL_MASK = 0xFFFFFFFF
WARP = 32
MAX_WARPS = 32  # a block has at most 1024 threads = 32 warps

# Launch shapes. On a GPU: 256 threads (8 warps) per block, enough blocks to fill every SM
# several times over. The simulator runs one Python thread per CUDA thread, so it gets a
# few small blocks (still more than one warp, so that block_max has work to do).
THREADS = 64 if ON_SIMULATOR else 256
UNROLL = 4  # independent loads in flight per thread per loop trip: hides memory latency
BLOCKS_PER_SM = 16  # grid cap; on the H100, 8 -> 16 blocks per SM gave absmax +1%


@cuda.jit(device=True)
def nan_max(a, b):
    """max(a, b) that returns NaN if either is NaN (a comparison with NaN is always False)."""
    if a > b or a != a:
        return a
    return b


if not ON_SIMULATOR:
    from tutorial.ptx import max_nan

    # The same on the GPU in one instruction (PTX max.NaN.f32, compute capability >= 8.0)
    # instead of two comparisons and a select: it is on every step of every reduction.
    nan_max = max_nan  # noqa: F811


@cuda.jit(device=True)
def warp_max(v):
    """The maximum of `v` over the 32 lanes of the calling warp, returned to every lane.

    All 32 lanes must call it (full mask). A butterfly: at offset 16 lane i swaps with lane
    `i ^ 16`, then 8, 4, 2, 1; after five steps every lane has seen every value.
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
    """`|x[i]|` as float32 (float16 inputs widen exactly)."""
    return abs(float32(x[i]))


@cuda.jit(device=True)
def finish_grid_max(m, partials, counter, out):
    """Combine each block's `m` into `out[0]`, in the same launch.

    Every block stores its maximum in `partials[blockIdx.x]` and takes a ticket from
    `counter`; the block that draws the last ticket knows all the others have stored theirs,
    reduces them into `out[0]`, and sets the counter back to 0 for the next launch. (The threadfence
    makes a block's partial visible to every other block before its ticket is drawn.) Max is
    exact and order-free, so the result is the same bits whichever block comes last.
    """
    last = cuda.shared.array(1, int32)
    m = block_max(m)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = m
        cuda.threadfence()
        last[0] = cuda.atomic.add(counter, 0, 1) == cuda.gridDim.x - 1
    cuda.syncthreads()
    if last[0]:
        m = float32(0.0)
        for b in range(cuda.threadIdx.x, cuda.gridDim.x, cuda.blockDim.x):
            m = nan_max(m, partials[b])
        m = block_max(m)
        if cuda.threadIdx.x == 0:
            out[0] = m
            counter[0] = 0


@cuda.jit
def absmax_kernel(x, partials, counter, out):
    """`out[0] = max |x|` over 1-D `x`, of any float dtype, in one launch of `partials.size`
    blocks.

    A block reads `UNROLL * blockDim` consecutive elements per trip (thread t takes t,
    t + blockDim, ...: each warp-wide load covers contiguous bytes), then jumps ahead by the
    whole grid's chunk, so every thread keeps `UNROLL` independent loads in flight.
    """
    # TODO (absmax_kernel): loop over this block's chunks with UNROLL independent loads per trip (then a guarded tail), combining |x| with nan_max into m; then hand m to finish_grid_max (roughly 16 lines)
    raise NotImplementedError("absmax_kernel: not yet attempted")


@cuda.jit(device=True)
def absmax4(x, i):
    """`max |x[i:i + 4]|` with one 16-byte load."""
    a, b, c, d = load4(x, i)
    return nan_max(nan_max(abs(a), abs(b)), nan_max(abs(c), abs(d)))


def max_kernel_vec4(magnitude4, magnitude1):
    """A one-launch max over 1-D float32 `x` of `magnitude4(x, i)` (the largest magnitude of
    `x[i:i + 4]`, read with one 16-byte load) and, for the up to 3 elements past the last
    whole group of 4, `magnitude1(x, i)`. [`absmax_kernel`][], one idea better: a quarter of
    the load instructions. Same chunked walk, counted in groups of 4. Needs 16-byte
    alignment."""

    @cuda.jit
    def kernel(x, partials, counter, out):
        n4 = x.size // 4
        width = cuda.blockDim.x
        i = cuda.blockIdx.x * UNROLL * width + cuda.threadIdx.x  # in groups of 4 elements
        step = cuda.gridDim.x * UNROLL * width
        m = float32(0.0)
        while i + (UNROLL - 1) * width < n4:
            a = magnitude4(x, 4 * i)
            b = magnitude4(x, 4 * (i + width))
            c = magnitude4(x, 4 * (i + 2 * width))
            d = magnitude4(x, 4 * (i + 3 * width))
            m = nan_max(m, nan_max(nan_max(a, b), nan_max(c, d)))
            i += step
        for u in range(UNROLL):
            if i + u * width < n4:
                m = nan_max(m, magnitude4(x, 4 * (i + u * width)))
        if cuda.blockIdx.x == 0 and 4 * n4 + cuda.threadIdx.x < x.size:
            m = nan_max(m, magnitude1(x, 4 * n4 + cuda.threadIdx.x))
        finish_grid_max(m, partials, counter, out)

    return kernel


def max_kernel_scalar(magnitude1):
    """The same one-launch max for any dtype or alignment, one element per load."""

    @cuda.jit
    def kernel(x, partials, counter, out):
        m = float32(0.0)
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            m = nan_max(m, magnitude1(x, i))
        finish_grid_max(m, partials, counter, out)

    return kernel


absmax_kernel_vec4 = max_kernel_vec4(absmax4, abs_at)


@functools.lru_cache(maxsize=None)
def _row_segment_kernel(seg: int):
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


@functools.lru_cache(maxsize=None)
def _row_segment_kernel_vec4(seg: int, groups: int):
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


@cuda.jit
def _absmax_tiles(x, bm, bn, out):
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

_FLOATS = (np.float16, np.float32, np.float64)


def _is_device_array(x) -> bool:
    """A numba device array, or any array exposing `__cuda_array_interface__` (torch, cupy).
    (The simulator's device arrays expose no interface, but have `copy_to_host`.)"""
    return hasattr(x, "__cuda_array_interface__") or (not isinstance(x, np.ndarray) and hasattr(x, "copy_to_host"))


def _on_device(x, name: str):
    """(device array, came_from_host) for a numpy array, a numba device array or any
    `__cuda_array_interface__` object (torch, cupy). Checks dtype and emptiness."""
    host = not _is_device_array(x)
    if host:
        x = np.asarray(x)
    dtype = np.dtype(x.dtype) if host else np.dtype(str(x.dtype).replace("torch.", ""))
    if dtype not in _FLOATS:
        raise ValueError(f"{name}: x must be float16, float32 or float64, got dtype {dtype}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)}); the maximum of nothing is undefined")
    if host:
        return cuda.to_device(np.ascontiguousarray(x)), True
    return (x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)), False


def _grid_blocks(work_items: int, per_block: int) -> int:
    """Enough blocks for `work_items` at `per_block` each, capped: `BLOCKS_PER_SM` per SM on a
    GPU (the kernels stride over the rest), 4 on the simulator (each simulated thread costs
    ~1 ms)."""
    cap = 4 if ON_SIMULATOR else BLOCKS_PER_SM * cuda.get_current_device().MULTIPROCESSOR_COUNT
    return max(1, min(cap, math.ceil(work_items / per_block)))


def absmax(x):
    """`max(|x|)` over every element of `x`, any shape: a float for a numpy input, a one-element
    float32 device array (left on the device) for a device input. NaN anywhere gives NaN."""
    d, from_host = _on_device(x, "absmax")
    if not d.is_c_contiguous():
        raise ValueError(f"absmax: x must be contiguous, got strides {d.strides}")
    flat = d.reshape(math.prod(d.shape)) if d.ndim != 1 else d
    partials = cuda.device_array(_grid_blocks(flat.size, THREADS * UNROLL * 4), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.device_array(1, np.float32)
    absmax_into(flat, partials, counter, out)
    return float(out.copy_to_host()[0]) if from_host else out


def absmax_into(flat, partials, counter, out):
    """The one launch of [`absmax`][] on preallocated device arrays: `partials.size` blocks;
    `counter` (int32[1]) must be 0 before the first launch and is left at 0 after each."""
    kernel = absmax_kernel_vec4 if aligned16(flat) else absmax_kernel
    kernel[partials.size, THREADS](flat, partials, counter, out)


def absmax_rows(x):
    """`max(|x[i, :]|)` for each row of 2-D `x`: float32[M] (numpy in, numpy out; device stays
    device)."""
    rows, cols = _shape2d(x, "absmax_rows")
    return absmax_blocks(x, (1, cols), _name="absmax_rows").reshape(rows)


def _shape2d(x, name):
    if len(x.shape) != 2:
        raise ValueError(f"{name}: x must be 2-D, got shape {tuple(x.shape)}")
    return x.shape


def absmax_blocks(x, block=(1, 128), *, _name="absmax_blocks"):
    """`max(|x|)` over each `(bm, bn)` tile of 2-D `x`: `float32[ceil(M/bm), ceil(N/bn)]`.

    Edge tiles, where M or N is not a multiple of the block, cover what is left. A row block
    (`bm == 1`) uses one warp per tile; a taller one, one thread block per tile.
    """
    rows, cols = _shape2d(x, _name)
    bm, bn = (int(b) for b in block)
    if bm <= 0 or bn <= 0:
        raise ValueError(f"{_name}: block must be two positive sizes, got {tuple(block)}")
    d, from_host = _on_device(x, _name)
    out = cuda.device_array((math.ceil(rows / bm), math.ceil(cols / bn)), np.float32)
    absmax_blocks_into(d, bm, bn, out)
    return out.copy_to_host() if from_host else out


def absmax_blocks_into(d, bm, bn, out):
    """The launch of [`absmax_blocks`][] on preallocated device arrays."""
    rows, cols = d.shape
    groups = max(1, 4 // (bn // 128)) if bn % 128 == 0 else 0  # segments per warp per trip
    if (bm == 1 and groups and cols % bn == 0 and (cols // bn) % groups == 0 and d.is_c_contiguous()
            and aligned16(d.reshape(rows * cols))):
        blocks = _grid_blocks(out.size, groups * THREADS // WARP)
        _row_segment_kernel_vec4(bn, groups)[blocks, THREADS](d.reshape(rows * cols), out)
    elif bm == 1:
        _row_segment_kernel(bn)[_grid_blocks(out.size, THREADS // WARP), THREADS](d, out)
    else:
        _absmax_tiles[_grid_blocks(out.size, 1), THREADS](d, bm, bn, out)
