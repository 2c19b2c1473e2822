"""Chapter 02: per-tensor quantization matches the numpy reference bit for bit, codes and scales."""

import numpy as np
import pytest
from numba import cuda

from tutorial.course import grading
from tutorial.qtensor import scale_from_amax
from tutorial.reference import per_tensor_reference

from tutorial.quant import per_tensor  # noqa: E402  (the library, or chapter 02's exercise file)
pytestmark = pytest.mark.chapter("02")
kernel_exercise = pytest.mark.graded("per_tensor_kernel_vec4")


def hostile(shape, seed, dtype=np.float32):
    """Normal values with a few outliers, a NaN, an inf, zeros and values that underflow."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 3)] *= 100  # outliers
    specials = [np.nan, -np.inf, 0.0, -0.0, 1e-30]
    flat[1:1 + len(specials)] = specials[:max(0, flat.size - 1)]
    return x.astype(dtype)


def assert_same(q, ref, x=None):
    """The QTensor `q` is `ref`: block, format, scales and codes (codes named with their input `x`)."""
    assert q.block == ref.block, f"block {q.block}, expected {ref.block}"
    assert q.fmt is ref.fmt, f"format {q.fmt.name}, expected {ref.fmt.name}"
    grading.assert_array_matches(q.scales, ref.scales, what="scales")
    grading.assert_array_matches(q.codes, ref.codes, what="codes",
                                 inputs=None if x is None else np.asarray(x).astype(np.float32))


@pytest.mark.graded("pack4")
def test_pack4_puts_the_first_code_in_the_low_byte():
    """Two words of four codes each, sign bits and 0xff among them: c0 lands in the low byte."""
    @cuda.jit
    def pack(codes, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = per_tensor.pack4(codes[4 * i], codes[4 * i + 1], codes[4 * i + 2], codes[4 * i + 3])

    codes = np.array([0x01, 0x80, 0x7F, 0xFE, 0xFF, 0x00, 0x12, 0xA5], np.uint8)
    out = cuda.to_device(np.full(2, 0xDEADBEEF, np.uint32))  # poisoned: an unwritten word shows
    pack[1, 32](cuda.to_device(codes), out)
    # what a little-endian uint32 view of the codes holds: the packing must give exactly that
    grading.assert_array_matches(out.copy_to_host(), codes.view("<u4"), what="packed words")


@kernel_exercise
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(1000,), (36, 300), (4,)], ids=["1000 values", "36x300", "one word"])
def test_dynamic_per_tensor_matches_the_reference(fmt, shape):
    """Normal values with outliers, NaN, -inf, signed zeros and an underflow: codes and scale."""
    x = hostile(shape, seed=sum(shape))
    assert_same(per_tensor.quantize_per_tensor(x, fmt), per_tensor_reference(x, fmt), x)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 3, 129)])
def test_sizes_not_a_multiple_of_4_take_the_general_kernel(fmt, shape):
    x = hostile(shape, seed=sum(shape))
    assert_same(per_tensor.quantize_per_tensor(x, fmt), per_tensor_reference(x, fmt))


def test_float16_and_float64_input():
    for dtype in (np.float16, np.float64):
        x = hostile((40, 50), seed=3, dtype=dtype)
        assert_same(per_tensor.quantize_per_tensor(x), per_tensor_reference(x))


@kernel_exercise
def test_static_scale_is_used_as_given_and_saturates_beyond_it():
    """A static scale of 0.01, far too small for these values: used as given, larger values saturate."""
    x = hostile((500,), seed=4)
    q = per_tensor.quantize_per_tensor(x, "e4m3", scale=0.01)
    assert_same(q, per_tensor_reference(x, "e4m3", scale=0.01), x)
    assert q.scales[0] == np.float32(0.01), f"scale {q.scales[0]!r}, expected 0.01"
    assert (q.dequantize()[np.isfinite(x)] <= 448 * np.float32(0.01)).all(), "values beyond 448 * scale"


@kernel_exercise
def test_all_zero_tensor_dequantizes_to_exact_zeros():
    """An all-zero tensor: code 0 everywhere, and the scale of the smallest amax (no division by 0)."""
    x = np.zeros((8, 8), np.float32)
    q = per_tensor.quantize_per_tensor(x)
    grading.assert_array_matches(q.codes, np.zeros((8, 8), np.uint8), inputs=x, what="codes")
    assert q.scales[0, 0] == scale_from_amax(0.0, "e4m3"), f"scale {q.scales[0, 0]!r}"
    assert (q.dequantize() == 0).all()


@kernel_exercise
def test_nan_stays_nan_and_inf_saturates():
    """[1, nan, inf, -2]: NaN stays NaN, inf saturates to the amax of the finite values (2)."""
    x = np.array([[1.0, np.nan, np.inf, -2.0]], np.float32)
    back = per_tensor.quantize_per_tensor(x).dequantize()
    grading.assert_array_matches(back, np.float32([[1.0, np.nan, 2.0, -2.0]]), inputs=x, what="dequantized value")


@kernel_exercise
def test_device_input_gives_a_device_qtensor():
    """A device array in gives codes and scales that stay on the device."""
    x = hostile((64, 64), seed=9)
    q = per_tensor.quantize_per_tensor(cuda.to_device(x))
    assert hasattr(q.codes, "copy_to_host") and hasattr(q.scales, "copy_to_host"), "a host QTensor came back"
    assert_same(q.to_host(), per_tensor_reference(x), x)


def test_unaligned_views_take_the_general_kernel():
    x = hostile((1001,), seed=5)
    d = cuda.to_device(x)[1:]  # 4 bytes past a 16-byte boundary: no 16-byte loads
    assert_same(per_tensor.quantize_per_tensor(d).to_host(), per_tensor_reference(x[1:]))


@pytest.mark.parametrize("call, message", [
    (lambda: per_tensor.quantize_per_tensor(np.arange(4)), "quantize_per_tensor: x must be a float"),
    (lambda: per_tensor.quantize_per_tensor(np.zeros(0, np.float32)), "empty"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), scale=0.0), "scale must be a positive"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), scale=-1.0), "scale must be a positive"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), scale=np.inf), "scale must be a positive"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), scale=1e-40), "between 2\\^-126 and 2\\^126"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), scale=1e38), "between 2\\^-126 and 2\\^126"),
    (lambda: per_tensor.quantize_per_tensor(np.ones(4, np.float32), fmt="int8"), "fmt must be"),
])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_calibrate_takes_a_percentile_of_batch_maxima():
    batches = [np.full(10, float(k), np.float32) for k in range(1, 21)]
    batches[10][3] = np.nan  # ignored, like inf, as in the scale rule
    assert per_tensor.calibrate(batches, percentile=100) == 20.0
    assert per_tensor.calibrate(batches, percentile=50) == pytest.approx(np.percentile(np.arange(1, 21), 50))
    with pytest.raises(ValueError, match="no batches"):
        per_tensor.calibrate([])
    with pytest.raises(ValueError, match="percentile"):
        per_tensor.calibrate(batches, percentile=0)


@pytest.mark.parametrize("shape", [(64, 100), (7, 9)])  # 16-bit loads of 4 values; a size that needs widening
def test_bfloat16_input_quantizes_like_its_exact_float32_value(shape):
    import ml_dtypes

    x = hostile(shape, seed=12).astype(ml_dtypes.bfloat16)
    wide = x.astype(np.float32)  # exact: bfloat16 is float32 with fewer mantissa bits
    assert_same(per_tensor.quantize_per_tensor(x), per_tensor_reference(wide))
    assert_same(per_tensor.quantize_per_tensor(x, scale=0.02), per_tensor_reference(wide, scale=0.02))


def test_torch_bfloat16_on_the_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    t = torch.randn(256, 512, device="cuda", dtype=torch.bfloat16) * 7
    wide = t.float().cpu().numpy()
    assert_same(per_tensor.quantize_per_tensor(t).to_host(), per_tensor_reference(wide))
