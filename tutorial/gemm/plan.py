"""The plan of mode "rescale": for each row of A and column of B, the ratios of its scales from
one K-block to the next, and flags where rescaling could go wrong.

See [`tutorial.gemm.tensor_core`][tutorial.gemm.tensor_core] for how the tensor-core kernel
uses it.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, int32, uint32

from ..qtensor import QTensor
from .operands import buffer, scales_and_blocks
from .tiling import MMA_TILING, promotion_k

SPAN = np.float32(2.0**32)  # how far a K-block's scale may be from the running one
PLAN_ITEMS = 32  # rows / columns per block of plan_kernel (its x); its y runs along K


@cuda.jit
def plan_kernel(a_scales, a_block, b_scales, b_block, m, n, promote_k, plan, unsafe):
    """The plan for "rescale", for each row of A (i < M) and column of B (i - M).

    `plan[j, i]` = scale in K-block j - 1 / scale in K-block j (1 for j = 0): the factor that
    moves accumulators from one K-block's units to the next one's; `plan[-1, i]` = the scale
    in the last K-block, by which the result is multiplied at the end.

    `unsafe[i]` = 1 where that could go wrong. Accumulators hold sums of code products times
    (row's scale in an earlier K-block / now) x (column's the same). If the largest of a row's
    scales is within 2^32 of its smallest (the same for columns), those factors are within
    2^-64 .. 2^64: nothing overflows or leaves float32's normal range (a sum of 128 e5m2
    products is below 2^39, one product at least 2^-32). A zero, negative or non-finite scale
    is unsafe too. Blocks of C with an unsafe row or column are recomputed by promotion.

    Launch: grid ceil((M + N) / 32), block (32, up to 32): thread (x, y) takes item x of the
    block and K-blocks y, y + blockDim.y, ...; then the y's of an item pool their extremes."""
    x, y = cuda.threadIdx.x, cuda.threadIdx.y
    i = cuda.blockIdx.x * PLAN_ITEMS + x
    blocks = plan.shape[0] - 1
    hi = float32(0.0)  # the largest and smallest scale seen
    lo = float32(np.inf)
    finite = 1
    if i < m + n:
        # 32-bit divisions: a 64-bit one is a long subroutine on the GPU
        line = uint32(i) // uint32(a_block[0]) if i < m else uint32(i - m) // uint32(b_block[1])
        along = uint32(a_block[1]) if i < m else uint32(b_block[0])  # the block's extent along K
        for j in range(y, blocks, cuda.blockDim.y):
            kb = uint32(j * promote_k) // along
            scale = a_scales[line, kb] if i < m else b_scales[kb, line]
            ratio = float32(1.0)
            if j > 0:
                kb = uint32((j - 1) * promote_k) // along
                ratio = (a_scales[line, kb] if i < m else b_scales[kb, line]) / scale
            plan[j, i] = ratio
            if j == blocks - 1:
                plan[blocks, i] = scale
            if not float32(0.0) < scale < np.inf:  # False for NaN too
                finite = 0
            hi = max(hi, scale)
            lo = min(lo, scale)
        if blocks == 0 and y == 0:
            plan[0, i] = float32(1.0)  # K = 0: C = 0 * 1
    pooled_hi = cuda.shared.array((32, PLAN_ITEMS), float32)
    pooled_lo = cuda.shared.array((32, PLAN_ITEMS), float32)
    pooled_finite = cuda.shared.array((32, PLAN_ITEMS), int32)
    pooled_hi[y, x], pooled_lo[y, x], pooled_finite[y, x] = hi, lo, finite
    cuda.syncthreads()
    if y == 0 and i < m + n:
        for other in range(1, cuda.blockDim.y):
            hi = max(hi, pooled_hi[other, x])
            lo = min(lo, pooled_lo[other, x])
            finite &= pooled_finite[other, x]
        unsafe[i] = 0 if blocks == 0 or (finite and hi <= lo * SPAN) else 1


def rescale_plan(a: QTensor, b: QTensor, promote_k: int | None = None):
    """(plan, unsafe) for mode "rescale" (see [`plan_kernel`][]): device arrays of shape
    (K-blocks + 1, M + N) and (M + N,); `promote_k` defaults to [`promotion_k`][]'s."""
    scales, blocks = scales_and_blocks(a, b)
    return make_plan(scales, blocks, a.shape[0], a.shape[1], b.shape[1], promote_k or promotion_k(a, b, MMA_TILING))


def make_plan(scales, blocks, m, k, n, promote_k):
    """[`rescale_plan`][] from the operands' device scales and blocks, into kept buffers."""
    plan = buffer((-(-k // promote_k) + 1, m + n), np.float32)
    unsafe = buffer((m + n,), np.int32)
    if m + n:
        along_k = min(32, max(plan.shape[0] - 1, 1))
        plan_kernel[-(-(m + n) // PLAN_ITEMS), (PLAN_ITEMS, along_k)](scales[0], blocks[0], scales[1], blocks[1], m, n,
                                                                       promote_k, plan, unsafe)
    return plan, unsafe
