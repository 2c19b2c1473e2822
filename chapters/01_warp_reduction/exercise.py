# Chapter 01 exercise: Warp-shuffle max reduction (tutorial.reduction).
# Generated from tutorial.reduction by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 01`: the graded tests use this file as tutorial.reduction.
# TODOs:
#   line   78: warp_max
#   line   90: block_max
#   line  140: absmax_kernel
# stub fingerprint: e514da5ca53256ec (tells `fp8-tutorial exercises` an untouched stub from your work)

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
* Per-row and per-tile maxima of a matrix, the inputs of per-channel (chapter 03) and block
  (chapter 04) scales, are the same pieces applied to tiles: see
  [`tutorial.reduction_tiles`][tutorial.reduction_tiles].

NaN anywhere gives NaN, as `np.max(np.abs(x))` does: the combining step is [`nan_max`][],
which keeps a NaN instead of letting `a > b` (always false for NaN) drop it. `-0.0` counts
as 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, int32

from tutorial.runtime.device import ON_SIMULATOR
from tutorial.runtime.launch import as_device, grid_blocks
from tutorial.runtime.loads import BF16, aligned16, load4, widen_bf16

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


if not ON_SIMULATOR:
    from tutorial.runtime.ptx import max_nan

    # The same on the GPU in one instruction (PTX max.NaN.f32, compute capability >= 8.0)
    # instead of two comparisons and a select: it is on every step of every reduction.
    nan_max = max_nan  # noqa: F811


@cuda.jit(device=True)
def warp_max(v):
    """The maximum of `v` over the 32 lanes of the calling warp, returned to every lane.

    All 32 lanes must call it (full mask). A butterfly: at offset 16 lane i swaps with lane
    `i ^ 16`, then 8, 4, 2, 1; after five steps every lane has seen every value.
    """
    # TODO (warp_max): five butterfly steps, offsets 16, 8, 4, 2, 1, combining with nan_max (roughly
    #   5 lines)
    raise NotImplementedError("warp_max: not yet attempted")


@cuda.jit(device=True)
def block_max(v):
    """The maximum of `v` over the calling block (1-D, a multiple of 32 threads), returned to
    every thread. Every thread of the block must call it: it contains a barrier."""
    partials = cuda.shared.array(MAX_WARPS, float32)
    lane = cuda.threadIdx.x % WARP
    warp = cuda.threadIdx.x // WARP
    # TODO (block_max): reduce each warp; lane 0 of each warp stores its result in partials;
    #   barrier; every warp reduces the stored values (lanes past the number of warps use -inf)
    #   (roughly 7 lines)
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
    # TODO (absmax_kernel): loop over this block's chunks with UNROLL independent loads per trip
    #   (then a guarded tail), combining |x| with nan_max into m; then hand m to finish_grid_max
    #   (roughly 16 lines)
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


# -- host functions ---------------------------------------------------------------------------


def on_device(x, name: str, ndim: int | None = None):
    """(device array, came_from_host) of a float array for a reduction: checked, and widened to
    float32 if it is bfloat16 (exact; the reductions read elements as float32)."""
    d, from_host = as_device(x, name, ndim=ndim)
    return (widen_bf16(d) if np.dtype(d.dtype) == BF16 else d), from_host


def absmax(x):
    """`max(|x|)` over every element of `x`, any shape: a float for a numpy input, a one-element
    float32 device array (left on the device) for a device input. NaN anywhere gives NaN.
    Computed in float32: float16 and bfloat16 widen exactly, float64 is rounded to float32 (a
    finite float64 beyond float32's range is an error)."""
    d, from_host = on_device(x, "absmax")
    if not d.is_c_contiguous():
        raise ValueError(f"absmax: x must be contiguous, got strides {d.strides}")
    flat = d.reshape(math.prod(d.shape)) if d.ndim != 1 else d
    partials = cuda.device_array(grid_blocks(flat.size, THREADS * UNROLL * 4), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.device_array(1, np.float32)
    absmax_into(flat, partials, counter, out)
    return float(out.copy_to_host()[0]) if from_host else out


def absmax_into(flat, partials, counter, out):
    """The one launch of [`absmax`][] on preallocated device arrays: `partials.size` blocks;
    `counter` (int32[1]) must be 0 before the first launch and is left at 0 after each."""
    kernel = absmax_kernel_vec4 if aligned16(flat) else absmax_kernel
    kernel[partials.size, THREADS](flat, partials, counter, out)
