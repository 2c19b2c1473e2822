"""Chapter 05's graded cases: tiled_kernel, blocked_kernel, load_fragment_a and load_fragment_b.

Each case draws its inputs, names the harness (tests/harness_ch05.py) that runs the learner's
code on them, and judges the outputs (see tutorial.course.cases): the GEMMs against float64
products, within float32's rounding bound (tests/test_gemm.py), the fragment loads word for word
against the fragment maps.
"""

import numpy as np
import pytest

from tutorial.course import cases, grading
from tutorial.course.cases import Case, output
from tutorial.gemm import mma
from tutorial.qtensor import QTensor
from tutorial.reference import blockwise_reference, scaled_matmul_reference

from test_gemm import assert_within_bound, dequantized, float32_bound, operands

pytestmark = pytest.mark.chapter("05")


def quantized(a, b, block_a, block_b):
    """The inputs of a scaled_matmul harness: a and b quantized to e4m3 in blocks, as arrays."""
    qa, qb = blockwise_reference(a, block_a), blockwise_reference(b, block_b)
    return {"a_codes": qa.codes, "a_scales": qa.scales, "a_block": np.array(qa.block),
            "b_codes": qb.codes, "b_scales": qb.scales, "b_block": np.array(qb.block)}


def qtensors(inputs):
    """The judge's view of a scaled_matmul harness's inputs: the two QTensors."""
    return tuple(QTensor(inputs[f"{x}_codes"], inputs[f"{x}_scales"], "e4m3",
                         tuple(int(b) for b in inputs[f"{x}_block"])) for x in "ab")


def within_the_float32_bound(what, name="result", shape=None):
    """A judge: the harness's output `name` is within float32's rounding bound of the float64
    product of the dequantized operands."""
    def judge(inputs, outputs):
        qa, qb = qtensors(inputs)
        c = output(outputs, name)
        if shape is not None:
            assert c.shape == shape, f"shape {c.shape}, expected {shape}"
        assert_within_bound(c, scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb)), what)
    return judge


# -- tiled_kernel -----------------------------------------------------------------------------------


def tiled_within_the_bound(inputs, outputs):
    a, b = inputs["a"], inputs["b"]
    c = output(outputs)
    assert c.shape == (37, 45), f"shape {c.shape}, expected (37, 45)"
    assert_within_bound(c, a.astype(np.float64) @ b, float32_bound(a, b), "matmul_float32 tiled")


def float32_operands(m, k, n):
    def make(rng):
        a, b = operands(m, k, n, seed=rng)  # default_rng(rng) is rng itself
        return {"a": a, "b": b}
    return make


TILED = [
    Case("tiled_kernel", "37x70 @ 70x45 with the tiled kernel, no dimension a multiple of a tile: partial tiles on "
         "every edge", float32_operands(37, 70, 45), "harness_ch05:tiled_matmul", tiled_within_the_bound, seed=1),
]


# -- blocked_kernel -----------------------------------------------------------------------------------


GRANULARITIES = {
    "per-tensor": ((33, 300), (300, 47)),
    "per-row a, per-column b": ((1, 300), (300, 1)),
    "1x128 a, 128x128 b": ((1, 128), (128, 128)),
    "1x64 a, 64x32 b": ((1, 64), (64, 32)),
}


def quantized_operands(m, k, n, block_a, block_b):
    def make(rng):
        a, b = operands(m, k, n, seed=rng)
        return quantized(a, b, block_a, block_b)
    return make


def both_modes_within_the_bound(inputs, outputs):
    for mode in ("promote", "dequant"):
        within_the_float32_bound(mode, mode)(inputs, outputs)


BLOCKED = [
    *(Case("blocked_kernel", f"33x300 @ 300x47 FP8 operands with an outlier channel, scales {name}",
           quantized_operands(33, 300, 47, block_a, block_b), "harness_ch05:scaled_matmul",
           within_the_float32_bound(name), seed=2)
      for name, (block_a, block_b) in GRANULARITIES.items()),
    Case("blocked_kernel", "129x300 @ 300x257 with 1x128 / 128x128 scales, modes promote and dequant: a K-block cut "
         "short at the end, odd M and N", quantized_operands(129, 300, 257, (1, 128), (128, 128)),
         "harness_ch05:scaled_matmul_promote_and_dequant", both_modes_within_the_bound, seed=3),
]


# -- load_fragment_a and load_fragment_b ----------------------------------------------------------------


PIECES = {"the tile's first piece": (0, 0), "a piece 16 rows and 8 words in": (16, 8)}


def numbered_tile(row0, word0):
    """A 48 x 24 tile of words, each naming its own place (row * 1000 + word), and the piece at (row0, word0)."""
    def make(rng):
        tile = (np.arange(48)[:, None] * 1000 + np.arange(24)[None, :]).astype(np.uint32)
        return {"tile": tile, "row0": row0, "word0": word0}
    return make


def a_words_as_mapped(inputs, outputs):
    tile, row0, word0 = inputs["tile"], int(inputs["row0"]), int(inputs["word0"])
    want = np.array([[tile[row0 + r, word0 + k // 4] for r, k in mma.fragment_a(lane)] for lane in range(32)],
                    np.uint32)
    grading.assert_array_matches(output(outputs), want, what="A fragment words (row * 1000 + word) by [lane, register]")


def b_words_as_mapped(inputs, outputs):
    tile, row0, word0 = inputs["tile"], int(inputs["row0"]), int(inputs["word0"])
    want = np.array([[tile[row0 + n, word0 + k // 4] for k, n in mma.fragment_b(lane)] for lane in range(32)],
                    np.uint32)
    grading.assert_array_matches(output(outputs), want,
                                 what="B fragment words (column * 1000 + word) by [lane, register]")


FRAGMENTS = [
    *(Case("load_fragment_a", f"each lane's a0..a3 are the words of rows g, g + 8 and k 4t, 16 + 4t of the piece "
           f"(g = lane // 4): {name}", numbered_tile(row0, word0), "harness_ch05:load_fragment_a", a_words_as_mapped)
      for name, (row0, word0) in PIECES.items()),
    *(Case("load_fragment_b", f"each lane's b0, b1 are the words of column g and k 4t, 16 + 4t of the piece, B staged "
           f"transposed: {name}", numbered_tile(row0, word0), "harness_ch05:load_fragment_b", b_words_as_mapped)
      for name, (row0, word0) in PIECES.items()),
]

CASES = TILED + BLOCKED + FRAGMENTS


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """Chapter 05's graded case `case`: draw its inputs, run its harness, judge the outputs."""
    cases.check(case)
