"""Chapter 05, on the tensor cores: FP8 codes go into `mma.sync` as they are (no decode,
[`tutorial.gemm.mma`][tutorial.gemm.mma]).

Each warp computes a piece of C as 16 x 8 instruction tiles, from tiles of codes staged in
shared memory (A as it is, B transposed, since an instruction wants 4 consecutive k of a
column of B in one register). The scales are applied one of three ways ([`MmaVariant`][]'s
`mode`):

* "promote" (DeepGEMM's way): the instructions accumulate one K sub-block from zero, then the
  partial sums are scaled and added to float32 accumulators.
* "rescale" (the online-softmax trick of FlashAttention): the accumulators are kept in units
  of the running K-block's scales, so the instructions accumulate into them directly, as
  without scales; when a K-block starts they are multiplied by old scale / new scale, and by
  the last scales at the end. The compiler folds that multiply into the instruction's own
  float32 add, so rescaling costs almost nothing in the loop. The ratios come from a small
  kernel ([`plan_kernel`][tutorial.gemm.plan.plan_kernel]), which also flags rows and columns
  whose scales lie too far apart for the rescaled sums to stay in float32's normal range; the
  blocks of C that hold one are recomputed by promotion.
* "epilogue": once at the end, right only for scales that do not vary along K.

One kernel serves the three modes: they share the staging, the fragment loads and the
instructions, and differ in a few lines that the compiler keeps or drops for each variant.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32, int32, uint32

from .. import fp8
from ..qtensor import QTensor
from ..runtime.launch import jit_options
from .mma import load_fragment_a, load_fragment_b, mma_fp8
from .operands import buffer, code_words
from .plan import make_plan
from .tiling import MMA_MAX_REGISTERS, MMA_SUB_K, MMA_TILING, MmaTiling

TENSOR_CORE_MODES = ("promote", "rescale", "epilogue")
_PAD = 4  # words added to each shared-memory row: a warp's fragment loads then hit 32 different banks


@dataclass(frozen=True)
class MmaVariant:
    """Everything one tensor-core kernel bakes in.

    Attributes:
        tiling: the block's tile of C and its warps.
        fmt_a: A's FP8 format.
        fmt_b: B's FP8 format.
        mode: "promote", "rescale" or "epilogue" (see the module docstring). A "promote"
            kernel given flags (`unsafe`, from the plan) computes only the blocks of C with a
            flagged row or column: the redo after "rescale".
        promote_k: the K-block over which both operands' scales are constant (a multiple of
            32); unused by "epilogue".
        uniform_a: one scale covers all rows of a warp's piece of C (A's block a multiple of
            BM / WM rows).
        uniform_b: one scale covers all its columns (B's block a multiple of BN / WN columns),
            as for 128 x 128 blocks of B.
        whole: M, N and K are multiples of BM, BN and BK: no tile load needs a bounds check.
        a_varies: A's scales vary along K ("rescale": else A's ratios are all 1).
        b_varies: B's scales vary along K.
        max_registers: the cap on registers per thread (None: as many as let one block fill
            an SM's 64K registers).
    """

    tiling: MmaTiling = MMA_TILING
    fmt_a: fp8.Format = fp8.E4M3
    fmt_b: fp8.Format = fp8.E4M3
    mode: str = "promote"
    promote_k: int = 128
    uniform_a: bool = False
    uniform_b: bool = False
    whole: bool = False
    a_varies: bool = True
    b_varies: bool = True
    max_registers: int | None = None

    def __post_init__(self):
        if self.mode not in TENSOR_CORE_MODES:
            raise ValueError(f"MmaVariant: mode must be one of {TENSOR_CORE_MODES}, got {self.mode!r}")
        if self.tiling.bk % 32 or self.promote_k % 32:
            raise ValueError(f"MmaVariant: BK = {self.tiling.bk} and promote_k = {self.promote_k} must be "
                             "multiples of 32")
        if self.mode == "rescale" and self.tiling.threads < self.tiling.bm + self.tiling.bn:
            raise ValueError(f"MmaVariant: rescale needs a thread for each of the {self.tiling.bm} + "
                             f"{self.tiling.bn} rows and columns")

    @classmethod
    def for_operands(cls, a: QTensor, b: QTensor, mode: str, promote_k: int, tiling: MmaTiling = MMA_TILING,
                     max_registers: int | None = MMA_MAX_REGISTERS) -> "MmaVariant":
        """The variant for multiplying `a` by `b`: the layout facts read off their shapes and
        blocks."""
        m, k = a.shape
        n = b.shape[1]
        return cls(tiling, a.fmt, b.fmt, mode, promote_k,
                   uniform_a=a.block[0] % (tiling.bm // tiling.wm) == 0,
                   uniform_b=b.block[1] % (tiling.bn // tiling.wn) == 0,
                   whole=m % tiling.bm == 0 and n % tiling.bn == 0 and k % tiling.bk == 0,
                   a_varies=a.block[1] < k, b_varies=b.block[0] < k, max_registers=max_registers)


@cuda.jit(device=True)
def column_word(w0, w1, w2, w3, j):
    """Byte j of each of four words, as one word (w0's byte lowest): transposing a 4 x 4 block
    of codes, rows k .. k + 3 of B in, 4 consecutive k of column j out."""
    shift = uint32(8 * j)
    byte = uint32(0xFF)
    return (((w0 >> shift) & byte) | (((w1 >> shift) & byte) << uint32(8))
            | (((w2 >> shift) & byte) << uint32(16)) | (((w3 >> shift) & byte) << uint32(24)))


@functools.cache
def mma_kernel(variant: MmaVariant = MmaVariant()):
    """The tensor-core kernel for FP8 codes with scales, as `variant` says (see [`MmaVariant`][]).

    Launch: grid (ceil(N / BN), ceil(M / BM)), `tiling.threads` threads. The kernel's
    arguments: `a` (M, K / 4) uint32 (the codes of A, 4 to a word, K padded to a multiple of 4
    with zeros), `a_scales` (float32, 2-D), `a_block` (int64[2]), `b` (K, N / 4) uint32 (the
    codes of B, rows of 4 to a word), `b_scales`, `b_block`, `k` (K, unpadded), `c` (M, N)
    float32, `plan` and `unsafe` ([`make_plan`][tutorial.gemm.plan.make_plan]'s for "rescale"
    and its redo; placeholders otherwise: an empty `unsafe` means every block).

    Warp w computes rows `(w // WN) * BM / WM ..` of the block's tile and columns
    `(w % WN) * BN / WN ..`; lane (g, t) = (lane // 4, lane % 4) holds what
    [`tutorial.gemm.mma`][tutorial.gemm.mma] says.
    """
    tiling, fmt_a, fmt_b = variant.tiling, variant.fmt_a, variant.fmt_b
    uniform_a, uniform_b, whole = variant.uniform_a, variant.uniform_b, variant.whole
    a_varies, b_varies, max_registers = variant.a_varies, variant.b_varies, variant.max_registers
    rescale = variant.mode == "rescale"
    promote_k = None if variant.mode == "epilogue" else variant.promote_k
    bm, bn, bk, wm, wn = tiling.bm, tiling.bn, tiling.bk, tiling.wm, tiling.wn
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
    direct = rescale or not promote  # the instructions accumulate into acc itself
    # rescale: one thread stages the ratios of each row and column of the block's tile, one
    # per sub-block (1 where no K-block starts). A lane keeps the ratios of its outputs that
    # differ in rr: rows only if A's scales vary along K, columns only if B's do.
    rows_cols = bm + bn
    rr_rows = a_scales_per_lane if a_varies else 1
    rr_cols = b_scales_per_lane if b_varies else 1
    at_tiles = rescale and promote_k % bk == 0  # K-blocks start only where staged tiles do
    mma = mma_fp8(fmt_a, fmt_b)

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
    def multiply_sub_block(sa, sb, acc, sa_of, sb_of, rr, wr0, wc0, lane, w0):
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
            for s in range(chain):
                fa[s, 0], fa[s, 1], fa[s, 2], fa[s, 3] = load_fragment_a(sa, wr0 + 16 * i, w0 + 8 * s, lane)
            for j in range(nt):
                for s in range(chain):
                    fb[s, 0], fb[s, 1] = load_fragment_b(sb, wc0 + 8 * j, w0 + 8 * s, lane)
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


    @cuda.jit(**jit_options(max_registers))
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
                multiply_sub_block(sa, sb, acc, sa_of, sb_of, rr, wr0, wc0, lane, sub * (sub_k // 4))
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


def launch_tensor_core(a: QTensor, b: QTensor, scales, blocks, c, mode: str, promote_k: int,
                       tiling: MmaTiling = MMA_TILING):
    """[`mma_kernel`][] for `mode`, into `c`, with the operands' device `scales` and `blocks`.
    "rescale" is three launches: the plan, the rescaling kernel, then the promoting one, which
    recomputes only the blocks of C that have an unsafe row or column (for most inputs none:
    each of its blocks reads the flags and returns)."""
    m, n = c.shape
    grid = (math.ceil(n / tiling.bn), math.ceil(m / tiling.bm))
    args = (code_words(a.codes), scales[0], blocks[0], code_words(b.codes), scales[1], blocks[1], a.shape[1], c)
    variant = MmaVariant.for_operands(a, b, mode, promote_k or 128, tiling)
    plan, unsafe = buffer((1, 1), np.float32), buffer((0,), np.int32)  # unused; no flags: every block
    if mode == "rescale":
        plan, unsafe = make_plan(scales, blocks, m, a.shape[1], n, promote_k)
        mma_kernel(variant)[grid, tiling.threads](*args, plan, unsafe)
        variant = dataclasses.replace(variant, mode="promote")  # the redo of flagged blocks
    mma_kernel(variant)[grid, tiling.threads](*args, plan, unsafe)
