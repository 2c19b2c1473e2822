"""Chapter 03's hidden graded cases: the per-row kernel on inputs the visible cases
(tests/test_graded_ch03.py) do not use.

A single row, a row of 4 values, rows of bfloat16, rows of only NaN, only +-inf or only -0.0,
and rows as long as a thread's registers hold (more rows than blocks, too): an answer tuned to
the visible cases does not pass them. Every input here takes the vectorized per-row kernel
(float32 or bfloat16 rows a multiple of 4 long). The instructor's grading runs them; a
release leaves this file out.
"""

import ml_dtypes
import numpy as np
import pytest

from tutorial.course import cases
from tutorial.course.cases import Case

from test_graded_ch02 import bfloat16_bits, fmt_index
from test_graded_ch03 import KERNEL, matches_reference
from test_per_tensor import hostile

pytestmark = [pytest.mark.chapter("03"), pytest.mark.hidden]


def single_row(shape, fmt):
    def make(rng):
        x = hostile(shape, rng)
        x[0, -1] = -1000.0
        return {"x": x, "axis": 0, "fmt": fmt_index(fmt)}
    return make


def bfloat16_rows(rng):
    x = hostile((6, 64), rng)
    x[4] = 0.0
    return {"bits": bfloat16_bits(x.astype(ml_dtypes.bfloat16)), "axis": 0, "fmt": fmt_index("e4m3")}


def special_rows(rng):
    x = np.zeros((4, 8), np.float32)
    x[0] = np.nan
    x[1] = [np.inf, -np.inf] * 4
    x[2] = -0.0
    x[3] = np.linspace(-3, 5, 8)
    x[3, 6] = np.nan
    return {"x": x, "axis": 0, "fmt": fmt_index("e4m3")}


def long_rows(rng):
    x = hostile((5, 2048), rng)
    x[np.arange(5), -1] = np.float32([-7e3, 8e3, -5e3, 9e9, 6e3])
    return {"x": x, "axis": 0, "fmt": fmt_index("e5m2")}


CASES = [
    *(Case(KERNEL, f"{what}: one row (one block, one scale), its largest magnitude negative and in its last element",
           single_row(shape, fmt), "harness_ch03:quantize", matches_reference, seed=300 + shape[1])
      for shape, fmt, what in [((1, 256), "e4m3", "a single row of 256, e4m3"),
                               ((1, 4), "e5m2", "a single row of 4 values, e5m2")]),
    Case(KERNEL, "a (6, 64) bfloat16 matrix with outliers, NaN, -inf and an all-zero row: 8-byte loads of 4 values",
         bfloat16_rows, "harness_ch03:quantize_bfloat16", matches_reference, seed=301),
    Case(KERNEL, "rows of 8: all NaN, all +-inf (finite amax 0: the EPS scale; inf saturates), all -0.0, and an "
         "ordinary row", special_rows, "harness_ch03:quantize", matches_reference),
    Case(KERNEL, "5 rows of 2048 (16 loads of 4 a thread on the simulator), more rows than blocks; maxima at the "
         "rows' ends", long_rows, "harness_ch03:quantize", matches_reference, seed=302),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """What the case's input shows is its id (tutorial.course.cases)."""
    cases.check(case)
