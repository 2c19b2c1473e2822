"""Chapter 03's hidden graded tests: the per-row kernel on inputs the visible tests
(tests/test_per_channel.py) do not use.

A single row, a row of 4 values, rows of bfloat16, rows of only NaN, only +-inf or only -0.0,
and rows as long as a thread's registers hold (more rows than blocks, too): an answer tuned to
the visible tests does not pass them. Every input here takes the vectorized per-row kernel
(float32 or bfloat16 rows a multiple of 4 long). The instructor's grading runs them; a
release leaves this file out.
"""

import ml_dtypes
import numpy as np
import pytest

from tutorial.reference import per_channel_reference

from tutorial.quant import per_channel  # the library, or chapter 03's exercise file under --impl exercise
from test_per_tensor import assert_same, hostile

pytestmark = [pytest.mark.chapter("03"), pytest.mark.hidden]
row_exercise = pytest.mark.graded("per_row_kernel_vec4")


@row_exercise
@pytest.mark.parametrize("shape, fmt", [((1, 256), "e4m3"), ((1, 4), "e5m2")],
                         ids=["a single row of 256, e4m3", "a single row of 4 values, e5m2"])
def test_a_single_row(shape, fmt):
    """One row (one block, one scale), its largest magnitude negative and in its last element."""
    x = hostile(shape, seed=300 + shape[1])
    x[0, -1] = -1000.0
    assert_same(per_channel.quantize_per_channel(x, 0, fmt), per_channel_reference(x, 0, fmt), x)


@row_exercise
def test_rows_of_bfloat16():
    """A (6, 64) bfloat16 matrix with outliers, NaN, -inf and an all-zero row: 8-byte loads of 4 values."""
    x = hostile((6, 64), seed=301)
    x[4] = 0.0
    x = x.astype(ml_dtypes.bfloat16)
    wide = x.astype(np.float32)
    assert_same(per_channel.quantize_per_channel(x, 0), per_channel_reference(wide, 0), wide)


@row_exercise
def test_rows_of_only_nan_only_infinities_and_only_negative_zeros():
    """Rows of 8: all NaN, all +-inf (finite amax 0: the EPS scale; inf saturates), all -0.0, and an ordinary row."""
    x = np.zeros((4, 8), np.float32)
    x[0] = np.nan
    x[1] = [np.inf, -np.inf] * 4
    x[2] = -0.0
    x[3] = np.linspace(-3, 5, 8)
    x[3, 6] = np.nan
    assert_same(per_channel.quantize_per_channel(x, 0), per_channel_reference(x, 0), x)


@row_exercise
def test_rows_as_long_as_a_threads_registers_hold():
    """5 rows of 2048 (16 loads of 4 a thread on the simulator), more rows than blocks; maxima at the rows' ends."""
    x = hostile((5, 2048), seed=302)
    x[np.arange(5), -1] = np.float32([-7e3, 8e3, -5e3, 9e9, 6e3])
    assert_same(per_channel.quantize_per_channel(x, 0, "e5m2"), per_channel_reference(x, 0, "e5m2"), x)
