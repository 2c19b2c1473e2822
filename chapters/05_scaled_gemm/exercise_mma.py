# Chapter 05 exercise: Scaled GEMM: CUDA cores, then tensor cores (tutorial.gemm.mma).
# Generated from tutorial.gemm.mma by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 05`: the graded tests use this file as tutorial.gemm.mma.
# TODOs:
#   line   77: load_fragment_a
#   line   87: load_fragment_b
# stub fingerprint: 7016e62e7cff90bb (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Tensor cores from Numba: one warp-wide FP8 matrix multiply-accumulate, `mma.sync` m16n8k32.

FP8 exists for the tensor cores. A CUDA core has no FP8 arithmetic: chapter 05's first kernels
decode every code to float32 and multiply in float32, so they can never beat an SGEMM. The
tensor cores of compute capability >= 8.9 take FP8 codes as they are. PTX reaches them through
`mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32`: the 32 lanes of a warp together
compute D = A @ B + C for A 16 x 32 (FP8), B 32 x 8 (FP8), C and D 16 x 8 (float32), each lane
holding a fixed piece of every matrix in its registers (a *fragment*). Numba has no binding for
it; [`mma_fp8`][] is one inline-PTX instruction (see `tutorial.runtime.ptx`).

Which lane holds what (`g = lane // 4`, `t = lane % 4`; a register holds 4 FP8 codes, the
lowest byte first):

| matrix | registers                               | registers                                  |
| ------ | --------------------------------------- | ------------------------------------------ |
| A      | a0: row g, k 4t .. 4t + 3               | a1: row g + 8, k 4t .. 4t + 3              |
| A      | a2: row g, k 16 + 4t .. 16 + 4t + 3     | a3: row g + 8, k 16 + 4t .. 16 + 4t + 3    |
| B      | b0: column g, k 4t .. 4t + 3            | b1: column g, k 16 + 4t .. 16 + 4t + 3     |
| C, D   | c0, c1: row g, columns 2t, 2t + 1       | c2, c3: row g + 8, columns 2t, 2t + 1      |

So a lane's A registers are 4 consecutive codes of a row of A (one 32-bit load from a
row-major tile), and its B registers 4 consecutive codes of a *column* of B: B is staged
transposed. [`fragment_a`][] and friends give the same maps as lists, for checks and
figures; [`load_fragment_a`][] and [`load_fragment_b`][] load a lane's registers from tiles
staged in shared memory (the exercise of this lesson: the tensor-core kernel of
`tutorial.gemm.tensor_core` loads every fragment with them).

The simulator has no tensor cores: there [`mma_fp8`][] gathers the 32 lanes' registers (as
the warp shuffles of `tutorial.runtime.simulator` do), decodes them and multiplies exactly in
float64, rounding D once to float32. The hardware adds the 32 products of one instruction with
fewer bits than that (about 14 kept, DeepSeek-V3 measured on the H800), which is why a long
K loop promotes partial sums to float32 every 128 values (chapter 05, "promote").
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from tutorial import fp8
from tutorial.runtime.device import ON_SIMULATOR

M, N, K = 16, 8, 32  # the instruction's shape


def fragment_a(lane: int) -> list[tuple[int, int]]:
    """(row, first k) of each of the 4 registers (4 codes each) lane `lane` holds of A."""
    g, t = lane // 4, lane % 4
    return [(g, 4 * t), (g + 8, 4 * t), (g, 16 + 4 * t), (g + 8, 16 + 4 * t)]


def fragment_b(lane: int) -> list[tuple[int, int]]:
    """(first k, column) of each of the 2 registers (4 codes each) lane `lane` holds of B."""
    g, t = lane // 4, lane % 4
    return [(4 * t, g), (16 + 4 * t, g)]


def fragment_c(lane: int) -> list[tuple[int, int]]:
    """(row, column) of each of the 4 float32 values lane `lane` holds of C and D."""
    g, t = lane // 4, lane % 4
    return [(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]


@cuda.jit(device=True)
def load_fragment_a(sa, row0, word0, lane):
    """The registers (a0, a1, a2, a3) that lane `lane` holds of the 16 x 32 piece of A whose
    first code is word `word0` of row `row0` of `sa`: a shared-memory tile of A, uint32 words
    of 4 consecutive codes along K (a row of A is a row of `sa`). See the table above."""
    # TODO (load_fragment_a): g = lane // 4 and t = lane % 4; a0 is word t of row g of the piece, a1
    #   the same word 8 rows down, a2 and a3 the words 4 further along (k + 16) (roughly 4 lines)
    raise NotImplementedError("load_fragment_a: not yet attempted")


@cuda.jit(device=True)
def load_fragment_b(sbt, col0, word0, lane):
    """The registers (b0, b1) that lane `lane` holds of the 32 x 8 piece of B whose first code
    is word `word0` of column `col0`, from `sbt`: B staged *transposed*, uint32 words of 4
    consecutive codes along K (a column of B is a row of `sbt`). See the table above."""
    # TODO (load_fragment_b): g = lane // 4 and t = lane % 4; b0 is word t of column g of the piece,
    #   b1 the word 4 further along (k + 16) (roughly 3 lines)
    raise NotImplementedError("load_fragment_b: not yet attempted")


def _codes(word) -> list[int]:
    w = int(word) & 0xFFFFFFFF
    return [(w >> (8 * i)) & 0xFF for i in range(4)]


def mma_reference(a_regs, b_regs, c_regs, fmt_a=fp8.E4M3, fmt_b=fp8.E4M3) -> np.ndarray:
    """D (16 x 8 float32) from every lane's registers: `a_regs[lane] = (a0, a1, a2, a3)`,
    `b_regs[lane] = (b0, b1)`, `c_regs[lane] = (c0, c1, c2, c3)`. Exact products and sum
    (float64), one rounding to float32."""
    a = np.zeros((M, K), np.uint8)
    b = np.zeros((K, N), np.uint8)
    c = np.zeros((M, N), np.float64)
    for lane in range(32):
        for word, (r, k) in zip(a_regs[lane], fragment_a(lane)):
            a[r, k:k + 4] = _codes(word)
        for word, (k, n) in zip(b_regs[lane], fragment_b(lane)):
            b[k:k + 4, n] = _codes(word)
        for value, (r, n) in zip(c_regs[lane], fragment_c(lane)):
            c[r, n] = value
    d = fp8.decode(a, fmt_a).astype(np.float64) @ fp8.decode(b, fmt_b).astype(np.float64) + c
    return d.astype(np.float32)


def mma_fp8(fmt_a, fmt_b):
    """The device function (a0, a1, a2, a3, b0, b1, c0, c1, c2, c3) -> (d0, d1, d2, d3): one
    m16n8k32 FP8 x FP8 -> float32 multiply-accumulate by the whole warp (all 32 lanes must
    call it together, converged). `a*`, `b*`: uint32 words of 4 codes; `c*`, `d*`: float32."""
    fmt_a, fmt_b = fp8.as_format(fmt_a), fp8.as_format(fmt_b)
    return _MMA[(fmt_a.name, fmt_b.name)]


if ON_SIMULATOR:
    from tutorial.runtime import simulator

    def _emulated(fmt_a, fmt_b):
        def mma(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
            values, lane = simulator.exchange(f"mma_{fmt_a.name}_{fmt_b.name}", ((a0, a1, a2, a3), (b0, b1),
                                                                                (c0, c1, c2, c3)))
            if len(values) != 32:
                raise RuntimeError("mma: all 32 lanes of the warp must take part (a full warp)")
            regs = [values[other] for other in range(32)]
            d = mma_reference([r[0] for r in regs], [r[1] for r in regs], [r[2] for r in regs], fmt_a, fmt_b)
            return tuple(np.float32(d[r, n]) for r, n in fragment_c(lane))

        return mma

    _MMA = {(fa.name, fb.name): _emulated(fa, fb) for fa in fp8.FORMATS.values() for fb in fp8.FORMATS.values()}

else:
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    from tutorial.runtime.ptx import asm_codegen

    def _intrinsic(fmt_a, fmt_b):
        asm = (f"mma.sync.aligned.m16n8k32.row.col.f32.{fmt_a.name}.{fmt_b.name}.f32 "
               "{$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};")
        codegen = asm_codegen(asm, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", [types.uint32] * 6 + [types.float32] * 4,
                              [types.float32] * 4)

        @intrinsic
        def mma(typingctx, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
            args = (a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)
            if not all(isinstance(x, types.Number) for x in args):
                return None
            return types.UniTuple(types.float32, 4)(*args), codegen

        return mma

    _MMA = {(fa.name, fb.name): _intrinsic(fa, fb) for fa in fp8.FORMATS.values() for fb in fp8.FORMATS.values()}


__all__ = ["mma_fp8", "mma_reference", "fragment_a", "fragment_b", "fragment_c", "load_fragment_a",
           "load_fragment_b", "M", "N", "K"]
