"""Chapter 04, one step past the exercise: 1 x 128 groups with 8 values per lane.

[`row_group_kernel`][tutorial.quant.blockwise.row_group_kernel] gives a lane 4 values of a
group (one 16-byte load) and a group a whole warp. [`group_kernel_x8`][] gives a lane 8
neighbouring values and a group 16 lanes: a warp holds two groups per tile, reduces each over
its half-warp (the last four steps of `warp_max`, `lanes_max(16)`) and writes each lane's 8
codes with one 8-byte store. That is the shape of torch.compile's kernel for DeepGEMM's
`per_token_cast_to_fp8` (8 values per thread). On the H200 (32768 x 4096, fast encoder) it
brought the float32 row to parity with torch.compile: 0.993-0.997x with 4 values a lane,
0.995-1.003x with 8 (five runs); with bfloat16 input it runs at 1.10x. It matches
[`tutorial.reference.blockwise_reference`][tutorial.reference.blockwise_reference] bit for
bit, as the other kernels do.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float32, uint64

from .. import fp8
from ..runtime.device import ON_SIMULATOR
from ..runtime.launch import launch_covering
from ..runtime.loads import BF16, aligned, load8_of
from .common import finite_amax4, lanes_max, scale_rule_of
from .encoders import factor_rule, quotient_encoder
from .per_tensor import word_encoder

GROUP = 128  # values per group: the only width this kernel takes
TILE = 2 * GROUP  # values per warp tile: 32 lanes x 8
# Tiles a warp loads per trip, all before its first shuffle (H200, fast encoder): float32 1
# (two 16-byte loads a lane; 2 tiles: 0.1-0.2% slower), bfloat16 2 (one 16-byte load each:
# 3.70 TB/s against 3.06 with 1).
TILES_PER_TRIP = {np.dtype(np.float32): 1, BF16: 2}
THREADS = 64 if ON_SIMULATOR else 256


@functools.cache
def group_kernel_x8(fmt, load8, pow2=False, encoder="exact", tiles_per_trip=1, whole=False):
    """A kernel for 1 x 128 groups, the scales in a separate (M, N / 128) array.

    One trip, no loop: launch it with [`launch_covering`][tutorial.runtime.launch.launch_covering]
    (blocks of whole warps; `first`, the grid's first tile, is the last argument). The others:
    `x`, the matrix flattened to 1-D (`M * N` a multiple of 128), read with `load8`
    (`load8_f32` or `load8_bf16`); `dwords`, the codes (M, N) viewed as uint64 and flattened
    (dword p: the codes of x[8p : 8p + 8]); `scales`, float32 (M * N / 128,). Lane l of warp
    tile t holds x[256t + 8l : 256t + 8l + 8]: lanes 0-15 one group, 16-31 the next. `whole`:
    M * N is a multiple of 256, so no load or store needs a bounds check (otherwise the
    half-warp past the end loads zeros and stores nothing).
    """
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    factor_of = factor_rule(fmt, encoder, from_scale=pow2)
    scale_of = scale_rule_of(pow2)
    half_warp_max = lanes_max(16)
    fmax = float32(fmt.max)

    @cuda.jit
    def kernel(x, dwords, scales, first):
        # One trip, no loop (launch with launch_covering): warp w takes tiles first + w * T + u.
        # The indices are written as tile * 32 + lane, not e // 8: on the H200 the divisions
        # (a sign fix-up each on int64) cost 1.2% with float32 input and 6% with bfloat16.
        n_tiles = x.size // TILE if whole else (x.size + TILE - 1) // TILE
        lane = cuda.threadIdx.x % 32
        t0 = first + cuda.grid(1) // 32 * tiles_per_trip
        vals = cuda.local.array((tiles_per_trip, 8), float32)
        if t0 < n_tiles:  # the same for every lane of a warp
            for u in range(tiles_per_trip):  # every load first ...
                e = (t0 + u) * TILE + 8 * lane
                if whole or e < x.size:
                    (vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3],
                     vals[u, 4], vals[u, 5], vals[u, 6], vals[u, 7]) = load8(x, e)
                else:
                    for k in range(8):
                        vals[u, k] = float32(0.0)
            for u in range(tiles_per_trip):  # ... then the two groups of each tile
                m = max(finite_amax4(vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3]),
                        finite_amax4(vals[u, 4], vals[u, 5], vals[u, 6], vals[u, 7]))
                amax = half_warp_max(m)  # every lane takes part in the shuffles, in range or not
                scale = scale_of(amax, fmax)
                factor = factor_of(amax, scale)
                if whole or (t0 + u) * TILE + 8 * lane < x.size:
                    if lane % 16 == 0:
                        scales[(t0 + u) * 2 + lane // 16] = scale
                    lo = encode4(vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3], factor)
                    hi = encode4(vals[u, 4], vals[u, 5], vals[u, 6], vals[u, 7], factor)
                    dwords[(t0 + u) * 32 + lane] = uint64(lo) | (uint64(hi) << uint64(32))

    return kernel


def group_x8_ready(d, bn: int, layout: str, codes) -> bool:
    """Whether [`groups_x8_into`][] takes this launch: 1 x 128 groups of a float32 or bfloat16
    (M, N) device array with N % 128 == 0, 16-byte aligned, separate scales, and codes whose
    data is 8-byte aligned."""
    return (bn == GROUP and layout == "separate" and d.shape[1] % GROUP == 0 and d.is_c_contiguous()
            and load8_of(d.reshape(d.size)) is not None and aligned(codes, 8))


def groups_x8_into(d, codes, scales, fmt, *, pow2=False, encoder="exact"):
    """1 x 128 quantization of device array d (see [`group_x8_ready`][]) into preallocated
    codes (M, N) uint8 and scales (M, N / 128) float32."""
    fmt = fp8.as_format(fmt)
    flat = d.reshape(d.size)
    per_trip = TILES_PER_TRIP[np.dtype(d.dtype)]
    whole = d.size % (TILE * per_trip) == 0
    kernel = group_kernel_x8(fmt, load8_of(flat), pow2, encoder, per_trip, whole)
    tiles = -(-d.size // TILE)
    launch_covering(kernel, tiles, THREADS // 32 * per_trip, THREADS, flat, codes.reshape(codes.size).view(np.uint64),
                    scales.reshape(scales.size))


__all__ = ["group_kernel_x8", "groups_x8_into", "group_x8_ready", "TILES_PER_TRIP"]
