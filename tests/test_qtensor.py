"""The QTensor contract, the scale rule, and the numpy reference quantizers."""

import numpy as np
import pytest

from tutorial import fp8
from tutorial.qtensor import EPS, QTensor, scale_from_amax
from tutorial.reference import (blockwise_reference, finite_amax, per_channel_reference,
                                per_tensor_reference)

pytestmark = pytest.mark.chapter("02")


def test_scale_rule_equals_float32_division_bit_for_bit():
    amax = (2.0 ** np.random.default_rng(0).uniform(-30, 30, 100_000)).astype(np.float32)
    for fmt in (fp8.E4M3, fp8.E5M2):
        np.testing.assert_array_equal(scale_from_amax(amax, fmt), amax / np.float32(fmt.max))


def test_scale_of_a_zero_block_is_eps_over_max():
    assert scale_from_amax(0.0, "e4m3") == np.float32(EPS / 448)


def test_qtensor_checks_that_scales_fit_the_blocks():
    with pytest.raises(ValueError, match=r"expected \(3, 1\)"):
        QTensor(np.zeros((5, 4), np.uint8), np.zeros((2, 1), np.float32), fp8.E4M3, (2, 4))
    with pytest.raises(TypeError, match=r"QTensor: block must be two positive integers \(bm, bn\), got \(5,\)"):
        QTensor(np.zeros((5, 4), np.uint8), np.zeros((1,), np.float32), fp8.E4M3, (5,))  # one size for 2-D codes


def test_dequantize_applies_each_blocks_scale_to_its_elements():
    codes = np.full((3, 5), 0x38, np.uint8)  # 1.0 everywhere
    scales = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    q = QTensor(codes, scales, fp8.E4M3, (2, 3))
    np.testing.assert_array_equal(q.dequantize(), [[1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [3, 3, 3, 4, 4]])


@pytest.mark.parametrize("fmt", [fp8.E4M3, fp8.E5M2], ids=lambda f: f.name)
def test_the_largest_magnitude_maps_to_the_formats_max(fmt):
    x = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    q = per_tensor_reference(x, fmt)
    assert q.scales.shape == (1, 1) and q.scales.dtype == np.float32
    i = np.unravel_index(np.argmax(np.abs(x)), x.shape)
    assert fp8.decode(q.codes, fmt)[i] == np.sign(x[i]) * fmt.max


def test_relative_error_in_the_normal_range_is_at_most_half_a_step():
    x = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    q = per_tensor_reference(x, "e4m3")
    normal = np.abs(x) / q.scales[0] >= fp8.E4M3.min_normal
    rel = np.abs(q.dequantize() - x)[normal] / np.abs(x)[normal]
    assert rel.max() <= 2.0 ** -4 * (1 + 1e-6)  # half of E4M3's 2^-3 relative step, plus scale rounding


def test_all_zero_blocks_dequantize_to_exact_zeros():
    x = np.zeros((4, 256), np.float32)
    x[0, :128] = np.linspace(-1, 1, 128)
    q = blockwise_reference(x, (1, 128))
    np.testing.assert_array_equal(q.dequantize()[1:], 0.0)
    np.testing.assert_array_equal(q.dequantize()[0, 128:], 0.0)


def test_nan_stays_nan_and_leaves_its_block_alone():
    x = np.random.default_rng(3).standard_normal((2, 128)).astype(np.float32)
    clean = blockwise_reference(x, (1, 128))
    x[0, 5] = np.nan
    q = blockwise_reference(x, (1, 128))
    back = q.dequantize()
    assert np.isnan(back[0, 5]) and np.isnan(back).sum() == 1
    np.testing.assert_array_equal(q.scales, clean.scales)


def test_inf_saturates_to_the_largest_finite_magnitude_of_its_block():
    x = np.array([[1.0, -3.0, np.inf, -np.inf]], np.float32)
    back = per_tensor_reference(x, "e4m3").dequantize()
    np.testing.assert_array_equal(back[0, 2:], [3.0, -3.0])


def test_static_scale_too_small_saturates_instead_of_overflowing():
    x = np.array([1.0, 10.0, 1000.0], np.float32)
    q = per_tensor_reference(x, "e4m3", scale=1.0)
    np.testing.assert_array_equal(q.dequantize(), [1.0, 10.0, 448.0])


def test_per_channel_has_one_scale_per_row_or_column():
    x = np.random.default_rng(4).standard_normal((6, 10)).astype(np.float32)
    rows, cols = per_channel_reference(x, 0), per_channel_reference(x, 1)
    assert rows.scales.shape == (6, 1) and rows.block == (1, 10)
    assert cols.scales.shape == (1, 10) and cols.block == (6, 1)
    np.testing.assert_array_equal(rows.scales[:, 0], scale_from_amax(np.abs(x).max(axis=1), "e4m3"))


def exact_nearest_code(value, fmt):
    """The FP8 code nearest to the exact rational `value`, ties to the even code: no floats."""
    from fractions import Fraction

    codes = np.arange(0x80, dtype=np.uint8)
    values = codes.view(fmt.ml_dtype).astype(np.float64)
    finite = [(Fraction(float(v)), int(c)) for v, c in zip(values, codes) if np.isfinite(v)]
    mag = min(abs(value), Fraction(fmt.max))
    best = min(finite, key=lambda vc: (abs(vc[0] - mag), vc[1] % 2))
    return best[1] | (0x80 if value < 0 else 0)


def test_codes_are_the_correctly_rounded_exact_quotient():
    from fractions import Fraction

    x = np.random.default_rng(5).standard_normal(400).astype(np.float32)
    q = per_tensor_reference(x, "e4m3")
    scale = Fraction(float(q.scales[0]))
    want = [exact_nearest_code(Fraction(float(v)) / scale, fp8.E4M3) for v in x]
    np.testing.assert_array_equal(q.codes, np.array(want, np.uint8))


def test_finite_amax_ignores_nan_and_inf():
    assert finite_amax(np.array([1.0, np.nan, -np.inf, -2.0])) == 2.0
    assert finite_amax(np.array([np.nan, np.inf])) == 0.0
