"""Chapter 05's hidden graded tests: the tiled and register-blocked GEMM kernels and the
fragment loads, on inputs the visible tests (tests/test_gemm.py) do not use.

1 x 1 x 1 and K = 1 products, 17x33 @ 33x5, whole tiles with a NaN, scale granularities the
visible tests do not use (per-row a with per-column b over a K of 33; 2 x 64 a with 128 x 4 b:
two K-blocks per block of b), and fragments of two warps at other offsets of a tile of random
words: an answer tuned to the visible tests does not pass them. The GEMMs are checked within
float32's rounding bound (exactly, where every sum is exact in float32). The instructor's
grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest
from numba import cuda

from tutorial.course import grading
from tutorial.gemm import mma  # the library, or chapter 05's exercise_mma.py under --impl exercise
from tutorial.reference import blockwise_reference, scaled_matmul_reference

from tutorial import gemm  # noqa: E402  (chapter 05's exercise files are gemm.cuda_core and gemm.mma)
from test_gemm import assert_within_bound, dequantized, float32_bound, operands

pytestmark = [pytest.mark.chapter("05"), pytest.mark.hidden]


# -- tiled_kernel -----------------------------------------------------------------------------------


def small_integers(shape, seed):
    """Integers in -4 .. 4 as float32: every product and partial sum is exact in float32."""
    return np.random.default_rng(seed).integers(-4, 5, shape).astype(np.float32)


@pytest.mark.graded("tiled_kernel")
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (17, 33, 5), (20, 1, 18), (32, 16, 48)],
                         ids=["1x1 @ 1x1", "17x33 @ 33x5", "K = 1: 20x1 @ 1x18", "whole 16x16 tiles: 32x16 @ 16x48"])
def test_tiled_kernel_is_exact_on_small_integers(m, k, n):
    """Integer operands, so every sum is exact: C must equal A @ B bit for bit, over partial and whole tiles."""
    a, b = small_integers((m, k), seed=500 + m), small_integers((k, n), seed=501 + n)
    want = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    grading.assert_array_matches(gemm.matmul_float32(a, b, "tiled"), want, what=f"tiled C of {m}x{k} @ {k}x{n}")


@pytest.mark.graded("tiled_kernel")
def test_tiled_kernel_spreads_a_nan_to_its_row_only():
    """32x16 @ 16x48 random values with a NaN in A[5, 7]: row 5 of C is NaN, the rest within the float32 bound."""
    a, b = operands(32, 16, 48, seed=502)
    a[5, 7] = np.nan
    c = gemm.matmul_float32(a, b, "tiled")
    assert np.isnan(c[5]).all(), f"row 5 of C: {np.flatnonzero(~np.isnan(c[5])).size} values are not NaN"
    rest = np.delete(np.arange(32), 5)
    assert not np.isnan(c[rest]).any(), "a NaN outside row 5"
    assert_within_bound(c[rest], a[rest].astype(np.float64) @ b, float32_bound(a[rest], b), "tiled, rows without NaN")


# -- blocked_kernel ("promote") ---------------------------------------------------------------------


BLOCKED_CASES = {  # name: (m, k, n), block of a, block of b
    "1x1 @ 1x1, per-tensor": ((1, 1, 1), (1, 1), (1, 1)),
    "K = 1: 20x1 @ 1x18, per-tensor": ((20, 1, 18), (20, 1), (1, 18)),
    "17x33 @ 33x5, per-row a, per-column b": ((17, 33, 5), (1, 33), (33, 1)),
    "19x192 @ 192x21, 2x64 a, 128x4 b": ((19, 192, 21), (2, 64), (128, 4)),  # two K-blocks per block of b
}


@pytest.mark.graded("blocked_kernel")
@pytest.mark.parametrize("name", list(BLOCKED_CASES))
def test_blocked_kernel_promotes_at_other_shapes_and_granularities(name):
    """FP8 operands, mode "promote" on the CUDA cores: tiny and K = 1 products, other scale blocks."""
    (m, k, n), block_a, block_b = BLOCKED_CASES[name]
    rng = np.random.default_rng(503 + k)
    a = (rng.standard_normal((m, k)) * 10.0 ** rng.integers(-2, 3, (m, 1))).astype(np.float32)  # rows of other sizes
    b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    qa, qb = blockwise_reference(a, block_a), blockwise_reference(b, block_b)
    c = gemm.scaled_matmul(qa, qb, "promote", kernel="cuda_core")
    assert c.shape == (m, n), f"shape {c.shape}, expected {(m, n)}"
    assert_within_bound(c, scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb)), name)


# -- load_fragment_a and load_fragment_b ---------------------------------------------------------------


@cuda.jit
def two_warps_load_a(tile, row0, word0, regs):
    """Warp w loads its A fragment of the piece at (row0[w], word0[w]); its lanes are threadIdx.x % 32."""
    t = cuda.threadIdx.x
    w, lane = t // 32, t % 32
    regs[t, 0], regs[t, 1], regs[t, 2], regs[t, 3] = mma.load_fragment_a(tile, row0[w], word0[w], lane)


@cuda.jit
def two_warps_load_b(tile, col0, word0, regs):
    """Warp w loads its B fragment of the piece at (col0[w], word0[w]), B staged transposed."""
    t = cuda.threadIdx.x
    w, lane = t // 32, t % 32
    regs[t, 0], regs[t, 1] = mma.load_fragment_b(tile, col0[w], word0[w], lane)


def random_words(shape, seed):
    """A tile of random uint32 words, every bit in use (bit 31 too): a word out of place, or one
    that went through a signed or float type, shows."""
    return np.random.default_rng(seed).integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


def expected_words(tile, starts, words_of_lane):
    """[thread, register] words: for warp w's lane l, tile[r, c] for (r, c) in words_of_lane(l),
    offset by warp w's piece `starts[w]`."""
    return np.array([[tile[starts[w][0] + r, starts[w][1] + c] for r, c in words_of_lane(lane)]
                     for w in range(len(starts)) for lane in range(32)], np.uint32)


def a_words(lane):
    """From the table in tutorial.gemm.mma: a0 row g, word t; a1 row g + 8; a2, a3 four words on (k + 16)."""
    g, t = lane // 4, lane % 4
    return [(g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4)]


def b_words(lane):
    """b0 column g (a row of the transposed tile), word t; b1 four words on (k + 16)."""
    g, t = lane // 4, lane % 4
    return [(g, t), (g, t + 4)]


@pytest.mark.graded("load_fragment_a")
@pytest.mark.parametrize("starts", [[(32, 4), (0, 12)], [(48, 12), (17, 1)]],
                         ids=["warp 0 at row 32, word 4; warp 1 at row 0, word 12",
                              "warp 0 at the bottom-right piece (48, 12); warp 1 at row 17, word 1"])
def test_load_fragment_a_of_two_warps_at_other_offsets(starts):
    """A 64 x 20 tile of random words (a staged A tile: 16 words a row plus 4 of padding); each warp its own piece."""
    tile = random_words((64, 20), seed=504)
    regs = np.zeros((64, 4), np.uint32)
    two_warps_load_a[1, 64](tile, np.array([s[0] for s in starts]), np.array([s[1] for s in starts]), regs)
    grading.assert_array_matches(regs, expected_words(tile, starts, a_words),
                                 what="A fragment words by [thread, register]")


@pytest.mark.graded("load_fragment_b")
@pytest.mark.parametrize("starts", [[(8, 4), (24, 12)], [(0, 11), (17, 3)]],
                         ids=["warp 0 at column 8, word 4; warp 1 at column 24, word 12",
                              "warp 0 at column 0, word 11; warp 1 at column 17, word 3"])
def test_load_fragment_b_of_two_warps_at_other_offsets(starts):
    """A 32 x 20 transposed tile of random words; each warp its own 8-column piece."""
    tile = random_words((32, 20), seed=505)
    regs = np.zeros((64, 2), np.uint32)
    two_warps_load_b[1, 64](tile, np.array([s[0] for s in starts]), np.array([s[1] for s in starts]), regs)
    grading.assert_array_matches(regs, expected_words(tile, starts, b_words),
                                 what="B fragment words by [thread, register]")
