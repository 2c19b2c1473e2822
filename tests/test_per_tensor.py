"""Chapter 02: per-tensor quantization matches the numpy reference bit for bit, codes and scales.

The graded tests of pack4 and per_tensor_kernel_vec4 are cases in tests/test_graded_ch02.py (and
tests/test_hidden_ch02.py); these tests check the rest of the module. `hostile` and `assert_same`
serve the later chapters' tests too.
"""

import numpy as np
import pytest
from numba import cuda

from tutorial import fp8
from tutorial.course import grading
from tutorial.reference import per_tensor_reference

from tutorial.quant import per_tensor  # noqa: E402  (the library, or chapter 02's exercise file)
pytestmark = pytest.mark.chapter("02")


def hostile(shape, seed, dtype=np.float32):
    """Normal values with a few outliers, a NaN, an inf, zeros and values that underflow.
    `seed`: a seed, or a numpy Generator to draw from (a graded case's)."""
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


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 3, 129)])
def test_sizes_not_a_multiple_of_4_take_the_general_kernel(fmt, shape):
    x = hostile(shape, seed=sum(shape))
    assert_same(per_tensor.quantize_per_tensor(x, fmt), per_tensor_reference(x, fmt))


def test_float16_and_float64_input():
    for dtype in (np.float16, np.float64):
        x = hostile((40, 50), seed=3, dtype=dtype)
        assert_same(per_tensor.quantize_per_tensor(x), per_tensor_reference(x))


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


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("encoder", ["fast", "exact"])
def test_x8_kernel_matches_the_reference_over_several_grids(bf16, dynamic, encoder):
    """per_tensor_kernel_x8 launched over several grids (launch_covering with 32 threads; the
    simulator caps each grid) on a size whose last grid is partial: every code is the reference's."""
    import ml_dtypes

    from tutorial.runtime.launch import launch_covering
    from tutorial.runtime.loads import load8_bf16, load8_f32

    x = hostile(8 * 301, seed=15)
    if bf16:
        x = x.astype(ml_dtypes.bfloat16)
    values = np.asarray(x, np.float32)
    ref = per_tensor_reference(values, scale=None if dynamic else 0.25, encoder=encoder)
    per_trip = 2 if bf16 else 1
    kernel = per_tensor.per_tensor_kernel_x8(fp8.E4M3, dynamic, load8_bf16 if bf16 else load8_f32,
                                            encoder, per_trip)
    given = np.float32([np.nanmax(np.abs(np.where(np.isfinite(values), values, 0)))]) if dynamic else np.float32([0.25])
    codes = cuda.device_array(x.size, np.uint8)
    scales = cuda.device_array(1, np.float32)
    bits = x.view(np.uint16) if bf16 else x
    launch_covering(kernel, x.size // 8, 32 * per_trip, 32, cuda.to_device(bits), cuda.to_device(given),
                    codes.view(np.uint64), scales)
    grading.assert_array_matches(scales.copy_to_host(), ref.scales.reshape(1), what="scales")
    grading.assert_array_matches(codes.copy_to_host(), ref.codes, what="codes", inputs=values)


def test_float32_with_the_exact_encoder_runs_the_exercise_kernel(monkeypatch):
    """What quantize_per_tensor grades is the learner's per_tensor_kernel_vec4: the default
    (exact) encoder on float32 never takes the library's x8 kernel; the fast one does."""
    taken = []
    real = per_tensor.per_tensor_kernel_x8
    monkeypatch.setattr(per_tensor, "per_tensor_kernel_x8", lambda *a, **k: taken.append(a) or real(*a, **k))
    x = hostile(64, seed=16)
    assert_same(per_tensor.quantize_per_tensor(x), per_tensor_reference(x))
    assert taken == []
    assert_same(per_tensor.quantize_per_tensor(x, encoder="fast"), per_tensor_reference(x, encoder="fast"))
    assert len(taken) == 1
