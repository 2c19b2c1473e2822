"""Chapter 05's hidden graded cases: the tiled and register-blocked GEMM kernels and the
fragment loads, on inputs the visible cases (tests/test_graded_ch05.py) do not use.

1 x 1 x 1 and K = 1 products, 17x33 @ 33x5, whole tiles with a NaN, scale granularities the
visible cases do not use (per-row a with per-column b over a K of 33; 2 x 64 a with 128 x 4 b:
two K-blocks per block of b), and fragments of two warps at other offsets of a tile of random
words: an answer tuned to the visible cases does not pass them. The GEMMs are checked within
float32's rounding bound (exactly, where every sum is exact in float32). The instructor's
grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest

from tutorial.course import cases, grading
from tutorial.course.cases import Case, output

from test_gemm import assert_within_bound, float32_bound, operands
from test_graded_ch05 import quantized, within_the_float32_bound

pytestmark = [pytest.mark.chapter("05"), pytest.mark.hidden]


# -- tiled_kernel -----------------------------------------------------------------------------------


def small_integers(m, k, n):
    """Integers in -4 .. 4 as float32: every product and partial sum is exact in float32."""
    def make(rng):
        return {"a": rng.integers(-4, 5, (m, k)).astype(np.float32),
                "b": rng.integers(-4, 5, (k, n)).astype(np.float32)}
    return make


def exact_product(inputs, outputs):
    a, b = inputs["a"], inputs["b"]
    (m, k), n = a.shape, b.shape[1]
    want = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    grading.assert_array_matches(output(outputs), want, what=f"tiled C of {m}x{k} @ {k}x{n}")


def nan_in_a_5_7(rng):
    a, b = operands(32, 16, 48, seed=rng)  # default_rng(rng) is rng itself
    a[5, 7] = np.nan
    return {"a": a, "b": b}


def nan_in_row_5_only(inputs, outputs):
    a, b = inputs["a"], inputs["b"]
    c = output(outputs)
    assert np.isnan(c[5]).all(), f"row 5 of C: {np.flatnonzero(~np.isnan(c[5])).size} values are not NaN"
    rest = np.delete(np.arange(32), 5)
    assert not np.isnan(c[rest]).any(), "a NaN outside row 5"
    assert_within_bound(c[rest], a[rest].astype(np.float64) @ b, float32_bound(a[rest], b), "tiled, rows without NaN")


TILED_SHAPES = {"1x1 @ 1x1": (1, 1, 1), "17x33 @ 33x5": (17, 33, 5), "K = 1: 20x1 @ 1x18": (20, 1, 18),
                "whole 16x16 tiles: 32x16 @ 16x48": (32, 16, 48)}


# -- blocked_kernel ("promote") ---------------------------------------------------------------------


BLOCKED_CASES = {  # name: (m, k, n), block of a, block of b
    "1x1 @ 1x1, per-tensor": ((1, 1, 1), (1, 1), (1, 1)),
    "K = 1: 20x1 @ 1x18, per-tensor": ((20, 1, 18), (20, 1), (1, 18)),
    "17x33 @ 33x5, per-row a, per-column b": ((17, 33, 5), (1, 33), (33, 1)),
    "19x192 @ 192x21, 2x64 a, 128x4 b": ((19, 192, 21), (2, 64), (128, 4)),  # two K-blocks per block of b
}


def rows_of_other_sizes(m, k, n, block_a, block_b):
    def make(rng):
        # rows of other sizes
        a = (rng.standard_normal((m, k)) * 10.0 ** rng.integers(-2, 3, (m, 1))).astype(np.float32)
        b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
        return quantized(a, b, block_a, block_b)
    return make


# -- load_fragment_a and load_fragment_b ---------------------------------------------------------------


def random_words(shape, starts, first="row0"):
    """A tile of random uint32 words, every bit in use (bit 31 too): a word out of place, or one
    that went through a signed or float type, shows. Warp w's piece starts at starts[w]."""
    def make(rng):
        tile = rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)
        return {"tile": tile, first: np.array([s[0] for s in starts]), "word0": np.array([s[1] for s in starts])}
    return make


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


def words_as_mapped(words_of_lane, first, what):
    def judge(inputs, outputs):
        starts = [(int(r), int(c)) for r, c in zip(inputs[first], inputs["word0"])]
        grading.assert_array_matches(output(outputs), expected_words(inputs["tile"], starts, words_of_lane), what=what)
    return judge


A_STARTS = {"warp 0 at row 32, word 4; warp 1 at row 0, word 12": [(32, 4), (0, 12)],
            "warp 0 at the bottom-right piece (48, 12); warp 1 at row 17, word 1": [(48, 12), (17, 1)]}
B_STARTS = {"warp 0 at column 8, word 4; warp 1 at column 24, word 12": [(8, 4), (24, 12)],
            "warp 0 at column 0, word 11; warp 1 at column 17, word 3": [(0, 11), (17, 3)]}


CASES = [
    *(Case("tiled_kernel", f"integer operands, so every sum is exact: C must equal A @ B bit for bit, over partial "
           f"and whole tiles: {name}", small_integers(m, k, n), "harness_ch05:tiled_matmul", exact_product,
           seed=500 + m) for name, (m, k, n) in TILED_SHAPES.items()),
    Case("tiled_kernel", "32x16 @ 16x48 random values with a NaN in A[5, 7]: row 5 of C is NaN, the rest within the "
         "float32 bound", nan_in_a_5_7, "harness_ch05:tiled_matmul", nan_in_row_5_only, seed=502),
    *(Case("blocked_kernel", f"FP8 operands, mode \"promote\" on the CUDA cores: tiny and K = 1 products, other scale "
           f"blocks: {name}", rows_of_other_sizes(m, k, n, block_a, block_b), "harness_ch05:scaled_matmul_promote",
           within_the_float32_bound(name, shape=(m, n)), seed=503 + k)
      for name, ((m, k, n), block_a, block_b) in BLOCKED_CASES.items()),
    *(Case("load_fragment_a", f"a 64 x 20 tile of random words (a staged A tile: 16 words a row plus 4 of padding); "
           f"each warp its own piece: {name}", random_words((64, 20), starts),
           "harness_ch05:two_warps_load_fragment_a",
           words_as_mapped(a_words, "row0", "A fragment words by [thread, register]"), seed=504)
      for name, starts in A_STARTS.items()),
    *(Case("load_fragment_b", f"a 32 x 20 transposed tile of random words; each warp its own 8-column piece: {name}",
           random_words((32, 20), starts, first="col0"), "harness_ch05:two_warps_load_fragment_b",
           words_as_mapped(b_words, "col0", "B fragment words by [thread, register]"), seed=505)
      for name, starts in B_STARTS.items()),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """Chapter 05's hidden graded case `case`: draw its inputs, run its harness, judge the outputs."""
    cases.check(case)
