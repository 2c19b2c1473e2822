# Chapter 05 exercise: Shared-memory tiled GEMM with fine-grained FP8 scales.
# Generated from tutorial.gemm by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 05` to run the graded tests against this file.
# stub fingerprint: 9b5d626fced1c7a9 (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Chapter 05: a shared-memory tiled GEMM with fine-grained FP8 scales, from naive to
register-blocked.

C = A @ B for A (M, K) and B (K, N), built up one idea at a time, SGEMM-worklog style:

1. [`naive_kernel`][]: one thread per element of C, every operand from global memory.
2. [`tiled_kernel`][]: a block computes a TILE x TILE tile of C, staging TILE x TILE tiles of
   A and B in shared memory, so each value loaded from global memory is used TILE times.
3. [`blocked_kernel`][]: register blocking. A block computes BM x BN of C; each thread a
   TM x TN micro-tile held in registers; per step of the K loop it reads TM values of A and TN
   of B from shared memory and does TM * TN multiply-adds with them.
4. The same kernel on FP8 codes: tiles are decoded while they are loaded (a 256-entry table in
   shared memory), and the scales are applied one of three ways (`mode`):

    * `"dequant"`: multiply each value by its scale while loading the tile. Exact for any
      scales; one multiply per loaded value.
    * `"promote"` (DeepGEMM's way): accumulate raw code products over a K-block in which
      every scale is constant, then add `partial * scale_a * scale_b` to the result. Needs
      the K-extent of both operands' blocks to be a multiple of the K-block.
    * `"epilogue"`: accumulate raw code products over all of K, scale once at the end with
      the first K-block's scales. Exact only if the scales do not vary along K (per-tensor,
      per-row of A, per-column of B); wrong otherwise, which is the point of showing it.

5. [`mma_kernel`][]: the tensor cores. FP8 codes go into `mma.sync` as they are (no decode,
   [`tutorial.mma`][tutorial.mma]): each warp computes a 32 x 32 piece of C as 2 x 4
   instructions of 16 x 8 x 32, from tiles of codes staged in shared memory (A as it is, B
   transposed, since an instruction wants 4 consecutive k of a column of B in one register).
   The scales are applied DeepGEMM's way: the instructions accumulate one K-block, then the
   partial sums are scaled and added to float32 accumulators ("promote"), or, for scales
   constant along K, once at the end ("epilogue").
6. The same kernel, promoting by rescaling ("rescale", the online-softmax trick of
   FlashAttention): the accumulators are kept in units of the running K-block's scales, so
   the instructions accumulate into them directly, as without scales; when a K-block starts
   they are multiplied by old scale / new scale, and by the last scales at the end. The
   compiler folds that multiply into the instruction's own float32 add, so rescaling costs
   almost nothing in the loop. The ratios come from a small kernel ([`plan_kernel`][]),
   which also flags rows and columns whose scales lie too far apart (over 2^32) for the
   rescaled sums to stay in float32's normal range; the blocks of C that hold one are
   recomputed by promotion.

[`scaled_matmul`][] picks "rescale" on tensor cores and "promote" on CUDA cores when the
blocks allow it, else "dequant"; the tensor cores where the GPU has FP8 ones (compute
capability >= 8.9) and the mode allows.
Accumulation is float32 throughout (inside one tensor-core instruction, with fewer bits:
see [`tutorial.mma`][tutorial.mma]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32, int32, uint32

from tutorial import fp8
from tutorial.device import ON_SIMULATOR
from tutorial.mma import mma_fp8
from tutorial.qtensor import QTensor
from tutorial.scaling import cached_kernel

MODES = ("dequant", "promote", "rescale", "epilogue")
CUDA_CORE_MODES = ("dequant", "promote", "epilogue")  # "rescale" is the tensor-core kernel's


@dataclass(frozen=True)
class Tiling:
    """The shape of the work: a block computes BM x BN of C, a thread TM x TN of that; the K
    loop advances BK at a time. `threads = (BM / TM) * (BN / TN)`."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def step(self) -> int:
        """The K granularity at which a K-block can end: a staged tile."""
        return self.bk


# The H100 configuration, and a small one for the simulator (one Python thread per CUDA
# thread, about a millisecond per thread per barrier: fewer threads and fewer K steps).
TILING = Tiling(64, 64, 32, 8, 8) if ON_SIMULATOR else Tiling(128, 128, 8, 8, 8)
TILE = 16  # the shared-memory tiled kernel's square tile (16 x 16 threads)
# Left alone, the compiler gives the 128 x 128 kernel 203 registers a thread: one block of 256
# threads per SM. Capped at 128, two blocks fit: 7.9 -> 11.1 TFLOPS on the H100 (96: 9.5).
MAX_REGISTERS = 128


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
        # TODO (tiled_kernel): each thread loads one value of the A tile (row i, column k0 + tx) and one of the B tile (row k0 + ty, column j), zeros outside the matrices; barrier; TILE multiply-adds from shared memory; barrier (roughly 6 lines)
        raise NotImplementedError("tiled_kernel: not yet attempted")
    if i < m and j < n:
        c[i, j] = acc


# -- 3 and 4. register blocking, float32 or FP8 with scales -------------------------------------------

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

    def build():
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
                    # TODO (blocked_kernel): the K-block just finished is k0 + bk - promote_k .. k0 + bk (or the last, shorter one); for each (i, j) of the micro-tile add part[i, j] times the A scale of its row and the B scale of its column for that K-block to acc[i, j], and reset part (roughly 8 lines)
                    raise NotImplementedError("blocked_kernel: not yet attempted")
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

        options = {} if ON_SIMULATOR or max_registers is None else {"max_registers": max_registers}

        @cuda.jit(**options)
        def kernel(a, a_scales, a_block, a_lut, b, b_scales, b_block, b_lut, c):
            kernel_body(a, b, a_scales, a_block, a_lut, b_scales, b_block, b_lut, c)

        return kernel

    return cached_kernel(("gemm", tiling, mode, promote_k, max_registers), build)


# -- 5. tensor cores ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MmaTiling:
    """A block computes BM x BN of C with WM x WN warps, each warp (BM / WM) x (BN / WN) of it
    as 16 x 8 tensor-core tiles; BK codes of K (a multiple of 32) are staged per step."""

    bm: int
    bn: int
    bk: int
    wm: int
    wn: int

    @property
    def threads(self) -> int:
        return self.wm * self.wn * 32

    @property
    def step(self) -> int:
        """The K granularity at which a K-block can end: one instruction's 32."""
        return 32


# H100: a 128 x 128 tile of C, 16 warps of 32 x 32 each (2 x 4 instructions per 32 k), 128 codes
# of K per step in shared memory. H100, 4096^3, promote / no scaling in the loop, TFLOPS:
# 16 warps 66 / 71; 8 warps of 64 x 32 (255 registers) 66 / 86; 64 x 128 tiles 57 / 71; BK 64
# 51 / 65. The simulator: 2 warps, small tiles.
MMA_TILING = MmaTiling(32, 16, 64, 2, 1) if ON_SIMULATOR else MmaTiling(128, 128, 128, 4, 4)
MMA_MAX_REGISTERS = 128  # 512 threads: 128 registers each fill the register file (some spills)
# H100, 4096^3, 1 x 128 / 128 x 128, 16 warps, promote: sub-blocks of 128 58 TFLOPS, of 64 66
# (epilogue 71; after later changes: H200, epilogue 128 -> 72, 64 -> 95 TFLOPS).
MMA_SUB_K = 64
_SPAN = np.float32(2.0**32)  # rescale: how far a K-block's scale may be from the running one (plan_kernel)
_PAD = 4  # words added to each shared-memory row: a warp's fragment loads then hit 32 different banks


@cuda.jit(device=True)
def column_word(w0, w1, w2, w3, j):
    """Byte j of each of four words, as one word (w0's byte lowest): transposing a 4 x 4 block
    of codes, rows k .. k + 3 of B in, 4 consecutive k of column j out."""
    shift = uint32(8 * j)
    byte = uint32(0xFF)
    return (((w0 >> shift) & byte) | (((w1 >> shift) & byte) << uint32(8))
            | (((w2 >> shift) & byte) << uint32(16)) | (((w3 >> shift) & byte) << uint32(24)))


def mma_kernel(tiling: MmaTiling = MMA_TILING, fmt_a="e4m3", fmt_b="e4m3", promote_k: int | None = 128,
               uniform_a: bool = False, uniform_b: bool = False, whole: bool = False,
               max_registers: int | None = None, rescale: bool = False, a_varies: bool = True,
               b_varies: bool = True):
    """The tensor-core kernel for FP8 codes with scales.

    Args:
        tiling: the block's tile of C and its warps.
        fmt_a: the FP8 format of A's codes.
        fmt_b: the FP8 format of B's codes.
        promote_k: the K-block (a multiple of 32) over which both operands' scales are
            constant: partial sums are scaled and added to the float32 accumulators after
            each. None: scale once at the end with the first K-block's scales ("epilogue":
            exact only when the scales do not vary along K).
        uniform_a: one scale covers all rows of a warp's piece of C (`a.block[0]` a multiple
            of BM / WM).
        uniform_b: one scale covers its columns (`b.block[1]` a multiple of BN / WN), as for
            128 x 128 blocks of B.
        whole: M, N and K are multiples of BM, BN and BK, so no tile load needs a bounds check.
        max_registers: the cap on registers per thread (None: as many as let one block fill
            an SM's 64K registers).
        rescale: with `promote_k`, the instructions accumulate straight into the
            accumulators, which are kept in units of the running K-block's scales: at each new
            K-block they are multiplied by old scale / new scale, and by the last K-block's
            scales at the end, both from `plan` ([`plan_kernel`][]). A kernel built without
            rescale, given plan_kernel's `unsafe`, computes only the blocks of C with an
            unsafe row or column (an empty `unsafe`: all blocks).
        a_varies: (rescale) whether A's scales vary along K (else their ratios are 1).
        b_varies: (rescale) whether B's scales vary along K (else their ratios are 1).

    Launch: grid (ceil(N / BN), ceil(M / BM)), `tiling.threads` threads. The kernel's
    arguments: `a` (M, K / 4) uint32 (the codes of A, 4 to a word, K padded to a multiple of 4
    with zeros), `a_scales` (float32, 2-D), `a_block` (int64[2]), `b` (K, N / 4) uint32 (the
    codes of B, rows of 4 to a word), `b_scales`, `b_block`, `k` (K, unpadded), `c` (M, N)
    float32, `plan` and `unsafe` (see rescale; placeholders otherwise).

    Warp w computes rows `(w // WN) * BM / WM ..` of the block's tile and columns
    `(w % WN) * BN / WN ..`; lane (g, t) = (lane // 4, lane % 4) holds what
    [`tutorial.mma`][tutorial.mma] says.
    """
    bm, bn, bk, wm, wn = tiling.bm, tiling.bn, tiling.bk, tiling.wm, tiling.wn
    if bk % 32 or (promote_k is not None and promote_k % 32):
        raise ValueError(f"mma_kernel: BK = {bk} and promote_k = {promote_k} must be multiples of 32")
    threads = tiling.threads
    if max_registers is None:  # as many as let one block fill an SM's 64K registers
        max_registers = min(255, 65536 // threads // 8 * 8)
    bkw = bk // 4  # words of a staged row
    stride = bkw + _PAD
    wtm, wtn = bm // wm, bn // wn  # a warp's piece of the tile
    mt, nt = wtm // 16, wtn // 8  # ... in tensor-core tiles
    lane_rows, lane_cols = 2 * mt, 2 * nt  # rows and columns of C a lane holds (local array sizes)
    promote = promote_k is not None
    # The K sub-block after which partial sums are scaled: it must divide BK and lie within one
    # K-block of constant scales; gcd(promote_k, BK) does both. At most MMA_SUB_K: shorter
    # chains of instructions hold fewer fragments in registers.
    sub_k = math.gcd(math.gcd(promote_k or bk, bk), MMA_SUB_K)
    subs, chain = bk // sub_k, sub_k // 32  # sub-blocks per staged tile, instructions per sub-block
    a_scales_per_lane = 1 if uniform_a else lane_rows
    b_scales_per_lane = 1 if uniform_b else lane_cols
    rescale = promote and rescale
    direct = rescale or not promote  # the instructions accumulate into acc itself
    # rescale: one thread stages the ratios of each row and column of the block's tile, one
    # per sub-block (1 where no K-block starts). A lane keeps the ratios of its outputs that
    # differ in rr: rows only if A's scales vary along K, columns only if B's do.
    rows_cols = bm + bn
    rr_rows = a_scales_per_lane if a_varies else 1
    rr_cols = b_scales_per_lane if b_varies else 1
    at_tiles = rescale and promote_k % bk == 0  # K-blocks start only where staged tiles do
    if rescale and threads < rows_cols:
        raise ValueError(f"mma_kernel: rescale needs a thread for each of the {bm} + {bn} rows and columns")
    mma = mma_fp8(fmt_a, fmt_b)

    def build():
        @cuda.jit(device=True)
        def load_a(sa, a, row0, kw0, t):
            """`sa[r, w]` = word kw0 + w of row row0 + r of A (zeros outside)."""
            m, k4 = a.shape
            for e in range(t, bm * bkw, threads):  # consecutive threads: consecutive words of a row
                r = e // bkw
                w = e - r * bkw
                v = uint32(0)
                if whole or (row0 + r < m and kw0 + w < k4):
                    v = a[row0 + r, kw0 + w]
                sa[r, w] = v

        @cuda.jit(device=True)
        def load_b_transposed(sb, b, col0, kw0, t):
            """`sb[n, w]` = codes k = 4 (kw0 + w) .. + 3 of column col0 + n of B (zeros outside):
            each thread reads a 4 x 4 block of codes (4 words of 4 rows) and transposes it."""
            kk, n4 = b.shape
            quads = bn // 4
            for e in range(t, quads * bkw, threads):  # consecutive threads: consecutive words of a row
                w = e // quads
                q = e - w * quads
                k = 4 * (kw0 + w)
                cw = col0 // 4 + q
                w0 = w1 = w2 = w3 = uint32(0)
                if whole:
                    w0, w1, w2, w3 = b[k, cw], b[k + 1, cw], b[k + 2, cw], b[k + 3, cw]
                elif cw < n4:
                    if k < kk:
                        w0 = b[k, cw]
                    if k + 1 < kk:
                        w1 = b[k + 1, cw]
                    if k + 2 < kk:
                        w2 = b[k + 2, cw]
                    if k + 3 < kk:
                        w3 = b[k + 3, cw]
                for j in range(4):
                    sb[4 * q + j, w] = column_word(w0, w1, w2, w3, j)

        @cuda.jit(device=True)
        def load_scales(sa_of, sb_of, a_scales, b_scales, a_rows, b_cols, a_block, b_block, kb, k):
            """The scales of this lane's rows and columns for the K-block starting at kb (zeros
            for a block of padding past K). Loaded when the block starts, used when it ends:
            the loads' latency hides behind the block's instructions."""
            for i in range(a_scales_per_lane):
                sa_of[i] = a_scales[a_rows[i], kb // a_block[1]] if kb < k else float32(0.0)
            for j in range(b_scales_per_lane):
                sb_of[j] = b_scales[kb // b_block[0], b_cols[j]] if kb < k else float32(0.0)

        @cuda.jit(device=True)
        def fetch_ratios(ratios, plan, row0, col0, m, n, k0, k, t):
            """rescale: thread t < BM looks after row row0 + t of C, BM <= t < BM + BN after
            column col0 + t - BM: ratios[s] = its ratio for sub-block s of the tile at k0 (see
            plan_kernel), 1 where no K-block starts (nor where the first one does: acc is
            still zero)."""
            for sub in range(subs):
                ks = k0 + sub * sub_k
                ratios[sub] = float32(1.0)
                if ks % promote_k == 0 and 0 < ks < k:
                    j = ks // promote_k
                    if t < bm:
                        ratios[sub] = plan[j, min(row0 + t, m - 1)]
                    elif t < rows_cols:
                        ratios[sub] = plan[j, m + min(col0 + t - bm, n - 1)]

        @cuda.jit(device=True)
        def load_ratios(rr, ss, sub, wr0, wc0, g, q4):
            """rescale: `rr[row, column]` = row ratio x column ratio (from row `sub` of ss) for
            this lane's rows and columns, as far as they differ: 1 x 1 when neither operand's
            scales vary along K, 4 x 1 for 1x128 A and 128x128 B (a warp's columns share a
            scale), 4 x 8 at most."""
            for ia in range(rr_rows):
                ra = ss[sub, wr0 + 16 * (ia // 2) + 8 * (ia % 2) + g] if a_varies else float32(1.0)
                for jb in range(rr_cols):
                    rb = ss[sub, bm + wc0 + 8 * (jb // 2) + 2 * q4 + jb % 2] if b_varies else float32(1.0)
                    rr[ia, jb] = ra * rb

        @cuda.jit(device=True)
        def multiply_sub_block(sa, sb, acc, sa_of, sb_of, rr, wr0, wc0, g, q4, w0):
            """The warp's share of one K sub-block (words w0 .. w0 + sub_k / 4 of the staged
            tiles). For each 16 x 8 tile of the warp's piece of C: `chain` instructions from
            zero, then (promote) that partial sum times its scales added to acc: 4 registers
            hold a partial sum, not a second copy of all the warp's accumulators. Without
            promotion the instructions accumulate into acc directly; with rescale, acc is first
            multiplied by its ratio in rr (see load_ratios), each tile's just before its
            instructions: the compiler folds that multiply into the instruction's own float32
            add (on sm_90 an FP8 mma.sync is two HMMAs from zero, then an FADD into C, which
            becomes an FFMA): rescaling costs no instruction here."""
            fa = cuda.local.array((chain, 4), uint32)
            fb = cuda.local.array((chain, 2), uint32)
            d = cuda.local.array(4, float32)
            for i in range(mt):
                r = wr0 + 16 * i + g
                for s in range(chain):
                    w = w0 + 8 * s + q4
                    fa[s, 0] = sa[r, w]
                    fa[s, 1] = sa[r + 8, w]
                    fa[s, 2] = sa[r, w + 4]
                    fa[s, 3] = sa[r + 8, w + 4]
                for j in range(nt):
                    n = wc0 + 8 * j + g
                    for s in range(chain):
                        fb[s, 0] = sb[n, w0 + 8 * s + q4]
                        fb[s, 1] = sb[n, w0 + 8 * s + q4 + 4]
                    for v in range(4):
                        d[v] = acc[i, j, v] if direct else float32(0.0)
                        if rescale:
                            d[v] *= rr[(2 * i + v // 2) if rr_rows > 1 else 0,
                                       (0 if uniform_b else 2 * j + v % 2) if rr_cols > 1 else 0]
                    for s in range(chain):
                        d[0], d[1], d[2], d[3] = mma(fa[s, 0], fa[s, 1], fa[s, 2], fa[s, 3], fb[s, 0], fb[s, 1],
                                                     d[0], d[1], d[2], d[3])
                    for h in range(2):
                        for v in range(2):
                            if direct:
                                acc[i, j, 2 * h + v] = d[2 * h + v]
                            else:
                                scale = sa_of[0 if uniform_a else 2 * i + h] * sb_of[0 if uniform_b else 2 * j + v]
                                acc[i, j, 2 * h + v] += d[2 * h + v] * scale


        options = {} if ON_SIMULATOR or max_registers is None else {"max_registers": max_registers}

        @cuda.jit(**options)
        def kernel(a, a_scales, a_block, b, b_scales, b_block, k, c, plan, unsafe):
            t = cuda.threadIdx.x
            row0 = cuda.blockIdx.y * bm
            col0 = cuda.blockIdx.x * bn
            m, n = c.shape
            if not rescale and unsafe.shape[0] > 0:  # a redo: only blocks with an unsafe row or column
                mine = 0
                for e in range(t, rows_cols, threads):
                    mine |= unsafe[min(row0 + e, m - 1)] if e < bm else unsafe[m + min(col0 + e - bm, n - 1)]
                if not cuda.syncthreads_or(mine):
                    return
            sa = cuda.shared.array((bm, stride), uint32)
            sb = cuda.shared.array((bn, stride), uint32)
            ss = cuda.shared.array((subs, rows_cols), float32)  # rescale: ratios, rows then columns
            lane = t % 32
            warp = t // 32
            g = lane // 4
            q4 = lane % 4
            wr0 = (warp // wn) * wtm
            wc0 = (warp % wn) * wtn
            # Which row of a_scales and column of b_scales each of this lane's outputs uses,
            # found once (divisions by run-time block sizes are slow).
            a_rows = cuda.local.array(lane_rows, int32)
            b_cols = cuda.local.array(lane_cols, int32)
            for i in range(mt):
                for h in range(2):
                    a_rows[2 * i + h] = min(row0 + wr0 + 16 * i + 8 * h + g, m - 1) // a_block[0]
            for j in range(nt):
                for v in range(2):
                    b_cols[2 * j + v] = min(col0 + wc0 + 8 * j + 2 * q4 + v, n - 1) // b_block[1]
            acc = cuda.local.array((mt, nt, 4), float32)
            for i in range(mt):
                for j in range(nt):
                    for v in range(4):
                        acc[i, j, v] = float32(0.0)
            sa_of = cuda.local.array(a_scales_per_lane, float32)  # promote: the running K-block's scales
            sb_of = cuda.local.array(b_scales_per_lane, float32)
            ratios = cuda.local.array(subs, float32)  # rescale: this thread's, for the next tile
            rr = cuda.local.array((rr_rows, rr_cols), float32)  # rescale: this lane's ratios now
            for ia in range(rr_rows):
                for jb in range(rr_cols):
                    rr[ia, jb] = float32(1.0)
            for kw0 in range(0, a.shape[1], bkw):
                k0 = 4 * kw0
                # Scales (ratios) loaded before the tiles, used after them: the latencies overlap.
                if rescale:
                    fetch_ratios(ratios, plan, row0, col0, m, n, k0, k, t)
                elif promote and subs == 1:
                    load_scales(sa_of, sb_of, a_scales, b_scales, a_rows, b_cols, a_block, b_block, k0, k)
                load_a(sa, a, row0, kw0, t)
                load_b_transposed(sb, b, col0, kw0, t)
                if rescale and t < rows_cols:
                    for sub in range(subs):
                        ss[sub, t] = ratios[sub]
                cuda.syncthreads()
                tile_starts_block = rescale and k0 % promote_k == 0 and 0 < k0 < k  # acc is zero before the first
                for sub in range(subs):
                    ks = k0 + sub * sub_k
                    if at_tiles:
                        starts_block = sub == 0 and tile_starts_block
                    else:
                        starts_block = rescale and ks % promote_k == 0 and 0 < ks < k
                    if starts_block:
                        load_ratios(rr, ss, sub, wr0, wc0, g, q4)
                    elif promote and not rescale and subs > 1:
                        load_scales(sa_of, sb_of, a_scales, b_scales, a_rows, b_cols, a_block, b_block, ks, k)
                    multiply_sub_block(sa, sb, acc, sa_of, sb_of, rr, wr0, wc0, g, q4, sub * (sub_k // 4))
                    if starts_block:  # used: back to 1 until the next K-block
                        for ia in range(rr_rows):
                            for jb in range(rr_cols):
                                rr[ia, jb] = float32(1.0)
                cuda.syncthreads()
            last = plan.shape[0] - 1  # rescale: the last K-block's scales
            for i in range(mt):
                for h in range(2):
                    r = row0 + wr0 + 16 * i + 8 * h + g
                    for j in range(nt):
                        for v in range(2):
                            cj = col0 + wc0 + 8 * j + 2 * q4 + v
                            if r < m and cj < n:
                                value = acc[i, j, 2 * h + v]
                                if rescale:  # acc is in units of the last K-block's scales
                                    value *= plan[last, r] * plan[last, m + cj]
                                elif not promote:  # right only if the scales do not vary along K
                                    value *= a_scales[a_rows[2 * i + h], 0] * b_scales[0, b_cols[2 * j + v]]
                                c[r, cj] = value

        return kernel

    key = ("mma", tiling, fp8.as_format(fmt_a).name, fp8.as_format(fmt_b).name, promote_k, uniform_a, uniform_b,
           whole, max_registers, rescale, a_varies, b_varies)
    return cached_kernel(key, build)


_PLAN_ITEMS = 32  # rows / columns per block of plan_kernel (its x); its y runs along K


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
    i = cuda.blockIdx.x * _PLAN_ITEMS + x
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
    pooled_hi = cuda.shared.array((32, _PLAN_ITEMS), float32)
    pooled_lo = cuda.shared.array((32, _PLAN_ITEMS), float32)
    pooled_finite = cuda.shared.array((32, _PLAN_ITEMS), int32)
    pooled_hi[y, x], pooled_lo[y, x], pooled_finite[y, x] = hi, lo, finite
    cuda.syncthreads()
    if y == 0 and i < m + n:
        for other in range(1, cuda.blockDim.y):
            hi = max(hi, pooled_hi[other, x])
            lo = min(lo, pooled_lo[other, x])
            finite &= pooled_finite[other, x]
        unsafe[i] = 0 if blocks == 0 or (finite and hi <= lo * _SPAN) else 1


# -- host functions -------------------------------------------------------------------------------

def _device(x):
    return x if hasattr(x, "copy_to_host") else cuda.to_device(np.ascontiguousarray(x))


def matmul_float32(a, b, kernel: str = "blocked"):
    """float32 C = A @ B with one of the progression's kernels: "naive", "tiled", "blocked"."""
    a_d, b_d = _device(np.asarray(a, np.float32) if not hasattr(a, "copy_to_host") else a), \
        _device(np.asarray(b, np.float32) if not hasattr(b, "copy_to_host") else b)
    m, k = a_d.shape
    k2, n = b_d.shape
    if k != k2:
        raise ValueError(f"matmul_float32: inner dimensions differ: a is {m}x{k}, b is {k2}x{n}")
    c = cuda.device_array((m, n), np.float32)
    launch_float32(kernel, a_d, b_d, c)
    return c.copy_to_host() if not hasattr(a, "copy_to_host") else c


_PLACEHOLDERS = []


def _placeholders():
    """Unused scale arguments for the float32 kernel (one signature for every mode)."""
    if not _PLACEHOLDERS:
        _PLACEHOLDERS.extend([cuda.to_device(np.ones((1, 1), np.float32)), cuda.to_device(np.ones(2, np.int64)),
                              cuda.to_device(np.zeros(256, np.float32))])
    return _PLACEHOLDERS


def launch_float32(kernel: str, a, b, c, tiling: Tiling = TILING):
    m, n = c.shape
    if kernel == "naive":
        naive_kernel[(math.ceil(n / 16), math.ceil(m / 16)), (16, 16)](a, b, c)
    elif kernel == "tiled":
        tiled_kernel[(math.ceil(n / TILE), math.ceil(m / TILE)), (TILE, TILE)](a, b, c)
    elif kernel == "blocked":
        scales, block, lut = _placeholders()
        grid = (math.ceil(n / tiling.bn), math.ceil(m / tiling.bm))
        blocked_kernel(tiling, max_registers=MAX_REGISTERS)[grid, tiling.threads](a, scales, block, lut, b, scales,
                                                                                 block, lut, c)
    else:
        raise ValueError(f"kernel must be 'naive', 'tiled' or 'blocked', got {kernel!r}")


_CONSTANTS: dict = {}


def _small_constant(key, make):
    """A small device array made once (a decode table, a block shape): copying it to the device
    on every call would add a synchronising copy to every GEMM."""
    if key not in _CONSTANTS:
        _CONSTANTS[key] = cuda.to_device(np.asarray(make()))
    return _CONSTANTS[key]


def _check_operands(a, b):
    if not isinstance(a, QTensor) or not isinstance(b, QTensor):
        raise ValueError(f"scaled_matmul: a and b must be QTensors, got {type(a).__name__} and {type(b).__name__}")
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"scaled_matmul: a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"scaled_matmul: inner dimensions differ: a is {a.shape[0]}x{a.shape[1]}, "
                         f"b is {b.shape[0]}x{b.shape[1]}")


def promotion_k(a: QTensor, b: QTensor, tiling=TILING) -> int | None:
    """The K-block over which both operands' scales are constant, if "promote" can use one: the
    smaller K-extent of the two blocks, if both are multiples of it and it is one of the
    kernel's K steps (BK on CUDA cores, 32 on tensor cores); a block covering all of K counts
    as any multiple. With scales constant along K, 128 (partial sums still go to float32 then)."""
    k = a.shape[1]
    step = tiling.step
    extents = [e for e in (a.block[1], b.block[0]) if e < k]
    if not extents:
        return max(step, 128 // step * step)  # scales constant along K: any K-block
    kb = min(extents)
    if kb % step or any(e % kb for e in extents):
        return None
    return kb


KERNELS = ("auto", "cuda_core", "tensor_core")


def tensor_cores_available() -> bool:
    """Whether [`mma_kernel`][] can run: a GPU with FP8 tensor cores (compute
    capability >= 8.9), or the simulator, which emulates the instruction."""
    return ON_SIMULATOR or fp8.hardware_fp8_available()


def _words(codes):
    """(R, C) uint8 codes as a (R, ceil(C / 4)) uint32 device array, 4 codes to a word; C is
    padded with zero codes to a multiple of 4 (on the host: only odd shapes pay that copy)."""
    rows, cols = codes.shape
    if cols % 4 == 0 and (not hasattr(codes, "copy_to_host") or codes.is_c_contiguous()):
        return _device(codes).view(np.uint32)
    host = codes.copy_to_host() if hasattr(codes, "copy_to_host") else np.asarray(codes)
    padded = np.zeros((rows, -(-cols // 4) * 4), np.uint8)
    padded[:, :cols] = host
    return cuda.to_device(padded).view(np.uint32)


def _buffer(shape, dtype):
    """A device buffer kept per shape: every launch that uses one writes all of it first, and
    launches on one stream run in order."""
    return _small_constant(("buffer", shape, np.dtype(dtype).name), lambda: np.zeros(shape, dtype))


def _scales_and_blocks(a: QTensor, b: QTensor):
    """Both operands' scales (float32, on the device) and block shapes (int64[2], kept)."""
    scales = [q.scales if hasattr(q.scales, "copy_to_host") else _device(np.asarray(q.scales, np.float32))
              for q in (a, b)]
    blocks = [_small_constant(("block", q.block), lambda q=q: np.asarray(q.block, np.int64)) for q in (a, b)]
    return scales, blocks


def rescale_plan(a: QTensor, b: QTensor, promote_k: int | None = None):
    """(plan, unsafe) for mode "rescale" (see [`plan_kernel`][]): device arrays of shape
    (K-blocks + 1, M + N) and (M + N,); `promote_k` defaults to [`promotion_k`][]'s."""
    scales, blocks = _scales_and_blocks(a, b)
    return _plan(scales, blocks, a.shape[0], a.shape[1], b.shape[1], promote_k or promotion_k(a, b, MMA_TILING))


def _plan(scales, blocks, m, k, n, promote_k):
    plan = _buffer((-(-k // promote_k) + 1, m + n), np.float32)
    unsafe = _buffer((m + n,), np.int32)
    if m + n:
        along_k = min(32, max(plan.shape[0] - 1, 1))
        plan_kernel[-(-(m + n) // _PLAN_ITEMS), (_PLAN_ITEMS, along_k)](scales[0], blocks[0], scales[1], blocks[1], m, n,
                                                                       promote_k, plan, unsafe)
    return plan, unsafe


def _launch_tensor_core(tiling, a, b, scales, blocks, c, mode, kb):
    """[`mma_kernel`][] for `mode`. "rescale" is three launches: the plan, the rescaling
    kernel, then the promoting one, which recomputes only the blocks of C that have an unsafe
    row or column (for most inputs none: each of its blocks reads the flags and returns)."""
    m, n = c.shape
    wtm, wtn = tiling.bm // tiling.wm, tiling.bn // tiling.wn
    whole = m % tiling.bm == 0 and n % tiling.bn == 0 and a.shape[1] % tiling.bk == 0
    grid = (math.ceil(n / tiling.bn), math.ceil(m / tiling.bm))
    args = (_words(a.codes), scales[0], blocks[0], _words(b.codes), scales[1], blocks[1], a.shape[1], c)
    shape = (tiling, a.fmt, b.fmt, None if mode == "epilogue" else kb, a.block[0] % wtm == 0, b.block[1] % wtn == 0,
             whole, MMA_MAX_REGISTERS)
    plan, unsafe = _buffer((1, 1), np.float32), _buffer((0,), np.int32)  # unused; no flags: every block
    if mode == "rescale":
        k = a.shape[1]
        plan, unsafe = _plan(scales, blocks, m, k, n, kb)
        mma_kernel(*shape, rescale=True, a_varies=a.block[1] < k, b_varies=b.block[0] < k)[grid, tiling.threads](
            *args, plan, unsafe)
    mma_kernel(*shape)[grid, tiling.threads](*args, plan, unsafe)


def scaled_matmul(a: QTensor, b: QTensor, mode: str | None = None, *, out=None, kernel: str = "auto",
                  tiling=None):
    """C = dequantize(a) @ dequantize(b), float32 accumulation, on the GPU (or the simulator).

    ```text
    C[m, n] = sum_k decode(a.codes[m, k]) * a.scales[m // a.block[0], k // a.block[1]]
                    * decode(b.codes[k, n]) * b.scales[k // b.block[0], n // b.block[1]]
    ```

    for a (M, K) and b (K, N) of any granularity (per-tensor, per-row of a, per-column of b,
    1 x 128 a with 128 x 128 b, other blocks).

    Args:
        a: the (M, K) operand.
        b: the (K, N) operand.
        mode: "promote" or "rescale" (tensor cores only) where both operands' scales are
            constant over K-blocks (the default then: "rescale" on tensor cores, "promote" on
            CUDA cores), "dequant" (always exact; the default otherwise), or "epilogue" (exact
            only for scales that do not vary along K).
        out: a float32 (M, N) device array to write C into.
        kernel: "tensor_core" ([`mma_kernel`][]; not for "dequant"), "cuda_core"
            ([`blocked_kernel`][]; not for "rescale") or "auto": the tensor cores on a GPU
            that has FP8 ones, where the mode allows; the CUDA-core kernel on the simulator
            (its emulated tensor cores are slow; "rescale" still gets them) and elsewhere.
        tiling: a [`Tiling`][] or [`MmaTiling`][], which picks its kernel.

    Returns:
        A numpy array for host QTensors, a device array for device ones (or `out`, if given).
    """
    _check_operands(a, b)
    if kernel not in KERNELS:
        raise ValueError(f"scaled_matmul: kernel must be one of {KERNELS}, got {kernel!r}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"scaled_matmul: mode must be one of {MODES}, got {mode!r}")
    if kernel == "auto" and tiling is not None:  # a tiling names its kernel
        kernel = "tensor_core" if isinstance(tiling, MmaTiling) else "cuda_core"
    if tiling is not None and isinstance(tiling, MmaTiling) != (kernel == "tensor_core"):
        raise ValueError(f"scaled_matmul: kernel {kernel!r} does not take a {type(tiling).__name__}")
    if kernel == "auto":
        tc_kb = promotion_k(a, b, MMA_TILING)
        usable = mode == "epilogue" or (mode in (None, "promote", "rescale") and tc_kb)
        only_tc = mode == "rescale" and tensor_cores_available()  # the simulator emulates them
        kernel = "tensor_core" if usable and (fp8.hardware_fp8_available() or only_tc) else "cuda_core"
    if kernel == "tensor_core" and not tensor_cores_available():
        raise ValueError("scaled_matmul: kernel 'tensor_core' needs a GPU of compute capability >= 8.9")
    tiling = tiling or (MMA_TILING if kernel == "tensor_core" else TILING)
    kb = promotion_k(a, b, tiling)
    if mode is None:
        mode = ("rescale" if kernel == "tensor_core" else "promote") if kb else "dequant"
    if mode in ("promote", "rescale") and not kb:
        raise ValueError(f"scaled_matmul: mode {mode!r} needs K-blocks of constant scales: a.block {a.block} and "
                         f"b.block {b.block} along K are not multiples of one K-block that the kernel's K step "
                         f"({tiling.step}) divides")
    if kernel == "tensor_core" and mode == "dequant":
        raise ValueError("scaled_matmul: the tensor cores take the codes as they are: mode 'dequant' needs "
                         "kernel='cuda_core'")
    if kernel == "cuda_core" and mode == "rescale":
        raise ValueError("scaled_matmul: mode 'rescale' is the tensor-core kernel's (kernel='tensor_core')")
    on_host = not hasattr(a.codes, "copy_to_host")
    m, n = a.shape[0], b.shape[1]
    c = out if out is not None else cuda.device_array((m, n), np.float32)
    scales, blocks = _scales_and_blocks(a, b)
    if kernel == "tensor_core":
        _launch_tensor_core(tiling, a, b, scales, blocks, c, mode, kb)
    else:
        luts = [_small_constant(("lut", q.fmt.name), lambda q=q: fp8.decode(np.arange(256, dtype=np.uint8), q.fmt))
                for q in (a, b)]
        launch = blocked_kernel(tiling, mode, kb or 128, MAX_REGISTERS)
        launch[(math.ceil(n / tiling.bn), math.ceil(m / tiling.bm)), tiling.threads](
            _device(a.codes), scales[0], blocks[0], luts[0], _device(b.codes), scales[1], blocks[1], luts[1], c)
    return c.copy_to_host() if on_host and out is None else c


__all__ = ["scaled_matmul", "matmul_float32", "naive_kernel", "tiled_kernel", "blocked_kernel", "mma_kernel",
           "plan_kernel", "rescale_plan", "Tiling", "MmaTiling", "TILING", "MMA_TILING", "MODES", "CUDA_CORE_MODES",
           "KERNELS", "promotion_k", "tensor_cores_available"]
