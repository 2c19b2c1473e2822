"""The accuracy helpers of chapters 02-04: error metrics, synthetic inputs, the INT8 contrast."""

import math

import numpy as np
import pytest

from tutorial import fp8
from tutorial.accuracy import (
    accuracy_table,
    activation_like,
    error_metrics,
    format_table,
    fp8_roundtrip,
    heavy_rows,
    int8_absmax,
    outlier_columns,
    weight_like,
)
from tutorial.qtensor import EPS

pytestmark = pytest.mark.chapter("02")


# -- error_metrics ------------------------------------------------------------------------------

def test_an_exact_reconstruction_has_zero_errors_and_infinite_sqnr():
    x = np.array([1.0, -2.0, 3.5], np.float32)
    m = error_metrics(x, x.copy())
    assert (m["mae"], m["max_abs"], m["rel_fro"]) == (0.0, 0.0, 0.0)
    assert m["sqnr_db"] == math.inf


def test_a_constant_offset_gives_the_metrics_worked_out_by_hand():
    x = np.array([3.0, -4.0], np.float32)          # sum x^2 = 25, ||x|| = 5
    m = error_metrics(x, x + np.float32(0.5))      # every error 0.5: sum e^2 = 0.5
    assert m["mae"] == 0.5 and m["max_abs"] == 0.5
    assert m["rel_fro"] == pytest.approx(math.sqrt(0.5) / 5)
    assert m["sqnr_db"] == pytest.approx(10 * math.log10(25 / 0.5))   # 16.99 dB


def test_max_abs_is_the_largest_error_and_mae_the_mean_of_their_magnitudes():
    x = np.zeros(4)
    m = error_metrics(x + 1.0, np.array([1.0, 0.0, 3.0, 1.5]))  # errors 0, 1, -2, -0.5
    assert m["max_abs"] == 2.0
    assert m["mae"] == pytest.approx(3.5 / 4)


def test_halving_the_error_adds_six_db():
    x = np.random.default_rng(0).standard_normal(1000)
    e = np.random.default_rng(1).standard_normal(1000) * 1e-2
    gain = error_metrics(x, x + e / 2)["sqnr_db"] - error_metrics(x, x + e)["sqnr_db"]
    assert gain == pytest.approx(20 * math.log10(2))


def test_non_finite_elements_of_x_are_left_out():
    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    xhat = np.array([1.5, 7.0, 448.0, -448.0, 2.0])
    assert error_metrics(x, xhat) == error_metrics(x[[0, 4]], xhat[[0, 4]])


def test_metrics_are_computed_in_float64():
    x = np.full(4, 1e30, np.float32)     # x^2 = 1e60 overflows float32, not float64
    m = error_metrics(x, 2 * x)          # every error is -x
    assert m["sqnr_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["rel_fro"] == pytest.approx(1.0)


def test_error_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        error_metrics(np.zeros(3), np.zeros(4))


# -- synthetic inputs ---------------------------------------------------------------------------

def test_weight_like_has_the_shape_dtype_and_spread_of_a_weight():
    w = weight_like((512, 256), seed=3)
    assert w.shape == (512, 256) and w.dtype == np.float32
    normal_rows = np.setdiff1d(np.arange(512), heavy_rows((512, 256), seed=3))
    assert np.std(w[normal_rows]) == pytest.approx(0.02, rel=0.02)


def test_weight_like_is_deterministic_in_its_seed():
    np.testing.assert_array_equal(weight_like((64, 32), seed=5), weight_like((64, 32), seed=5))
    assert not np.array_equal(weight_like((64, 32), seed=5), weight_like((64, 32), seed=6))


def test_weight_like_heavy_rows_reach_far_beyond_the_gaussian_rows():
    shape = (1000, 512)
    w = weight_like(shape, seed=7)
    heavy = heavy_rows(shape, seed=7)
    assert heavy.size == 10                                   # 1% of the rows
    others = np.setdiff1d(np.arange(shape[0]), heavy)
    assert np.abs(w[heavy]).max() > 3 * np.abs(w[others]).max()


def test_activation_like_outlier_columns_are_tens_of_times_larger():
    shape = (256, 128)
    a = activation_like(shape, seed=11)
    assert a.shape == shape and a.dtype == np.float32
    columns = outlier_columns(shape, seed=11)
    assert columns.size == 4
    rms = np.sqrt(np.mean(a.astype(np.float64) ** 2, axis=0))
    ordinary = np.delete(rms, columns)
    assert ordinary == pytest.approx(1.0, rel=0.25)
    ratio = rms[columns] / np.median(ordinary)               # x40..x60 by default
    assert np.all((ratio > 30) & (ratio < 75)), ratio


def test_activation_like_takes_the_count_and_size_of_outliers():
    shape = (200, 64)
    a = activation_like(shape, seed=2, outlier_channels=2, outlier_scale=(1000.0, 1000.0))
    columns = outlier_columns(shape, seed=2, outlier_channels=2)
    plain = activation_like(shape, seed=2, outlier_channels=2, outlier_scale=(1.0, 1.0))
    np.testing.assert_allclose(a[:, columns], 1000 * plain[:, columns], rtol=1e-6)
    np.testing.assert_array_equal(np.delete(a, columns, axis=1), np.delete(plain, columns, axis=1))


# -- int8_absmax --------------------------------------------------------------------------------

def test_int8_rounds_half_to_even_on_the_integer_grid():
    # amax 127 gives scale 1, so x / scale are the values themselves
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 0.49, 3.51])
    np.testing.assert_array_equal(int8_absmax(x), [127, 0, 2, 2, -0, -2, 0, 4])


def test_int8_values_below_half_a_step_vanish():
    x = np.array([1000.0, 3.9, -3.9, 4.0])             # step 1000/127 = 7.87
    got = int8_absmax(x)
    assert got[1] == 0 and got[2] == 0 and got[3] == np.float32(1000 / 127)


def test_int8_saturates_infinity_and_keeps_nan():
    x = np.array([127.0, -1.0, np.inf, -np.inf, np.nan])   # amax over finite values: 127, scale 1
    got = int8_absmax(x)
    np.testing.assert_array_equal(got[:4], [127.0, -1.0, 127.0, -127.0])
    assert np.isnan(got[4])


def test_int8_of_all_zeros_is_exact_zeros():
    got = int8_absmax(np.zeros((3, 4)), axis=0)   # the scale floor EPS keeps 0 / 0 away
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, 0.0)


def test_int8_scale_never_falls_below_eps_over_127():
    tiny = np.array([EPS / 4, 0.0])          # amax below EPS: the scale is EPS / 127, not amax / 127
    got = int8_absmax(tiny)                  # so EPS / 4 is 31.75 steps, rounded to 32 (not 127)
    np.testing.assert_array_equal(got, np.float32([32 * EPS / 127, 0.0]))


def test_int8_axis_0_gives_each_row_its_own_scale_and_axis_1_each_column():
    x = np.array([[127.0, 64.0],
                  [1.0, 0.75]])
    # per tensor: scale 1, 0.75 rounds to 1
    np.testing.assert_array_equal(int8_absmax(x), [[127, 64], [1, 1]])
    # per row: row 1 has scale 1/127, so 0.75 -> round(95.25) = 95 steps
    np.testing.assert_allclose(int8_absmax(x, axis=0), [[127, 64], [1, 95 / 127]], rtol=1e-7)
    # per column: column 1 has scale 64/127, so 0.75 -> round(1.488) = 1 step
    np.testing.assert_allclose(int8_absmax(x, axis=1), [[127, 64], [1, 64 / 127]], rtol=1e-7)


def test_int8_rejects_an_axis_it_does_not_know():
    with pytest.raises(ValueError, match="axis"):
        int8_absmax(np.zeros((2, 2)), axis=2)


# -- fp8_roundtrip and the table ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", [fp8.E4M3, fp8.E5M2], ids=lambda f: f.name)
def test_fp8_roundtrip_keeps_values_on_the_grid_exactly(fmt):
    # every row and every column holds +-max, so every scale is exactly 1
    x = np.array([[fmt.max, 1.0, -fmt.max], [2.0, -fmt.max, 0.25]], np.float32)
    for granularity in ("tensor", "row", "column"):
        np.testing.assert_array_equal(fp8_roundtrip(x, granularity, fmt), x)


def test_fp8_roundtrip_granularity_sets_whose_amax_is_used():
    x = np.array([[448.0, 0.0], [0.0, 1.0]], np.float32)
    x[1, 1] = 1.0625                                # per tensor: 1.0625 is a tie -> 1.0
    assert fp8_roundtrip(x, "tensor")[1, 1] == 1.0
    # with its own scale it maps onto 448 and comes back to within the scale's float32 rounding
    assert fp8_roundtrip(x, "row")[1, 1] == pytest.approx(1.0625, rel=1e-6)
    assert fp8_roundtrip(x, "column")[1, 1] == pytest.approx(1.0625, rel=1e-6)
    np.testing.assert_allclose(fp8_roundtrip(x, (1, 1)), x, rtol=1e-6)


def test_fp8_roundtrip_rejects_an_unknown_granularity():
    with pytest.raises(ValueError, match="granularity"):
        fp8_roundtrip(np.ones((2, 2)), "diagonal")


def test_accuracy_table_has_one_row_per_method_in_order():
    x = np.array([1.0, 2.0])
    rows = accuracy_table(x, {"exact": x, "off": x + 1})
    assert [r["method"] for r in rows] == ["exact", "off"]
    assert rows[0]["sqnr_db"] == math.inf and rows[1]["max_abs"] == 1.0


def test_format_table_puts_text_columns_first_and_one_line_per_row():
    x = np.array([1.0, 2.0])
    rows = [{"input": "tiny", **r} for r in accuracy_table(x, {"off": x + 1})]
    lines = format_table(rows).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:2] == ["input", "method"]
    assert lines[2].split()[:2] == ["tiny", "off"]
