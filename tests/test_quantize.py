"""Chapters 02-03: the kernels match the numpy references bit for bit, codes and scales."""

import numpy as np
import pytest

from tutorial import grading
from tutorial.qtensor import scale_from_amax
from tutorial.reference import per_channel_reference, per_tensor_reference

quant = grading.load("tutorial.quantize")
pytestmark = pytest.mark.chapter("02")


def hostile(shape, seed, dtype=np.float32):
    """Normal values with a few outliers, a NaN, an inf, zeros and values that underflow."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 3)] *= 100  # outliers
    specials = [np.nan, -np.inf, 0.0, -0.0, 1e-30]
    flat[1:1 + len(specials)] = specials[:max(0, flat.size - 1)]
    return x.astype(dtype)


def assert_same(q, ref):
    assert q.block == ref.block and q.fmt is ref.fmt
    grading.assert_array_matches(q.scales, ref.scales, what="scales")
    grading.assert_array_matches(q.codes, ref.codes, what="codes")


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(1,), (3,), (1000,), (37, 300), (2, 3, 129)])
def test_dynamic_per_tensor_matches_the_reference(fmt, shape):
    x = hostile(shape, seed=sum(shape))
    assert_same(quant.quantize_per_tensor(x, fmt), per_tensor_reference(x, fmt))


def test_float16_input():
    x = hostile((40, 50), seed=3, dtype=np.float16)
    assert_same(quant.quantize_per_tensor(x), per_tensor_reference(x))
    assert_same(quant.quantize_per_channel(x, 0), per_channel_reference(x, 0))


def test_static_scale_is_used_as_given_and_saturates_beyond_it():
    x = hostile((500,), seed=4)
    q = quant.quantize_per_tensor(x, "e4m3", scale=0.01)
    assert_same(q, per_tensor_reference(x, "e4m3", scale=0.01))
    assert q.scales[0] == np.float32(0.01)
    assert (q.dequantize()[np.isfinite(x)] <= 448 * np.float32(0.01)).all()


def test_all_zero_tensor_dequantizes_to_exact_zeros():
    q = quant.quantize_per_tensor(np.zeros((8, 8), np.float32))
    assert (q.codes == 0).all() and (q.dequantize() == 0).all()
    assert q.scales[0, 0] == scale_from_amax(0.0, "e4m3")


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(37, 300), (5, 7), (40, 3)])
def test_per_channel_matches_the_reference(axis, fmt, shape):
    x = hostile(shape, seed=shape[0] + axis)
    x[min(2, shape[0] - 1)] = 0.0  # a whole zero row
    assert_same(quant.quantize_per_channel(x, axis, fmt), per_channel_reference(x, axis, fmt))


def test_nan_stays_nan_and_inf_saturates():
    x = np.array([[1.0, np.nan, np.inf, -2.0]], np.float32)
    back = quant.quantize_per_tensor(x).dequantize()
    assert np.isnan(back[0, 1]) and back[0, 2] == 2.0 and back[0, 3] == -2.0 and back[0, 0] == 1.0


def test_device_input_gives_a_device_qtensor():
    from numba import cuda

    x = hostile((64, 64), seed=9)
    q = quant.quantize_per_tensor(cuda.to_device(x))
    assert hasattr(q.codes, "copy_to_host") and hasattr(q.scales, "copy_to_host")
    assert_same(q.to_host(), per_tensor_reference(x))


@pytest.mark.parametrize("call, message", [
    (lambda: quant.quantize_per_tensor(np.arange(4)), "quantize_per_tensor: x must be a float"),
    (lambda: quant.quantize_per_tensor(np.zeros(0, np.float32)), "empty"),
    (lambda: quant.quantize_per_tensor(np.ones(4, np.float32), scale=0.0), "scale must be a positive"),
    (lambda: quant.quantize_per_tensor(np.ones(4, np.float32), scale=-1.0), "scale must be a positive"),
    (lambda: quant.quantize_per_tensor(np.ones(4, np.float32), fmt="int8"), "fmt must be"),
    (lambda: quant.quantize_per_channel(np.ones(4, np.float32), 0), "must be 2-D"),
    (lambda: quant.quantize_per_channel(np.ones((2, 2), np.float32), 2), "axis must be 0"),
])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_calibrate_takes_a_percentile_of_batch_maxima():
    batches = [np.full(10, float(k), np.float32) for k in range(1, 21)]
    batches[10][3] = np.nan  # ignored, like inf, as in the scale rule
    assert quant.calibrate(batches, percentile=100) == 20.0
    assert quant.calibrate(batches, percentile=50) == pytest.approx(np.percentile(np.arange(1, 21), 50))
    with pytest.raises(ValueError, match="no batches"):
        quant.calibrate([])
