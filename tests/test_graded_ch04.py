"""Chapter 04's graded cases: row_group_kernel and tile_kernel, codes and scales bit for bit
against the numpy references.

Each case draws its inputs, names the harness (tests/harness_ch04.py) that runs the learner's
code on them, and judges the outputs (see tutorial.course.cases). The inputs are test_per_tensor's
`hostile` matrices: normal values with outliers, NaN, -inf, signed zeros and an underflow.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from tutorial import fp8
from tutorial.course import cases, grading
from tutorial.course.cases import Case, output
from tutorial.quant import interleaved
from tutorial.reference import (blockwise_reference, interleaved_reference, per_block_reference,
                                per_token_group_reference)

from test_per_tensor import assert_same, hostile

pytestmark = pytest.mark.chapter("04")

FORMATS = list(fp8.FORMATS)  # a format's number, as the harness reads it: its index here
DTYPES = ["float32", "bfloat16"]  # an input dtype's number, likewise


def with_zero_block(x, block):
    x[:block[0], :block[1]] = 0.0  # the first tile all zeros: exact zeros, the EPS scale
    return x


def blockwise_inputs(x, block, fmt="e4m3", pow2_scales=False, scales_m_major=False, dtype="float32"):
    """quantize_blockwise's arguments as the harness takes them: x as float32 values (exact in
    `dtype`, which the harness casts them to), the format and dtype as numbers."""
    return {"x": np.asarray(x, np.float32), "block": np.array(block), "fmt": FORMATS.index(fmt),
            "pow2_scales": pow2_scales, "scales_m_major": scales_m_major, "dtype": DTYPES.index(dtype)}


def as_qtensor(outputs):
    """The harness's QTensor outputs as what assert_same reads: codes, scales, block (a tuple)
    and fmt (a Format)."""
    fmt = int(output(outputs, "fmt"))
    return SimpleNamespace(codes=output(outputs, "codes"), scales=output(outputs, "scales"),
                           block=tuple(int(b) for b in output(outputs, "block")),
                           fmt=fp8.FORMATS[FORMATS[fmt]] if 0 <= fmt < len(FORMATS) else SimpleNamespace(name="none"))


def same_as(reference, codes_named=True):
    """A judge: the quantized tensor is `reference(inputs)`, codes named with their input x
    (if `codes_named`)."""
    def judge(inputs, outputs):
        x = inputs["x"]
        assert_same(as_qtensor(outputs), reference(inputs), x if codes_named else None)
    return judge


def blockwise_ref(inputs):
    """blockwise_reference of the inputs' x, block, format and scale rule."""
    return blockwise_reference(inputs["x"], tuple(int(b) for b in inputs["block"]), FORMATS[int(inputs["fmt"])],
                               pow2_scales=bool(inputs["pow2_scales"]))


def m_major_judge(reference, rows, groups):
    """A judge: the quantized tensor is `reference(inputs)`, its scales of shape (rows, groups)
    stored M-major."""
    def judge(inputs, outputs):
        same_as(reference)(inputs, outputs)
        assert output(outputs, "scales").shape == (rows, groups) and output(outputs, "scales_m_major"), \
            "scales not stored M-major"
    return judge


def pow2_judge(inputs, outputs):
    """The blockwise reference with power-of-two scales, and every scale a power of two."""
    same_as(blockwise_ref)(inputs, outputs)
    mantissa, _ = np.frexp(output(outputs, "scales"))
    assert (mantissa == 0.5).all(), "every scale is a power of two"


# -- row_group_kernel -------------------------------------------------------------------------------


def outliers_1x128(fmt):
    def make(rng):
        return blockwise_inputs(with_zero_block(hostile((6, 512), seed=rng), (1, 128)), (1, 128), fmt)
    return make


def group_width(bn):
    def make(rng):
        return blockwise_inputs(with_zero_block(hostile((3, 512), seed=rng), (1, bn)), (1, bn))
    return make


def interleaved_judge(inputs, outputs):
    """The buffer is the reference's interleaved, and splits back into the reference."""
    x = inputs["x"]
    buf = output(outputs)
    ref = per_token_group_reference(x)
    grading.assert_array_matches(buf, interleaved_reference(ref), what="interleaved buffer")
    assert_same(interleaved.split_interleaved(buf, 128, cols=x.shape[1]), ref)


# (hostile(..., seed=rng) draws from rng itself: np.random.default_rng(a Generator) is that Generator)
ROW_GROUP = [
    *(Case("row_group_kernel", f"1x128 groups with outliers, NaN, -inf, signed zeros, and an all-zero first "
           f"group, {fmt}", outliers_1x128(fmt), "harness_ch04:quantize_blockwise",
           same_as(lambda inputs: per_token_group_reference(inputs["x"], 128, FORMATS[int(inputs["fmt"])])),
           seed=1) for fmt in ("e4m3", "e5m2")),
    *(Case("row_group_kernel", f"groups of {bn} along a row (a width other than 128), with an all-zero first group",
           group_width(bn), "harness_ch04:quantize_blockwise", same_as(blockwise_ref), seed=bn)
      for bn in (16, 32, 64, 256)),
    Case("row_group_kernel", "3x96 in groups of 32: the last warp's 128 values hold only 32 of the matrix (a tail)",
         lambda rng: blockwise_inputs(hostile((3, 96), seed=rng), (1, 32)), "harness_ch04:quantize_blockwise",
         same_as(blockwise_ref), seed=5),
    Case("row_group_kernel", "scales_m_major=True: the same scales, stored column by column (as (N / 128, M))",
         lambda rng: blockwise_inputs(hostile((5, 256), seed=rng), (1, 128), scales_m_major=True),
         "harness_ch04:quantize_blockwise", m_major_judge(lambda inputs: per_token_group_reference(inputs["x"]), 5, 2),
         seed=6),
    Case("row_group_kernel", "the interleaved layout: each group's 128 codes, then the 4 bytes of its scale",
         lambda rng: {"x": hostile((4, 384), seed=rng), "group": 128}, "harness_ch04:quantize_groups_interleaved",
         interleaved_judge, seed=7),
    Case("row_group_kernel", "pow2_scales=True, 1x128 groups: every scale the smallest power of two that does not "
         "saturate (UE8M0)", lambda rng: blockwise_inputs(hostile((4, 256), seed=rng), (1, 128), pow2_scales=True),
         "harness_ch04:quantize_blockwise", pow2_judge, seed=8),
]


# -- tile_kernel ------------------------------------------------------------------------------------


def outliers_128x128(fmt):
    def make(rng):
        x = with_zero_block(hostile((130, 256), seed=rng), (128, 128))  # a second row of tiles 2 rows high
        return blockwise_inputs(x, (128, 128), fmt)
    return make


TILE = [
    Case("tile_kernel", "pow2_scales=True, 128x128 tiles: every scale the smallest power of two that does not "
         "saturate (UE8M0)", lambda rng: blockwise_inputs(hostile((130, 256), seed=rng), (128, 128), pow2_scales=True),
         "harness_ch04:quantize_blockwise", pow2_judge, seed=8),
    *(Case("tile_kernel", f"128x128 tiles: an all-zero first tile, and a second row of tiles only 2 rows high, {fmt}",
           outliers_128x128(fmt), "harness_ch04:quantize_blockwise",
           same_as(lambda inputs: per_block_reference(inputs["x"], 128, FORMATS[int(inputs["fmt"])])), seed=9)
      for fmt in ("e4m3", "e5m2")),
    Case("tile_kernel", "300x1000 in 128x128 tiles: partial tiles along both edges and in the corner",
         lambda rng: blockwise_inputs(hostile((300, 1000), seed=rng), (128, 128)), "harness_ch04:quantize_blockwise",
         same_as(lambda inputs: per_block_reference(inputs["x"])), seed=10),
]

CASES = ROW_GROUP + TILE


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """A graded case of chapter 04: the learner's kernel on the case's input, judged bit for bit."""
    cases.check(case)
