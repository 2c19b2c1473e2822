"""Chapter 04's hidden graded cases: the (1, bn) group kernel and the tile kernel on inputs the
visible cases (tests/test_graded_ch04.py) do not use.

A single row, E5M2, bfloat16 input, groups of 16 and 512, more warp tiles than warps, the
interleaved and M-major layouts at other group widths; 128 x 128 tiles of a 129 x 132 matrix
(a second tile row 1 high, a second tile column 4 wide) with power-of-two scales, and other
tile shapes: an answer tuned to the visible cases does not pass them.

Every input here takes the exercise's kernel. On the simulator quantize_blockwise gives 128 x
128 tiles to the general kernel (64 threads cannot hold 16384 values in registers), so that case
launches tile_kernel itself (harness_ch04:tile_kernel), as the library does on a GPU. (And 129 x
129 would take the general kernel everywhere: the tile kernel needs rows a multiple of 4 long.)
The instructor's grading runs them; a release leaves this file out.
"""

import ml_dtypes
import numpy as np
import pytest

from tutorial.course import cases, grading
from tutorial.course.cases import Case, output
from tutorial.reference import blockwise_reference, interleaved_reference, per_block_reference

from test_graded_ch04 import FORMATS, blockwise_inputs, blockwise_ref, m_major_judge, same_as
from test_per_tensor import hostile

pytestmark = [pytest.mark.chapter("04"), pytest.mark.hidden]
DTYPE = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}  # the harness's dtype names as numpy types

# (hostile(..., seed=rng) draws from rng itself: np.random.default_rng(a Generator) is that Generator)


# -- row_group_kernel ---------------------------------------------------------------------------------


def single_row(shape, fmt):
    def make(rng):
        x = hostile(shape, seed=rng)
        x[0, -1] = -2000.0
        return blockwise_inputs(x, (1, 128), fmt)
    return make


def bfloat16_with_an_all_nan_group(rng):
    x = hostile((5, 384), seed=rng)
    x[2, 128:256] = np.nan
    return blockwise_inputs(x.astype(ml_dtypes.bfloat16).astype(np.float32), (1, 128), dtype="bfloat16")


def wide_or_narrow_groups(shape, bn, pow2):
    return lambda rng: blockwise_inputs(hostile(shape, seed=rng), (1, bn), pow2_scales=pow2)


def interleaved_32_judge(inputs, outputs):
    grading.assert_array_matches(output(outputs), interleaved_reference(blockwise_reference(inputs["x"], (1, 32))),
                                 what="interleaved buffer")


ROW_GROUP = [
    Case("row_group_kernel", "a single row: one group of 128 that is the whole matrix, e5m2, the largest magnitude "
         "in its last value", single_row((1, 128), "e5m2"), "harness_ch04:quantize_blockwise", same_as(blockwise_ref),
         seed=400 + 128),
    Case("row_group_kernel", "a single row of 5 groups of 128, e4m3, the largest magnitude in the last group",
         single_row((1, 640), "e4m3"), "harness_ch04:quantize_blockwise", same_as(blockwise_ref), seed=400 + 640),
    Case("row_group_kernel", "a (5, 384) bfloat16 matrix (8-byte loads) whose group (2, 1) is all NaN: the EPS scale "
         "and code 0x7f there", bfloat16_with_an_all_nan_group, "harness_ch04:quantize_blockwise",
         same_as(blockwise_ref), seed=401),
    Case("row_group_kernel", "groups of 512 (4 loads per lane), wider than a warp's load, 3 x 1024",
         wide_or_narrow_groups((3, 1024), 512, False), "harness_ch04:quantize_blockwise", same_as(blockwise_ref),
         seed=402 + 512),
    Case("row_group_kernel", "groups of 16 over more warp tiles than the grid has warps: 33 rows, power-of-two scales",
         wide_or_narrow_groups((33, 64), 16, True), "harness_ch04:quantize_blockwise", same_as(blockwise_ref),
         seed=402 + 16),
    Case("row_group_kernel", "the interleaved buffer with groups of 32 (3 x 192)",
         lambda rng: {"x": hostile((3, 192), seed=rng), "group": 32}, "harness_ch04:quantize_groups_interleaved",
         interleaved_32_judge, seed=404),
    Case("row_group_kernel", "M-major scales with groups of 64 (7 x 192)",
         lambda rng: blockwise_inputs(hostile((7, 192), seed=rng), (1, 64), scales_m_major=True),
         "harness_ch04:quantize_blockwise", m_major_judge(blockwise_ref, 7, 3), seed=405),
]


# -- tile_kernel --------------------------------------------------------------------------------------


def tiles_129x132(rng):
    x = hostile((129, 132), seed=rng)
    x[128, 131] = -3e4  # the 1 x 4 corner tile's maximum
    return {"x": x, "block": np.array((128, 128)), "fmt": FORMATS.index("e4m3"), "pow2": True, "threads": 128}


def other_tiles(shape, block, fmt, dtype):
    return lambda rng: blockwise_inputs(hostile(shape, seed=rng).astype(DTYPE[dtype]).astype(np.float32), block,
                                        fmt, dtype=dtype)


TILE = [
    Case("tile_kernel", "129x132 in 128x128 tiles, power-of-two scales: a second tile row 1 high, a second tile "
         "column 4 wide", tiles_129x132, "harness_ch04:tile_kernel",
         same_as(lambda inputs: per_block_reference(inputs["x"], 128, "e4m3", pow2_scales=True)), seed=406),
    *(Case("tile_kernel", f"{shows} (tiles other than 128x128, edge tiles where the shape is not a multiple)",
           other_tiles(shape, block, fmt, dtype), "harness_ch04:quantize_blockwise", same_as(blockwise_ref),
           seed=407 + shape[0])
      for shows, shape, block, fmt, dtype in [
          ("32x128 tiles of 70x260, e5m2", (70, 260), (32, 128), "e5m2", "float32"),
          ("2x4 tiles of 6x12: one 4-value group per tile row", (6, 12), (2, 4), "e4m3", "float32"),
          ("16x64 tiles of bfloat16 40x136", (40, 136), (16, 64), "e4m3", "bfloat16")]),
]

CASES = ROW_GROUP + TILE


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """A hidden graded case of chapter 04: the learner's kernel on the case's input, judged bit for bit."""
    cases.check(case)
