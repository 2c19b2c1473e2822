"""Chapter 05: a shared-memory tiled GEMM with fine-grained FP8 scales, from naive to
register-blocked, on the CUDA cores.

C = A @ B for A (M, K) and B (K, N), built up one idea at a time, SGEMM-worklog style:

1. [`naive_kernel`][]: one thread per element of C, every operand from global memory.
2. [`tiled_kernel`][]: a block computes a TILE x TILE tile of C, staging TILE x TILE tiles of
   A and B in shared memory, so each value loaded from global memory is used TILE times.
3. [`blocked_kernel`][]: register blocking. A block computes BM x BN of C; each thread a
   TM x TN micro-tile held in registers; per step of the K loop it reads TM values of A and TN
   of B from shared memory and does TM * TN multiply-adds with them.
4. The same kernel on FP8 codes: tiles are decoded while they are loaded (a 256-entry table in
   shared memory), and the scales are applied one of three ways (`mode`):

    * "dequant": multiply each value by its scale while loading the tile. Exact for any
      scales; one multiply per loaded value.
    * "promote" (DeepGEMM's way): accumulate raw code products over a K-block in which
      every scale is constant, then add `partial * scale_a * scale_b` to the result. Needs
      the K-extent of both operands' blocks to be a multiple of the K-block.
    * "epilogue": accumulate raw code products over all of K, scale once at the end with
      the first K-block's scales. Exact only if the scales do not vary along K (per-tensor,
      per-row of A, per-column of B); wrong otherwise, which is the point of showing it.

The tensor cores come next: [`tutorial.gemm.tensor_core`][tutorial.gemm.tensor_core].
Accumulation is float32 throughout.
"""

from __future__ import annotations

import functools
import math

from numba import cuda, float32

from ..runtime.launch import jit_options
from .operands import decode_table, device_array, placeholders
from .tiling import MAX_REGISTERS, TILE, TILING, Tiling

CUDA_CORE_MODES = ("dequant", "promote", "epilogue")


# -- 1. naive ---------------------------------------------------------------------------------------

@cuda.jit
def naive_kernel(a, b, c):
    """`c[i, j] = sum_k a[i, k] * b[k, j]`, one thread per (i, j); 2-D launch over C."""
    j, i = cuda.grid(2)  # x along columns: neighbouring threads read neighbouring b[k, j]
    m, n = c.shape
    if i < m and j < n:
        acc = float32(0.0)
        for k in range(a.shape[1]):
            acc += a[i, k] * b[k, j]
        c[i, j] = acc


# -- 2. shared-memory tiles -------------------------------------------------------------------------

@cuda.jit
def tiled_kernel(a, b, c):
    """The same with TILE x TILE tiles of A and B staged in shared memory; block (TILE, TILE)."""
    sa = cuda.shared.array((TILE, TILE), float32)
    sb = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j = cuda.blockIdx.x * TILE + tx
    i = cuda.blockIdx.y * TILE + ty
    m, n = c.shape
    kk = a.shape[1]
    acc = float32(0.0)
    for k0 in range(0, kk, TILE):
        # BEGIN SOLUTION: each thread loads one value of the A tile (row i, column k0 + tx) and one of the B tile (row k0 + ty, column j), zeros outside the matrices; barrier; TILE multiply-adds from shared memory; barrier
        sa[ty, tx] = a[i, k0 + tx] if i < m and k0 + tx < kk else float32(0.0)
        sb[ty, tx] = b[k0 + ty, j] if k0 + ty < kk and j < n else float32(0.0)
        cuda.syncthreads()
        for t in range(TILE):
            acc += sa[ty, t] * sb[t, tx]
        cuda.syncthreads()
        # END SOLUTION
    if i < m and j < n:
        c[i, j] = acc


# -- 3 and 4. register blocking, float32 or FP8 with scales -------------------------------------------

@functools.cache
def blocked_kernel(tiling: Tiling = TILING, mode: str | None = None, promote_k: int = 128,
                   max_registers: int | None = None):
    """A register-blocked kernel. `mode` None: float32 A and B. Otherwise FP8 codes with
    scales, applied as `mode` says (see the module docstring); `promote_k`: the K-block of
    "promote".

    Launch: grid (ceil(N / BN), ceil(M / BM)), `tiling.threads` threads. The kernel's
    arguments: `a` (M, K), `a_scales` (float32, 2-D), `a_block` (int64[2]: the QTensor block),
    `a_lut` (256 float32: the decoded value of every code), the same four for `b` (K, N), then
    `c` (M, N) float32. For mode None, a and b are float32 and the scale arguments are
    placeholders (`launch_float32`).

    Thread (ty, tx) owns rows `ty + i * BM / TM` and columns `tx + j * BN / TN` of the block's
    tile: in the multiply-add loop neighbouring threads read neighbouring shared-memory words
    (no bank conflicts there; the transposing stores of the A tile do conflict) and they write
    neighbouring columns of C.
    """
    bm, bn, bk, tm, tn = tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn
    threads = tiling.threads
    rows_step, cols_step = bm // tm, bn // tn  # thread grid inside the block
    fp8_inputs = mode is not None
    promote = mode == "promote"
    epilogue = mode == "epilogue"
    dequant = mode == "dequant"
    steps_per_promotion = promote_k // bk
    if mode not in (None, *CUDA_CORE_MODES):
        raise ValueError(f"blocked_kernel: mode must be None or one of {CUDA_CORE_MODES}, got {mode!r}")
    if promote and promote_k % bk:
        raise ValueError(f"blocked_kernel: promote_k = {promote_k} must be a multiple of BK = {bk}")
    part_m, part_n = (tm, tn) if promote else (1, 1)

    if fp8_inputs:
        @cuda.jit(device=True)
        def value(x, r, k, scales, block, lut):
            """The decoded code (times its scale when dequantizing on load)."""
            v = lut[x[r, k]]
            if dequant:
                v *= scales[r // block[0], k // block[1]]
            return v
    else:
        @cuda.jit(device=True)
        def value(x, r, k, scales, block, lut):
            return x[r, k]

    @cuda.jit(device=True)
    def load_tiles(sa, sb, a, b, a_scales, a_block, a_lut, b_scales, b_block, b_lut, row0, col0, k0, t):
        """Stage `A[row0 : row0 + BM, k0 : k0 + BK]` (transposed: `sa[k, r]`) and
        `B[k0 : k0 + BK, col0 : col0 + BN]` in shared memory, zeros outside the matrices."""
        m, kk = a.shape
        n = b.shape[1]
        for e in range(t, bm * bk, threads):  # consecutive threads: consecutive k of a row
            r = e // bk
            kc = e - r * bk
            v = float32(0.0)
            if row0 + r < m and k0 + kc < kk:
                v = value(a, row0 + r, k0 + kc, a_scales, a_block, a_lut)
            sa[kc, r] = v
        for e in range(t, bk * bn, threads):  # consecutive threads: consecutive columns
            kr = e // bn
            cc = e - kr * bn
            v = float32(0.0)
            if k0 + kr < kk and col0 + cc < n:
                v = value(b, k0 + kr, col0 + cc, b_scales, b_block, b_lut)
            sb[kr, cc] = v

    @cuda.jit(device=True)
    def kernel_body(a, b, a_scales, a_block, a_lut, b_scales, b_block, b_lut, c):
        sa = cuda.shared.array((bk, bm), float32)
        sb = cuda.shared.array((bk, bn), float32)
        lut_a = cuda.shared.array(256, float32)
        lut_b = cuda.shared.array(256, float32)
        t = cuda.threadIdx.x
        ty = t // cols_step
        tx = t - ty * cols_step
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bn
        m, kk = a.shape
        n = b.shape[1]
        if fp8_inputs:  # the decode tables, once per block
            for e in range(t, 256, threads):
                lut_a[e] = a_lut[e]
                lut_b[e] = b_lut[e]
            cuda.syncthreads()
        acc = cuda.local.array((tm, tn), float32)
        part = cuda.local.array((part_m, part_n), float32)
        reg_a = cuda.local.array(tm, float32)
        reg_b = cuda.local.array(tn, float32)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = float32(0.0)
                if promote:
                    part[i, j] = float32(0.0)
        step = 0
        for k0 in range(0, kk, bk):
            load_tiles(sa, sb, a, b, a_scales, a_block, lut_a, b_scales, b_block, lut_b, row0, col0, k0, t)
            cuda.syncthreads()
            for k in range(bk):
                for i in range(tm):
                    reg_a[i] = sa[k, ty + i * rows_step]
                for j in range(tn):
                    reg_b[j] = sb[k, tx + j * cols_step]
                for i in range(tm):
                    for j in range(tn):
                        if promote:
                            part[i, j] += reg_a[i] * reg_b[j]
                        else:
                            acc[i, j] += reg_a[i] * reg_b[j]
            cuda.syncthreads()
            step += 1
            if promote and (step == steps_per_promotion or k0 + bk >= kk):
                # BEGIN SOLUTION: the K-block just finished is k0 + bk - promote_k .. k0 + bk (or the last, shorter one); for each (i, j) of the micro-tile add part[i, j] times the A scale of its row and the B scale of its column for that K-block to acc[i, j], and reset part
                kb = (k0 + bk - 1) // promote_k * promote_k  # the K-block's first k
                for i in range(tm):
                    r = min(row0 + ty + i * rows_step, m - 1)  # rows past M compute garbage that is never stored
                    sa_i = a_scales[r // a_block[0], kb // a_block[1]]
                    for j in range(tn):
                        cj = min(col0 + tx + j * cols_step, n - 1)
                        acc[i, j] += part[i, j] * (sa_i * b_scales[kb // b_block[0], cj // b_block[1]])
                        part[i, j] = float32(0.0)
                # END SOLUTION
                step = 0
        for i in range(tm):
            r = row0 + ty + i * rows_step
            for j in range(tn):
                cj = col0 + tx + j * cols_step
                if r < m and cj < n:
                    v = acc[i, j]
                    if epilogue:  # one scale per row of A and column of B: right only if they do not vary along K
                        v *= a_scales[r // a_block[0], 0] * b_scales[0, cj // b_block[1]]
                    c[r, cj] = v

    @cuda.jit(**jit_options(max_registers))
    def kernel(a, a_scales, a_block, a_lut, b, b_scales, b_block, b_lut, c):
        kernel_body(a, b, a_scales, a_block, a_lut, b_scales, b_block, b_lut, c)

    return kernel


def launch_float32(kernel: str, a, b, c, tiling: Tiling = TILING):
    m, n = c.shape
    if kernel == "naive":
        naive_kernel[(math.ceil(n / 16), math.ceil(m / 16)), (16, 16)](a, b, c)
    elif kernel == "tiled":
        tiled_kernel[(math.ceil(n / TILE), math.ceil(m / TILE)), (TILE, TILE)](a, b, c)
    elif kernel == "blocked":
        scales, block, lut = placeholders()
        grid = (math.ceil(n / tiling.bn), math.ceil(m / tiling.bm))
        blocked_kernel(tiling, max_registers=MAX_REGISTERS)[grid, tiling.threads](a, scales, block, lut, b, scales,
                                                                                 block, lut, c)
    else:
        raise ValueError(f"kernel must be 'naive', 'tiled' or 'blocked', got {kernel!r}")


def launch_scaled(a, b, scales, blocks, c, mode: str, promote_k: int | None, tiling: Tiling = TILING):
    """[`blocked_kernel`][] on FP8 operands `a`, `b` (QTensors) into `c`, with their device
    `scales` and `blocks` (see [`scales_and_blocks`][tutorial.gemm.operands.scales_and_blocks])."""
    m, n = c.shape
    kernel = blocked_kernel(tiling, mode, promote_k or 128, MAX_REGISTERS)
    kernel[(math.ceil(n / tiling.bn), math.ceil(m / tiling.bm)), tiling.threads](
        device_array(a.codes), scales[0], blocks[0], decode_table(a.fmt), device_array(b.codes), scales[1],
        blocks[1], decode_table(b.fmt), c)
