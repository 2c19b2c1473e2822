"""Chapter 06, first step: a scaled FP8 GEMM on Hopper's warpgroup MMA (`tutorial.gemm.wgmma`).

One block is one warpgroup (128 threads) and computes a 64 x `bn` tile of C. For each
128-wide block of K it:

1. stages A's 64 x 128 codes and B's 128 x `bn` codes in shared memory, K-major and without
   swizzle (B transposed on the way in), with zero codes past the matrix's edges;
2. runs four `wgmma` m64n`bn`k32 into fresh accumulators (one commit group) and waits;
3. *promotes* the partial sums: adds each one to the thread's float32 total, times its
   row's scale of A and its column's scale of B for this K-block.

Step 3 is DeepSeek-V3's promotion: the tensor cores add the 128-term partial sums with
their reduced precision, and every partial enters a float32 sum scaled. It needs scales that
are constant over each 128-wide block of K: 1 x 128 (A) and 128 x 128 (B) blocks,
per-row / per-column, per-tensor.

No TMA, no pipeline, one warpgroup: the later steps of the chapter add those. This kernel
checks the instruction, its descriptors and its fragment layout, in a whole GEMM.
"""

from __future__ import annotations

import functools

from numba import cuda, float32, uint8

from . import wgmma as wg

KB = 128  # K per promotion: four k32 instructions
LBO = 128  # bytes between core matrices along K: adjacent
SBO = KB // wg.CORE_BYTES * 128  # bytes between 8-row groups: a row group's 8 core matrices along K


@cuda.jit(device=True)
def tile_offset(row, k):
    """The byte of (row, k) in a staged K-major tile of KB codes per row (no swizzle)."""
    return (row // 8) * SBO + (k // 16) * LBO + (row % 8) * 16 + k % 16


@functools.cache
def warpgroup_kernel(fmt_a, fmt_b, bn: int):
    """The kernel `kernel(a, b, sa, sb, bma, bka, bkb, bnb, c)`: C = A @ B scaled, for A (M, K) and
    B (K, N) uint8 codes, scales `sa` (ceil(M / bma), ceil(K / bka)) and `sb` (ceil(K / bkb),
    ceil(N / bnb)), C (M, N) float32. Launch with grid (ceil(N / bn), ceil(M / 64)) and 128
    threads. bka and bkb must be multiples of 128 or at least K (scales constant over each
    128-wide block of K)."""
    mma = wg.wgmma(fmt_a, fmt_b)
    regs = bn // 2
    a_bytes, b_bytes = wg.M * KB, bn * KB

    @cuda.jit
    def kernel(a, b, sa, sb, bma, bka, bkb, bnb, c):
        smem_a = cuda.shared.array(a_bytes, uint8, alignment=128)
        smem_b = cuda.shared.array(b_bytes, uint8, alignment=128)
        total = cuda.local.array(regs, float32)
        t = cuda.threadIdx.x
        row0, col0 = cuda.blockIdx.y * wg.M, cuda.blockIdx.x * bn
        m, n, k_total = a.shape[0], b.shape[1], a.shape[1]
        lane = t % 32
        row_t = row0 + 16 * (t // 32) + lane // 4  # this thread's first row of D
        col_t = col0 + 2 * (lane % 4)  # and first column
        for r in range(regs):
            total[r] = float32(0.0)
        for k0 in range(0, k_total, KB):
            for i in range(t, a_bytes, wg.WARPGROUP):  # A: consecutive threads, consecutive k
                r, k = i // KB, i % KB
                inside = row0 + r < m and k0 + k < k_total
                smem_a[tile_offset(r, k)] = a[row0 + r, k0 + k] if inside else uint8(0)
            for i in range(t, b_bytes, wg.WARPGROUP):  # B: consecutive threads, consecutive n
                k, j = i // bn, i % bn
                inside = k0 + k < k_total and col0 + j < n
                smem_b[tile_offset(j, k)] = b[k0 + k, col0 + j] if inside else uint8(0)
            wg.fence_proxy_async()  # the stores above, visible to the tensor cores
            cuda.syncthreads()
            part = wg.fence(wg.accumulators(regs))
            for ks in range(KB // wg.K):  # 32 codes of K: two core matrices further along
                part = mma(wg.smem_descriptor(smem_a, ks * 2 * LBO, LBO, SBO, 0),
                           wg.smem_descriptor(smem_b, ks * 2 * LBO, LBO, SBO, 0), part)
            wg.commit()
            part = wg.wait_all(part)
            for r in range(regs):  # promotion: scale this K-block's partial sum into the total
                row = row_t + 8 * ((r % 4) // 2)
                col = col_t + 8 * (r // 4) + r % 2
                if row < m and col < n:
                    total[r] += part[r] * (sa[row // bma, k0 // bka] * sb[k0 // bkb, col // bnb])
            cuda.syncthreads()  # every thread done with this K-block's tiles before the next
        for r in range(regs):
            row = row_t + 8 * ((r % 4) // 2)
            col = col_t + 8 * (r // 4) + r % 2
            if row < m and col < n:
                c[row, col] = total[r]

    return kernel


def launch_warpgroup(a_codes, b_codes, sa, sb, block_a, block_b, c, fmt_a, fmt_b, bn: int = 128):
    """Launch [`warpgroup_kernel`][] on device arrays (see there)."""
    m, k = a_codes.shape
    n = b_codes.shape[1]
    for name, bk in (("a's block", block_a[1]), ("b's block", block_b[0])):
        if bk % KB and bk < k:
            raise ValueError(f"scaled_matmul(kernel='wgmma'): {name} along K must be a multiple of {KB} or cover "
                             f"all of K ({k}), got {bk}")
    if bn % 8 or not 8 <= bn <= 256:
        raise ValueError(f"launch_warpgroup: bn must be a multiple of 8 from 8 to 256, got {bn}")
    grid = (-(-n // bn), -(-m // wg.M))
    warpgroup_kernel(fmt_a, fmt_b, bn)[grid, wg.WARPGROUP](a_codes, b_codes, sa, sb, int(block_a[0]),
                                                            int(block_a[1]), int(block_b[0]), int(block_b[1]), c)
    return c


__all__ = ["warpgroup_kernel", "launch_warpgroup", "tile_offset", "KB"]
