"""Chapter 03: per-channel quantization matches the numpy reference bit for bit, codes and scales.

The graded tests of per_row_kernel_vec4 are cases in tests/test_graded_ch03.py (and
tests/test_hidden_ch03.py); these tests check the rest of the module.
"""

import numpy as np
import pytest

from tutorial.reference import per_channel_reference

from test_per_tensor import assert_same, hostile

from tutorial.quant import per_channel  # noqa: E402  (the library, or chapter 03's exercise file)
pytestmark = pytest.mark.chapter("03")


def with_zero_row(x):
    x[min(2, x.shape[0] - 1)] = 0.0  # a whole zero row: exact zeros, the EPS scale
    return x


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(37, 300), (5, 8), (70, 4), (3, 132)])
def test_per_column_matches_the_reference(fmt, shape):
    x = with_zero_row(hostile(shape, seed=shape[0] + 1))
    x[:, 1] = 0.0  # a whole zero column
    assert_same(per_channel.quantize_per_channel(x, 1, fmt), per_channel_reference(x, 1, fmt))


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape, dtype", [((37, 301), np.float32), ((5, 7), np.float32),
                                          ((20, 30), np.float16), ((9, 12), np.float64)])
def test_general_kernels_for_odd_rows_and_other_dtypes(axis, shape, dtype):
    x = with_zero_row(hostile(shape, seed=7, dtype=dtype))
    assert_same(per_channel.quantize_per_channel(x, axis), per_channel_reference(x, axis))


def test_column_maxima_span_several_row_slabs():
    rows = 2 * per_channel.ROWS_PER_BLOCK + 3  # three slabs combine through the atomic max
    x = hostile((rows, 8), seed=11)
    x[-1, 5] = 1e4  # the largest value of column 5 in the last slab's last row
    assert_same(per_channel.quantize_per_channel(x, 1), per_channel_reference(x, 1))


@pytest.mark.parametrize("call, message", [
    (lambda: per_channel.quantize_per_channel(np.ones(4, np.float32), 0), "must be 2-D"),
    (lambda: per_channel.quantize_per_channel(np.ones((2, 2), np.float32), 2), "axis must be 0"),
    (lambda: per_channel.quantize_per_channel(np.ones((2, 2), np.int32), 0), "x must be a float"),
    (lambda: per_channel.quantize_per_channel(np.ones((0, 2), np.float32), 0), "empty"),
])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(9, 132), (5, 7)])  # 8-byte loads; a row length that needs widening
def test_bfloat16_input_quantizes_like_its_exact_float32_value(axis, shape):
    import ml_dtypes

    x = with_zero_row(hostile(shape, seed=13)).astype(ml_dtypes.bfloat16)
    assert_same(per_channel.quantize_per_channel(x, axis), per_channel_reference(x.astype(np.float32), axis))


def test_torch_bfloat16_on_the_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    t = torch.randn(300, 1024, device="cuda", dtype=torch.bfloat16) * 7
    wide = t.float().cpu().numpy()
    for axis in (0, 1):
        assert_same(per_channel.quantize_per_channel(t, axis).to_host(), per_channel_reference(wide, axis))
