"""FP8 formats and codecs: the format descriptors, the entry points' edges, the quotient and
hardware encoders.

round_bits_to_fp8 and fp8_to_float32_bits, the exercises, are graded by the cases of
tests/test_graded_ch00.py (and tests/test_hidden_ch00.py): bit-exact against ml_dtypes and
against an exact nearest-value search. Host functions run on the CPU; device functions run in
a kernel (simulator or GPU, whichever is active).
"""

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

import tutorial
from tutorial.course import grading

from tutorial import fp8, fp8_hardware  # fp8: the library, or chapter 00's exercise file under --impl exercise
from tutorial.quant import encoders
from harness_ch00 import launch_shape  # the grid-stride launch the graded kernels use too
pytestmark = pytest.mark.chapter("00")

FORMATS = [fp8.E4M3, fp8.E5M2]
fmt_param = pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)


def finite_positive_values(fmt):
    """(values, codes) of the finite non-negative codes, ascending."""
    codes = np.arange(0x80, dtype=np.uint8)
    values = codes.view(fmt.ml_dtype).astype(np.float64)
    keep = np.isfinite(values)
    return values[keep], codes[keep]


def hard_cases(fmt):
    """Every representable value, every midpoint between neighbours and one float32 ulp either
    side of it, subnormals, zeros, values beyond max, inf and NaN; both signs."""
    values, _ = finite_positive_values(fmt)
    mids = ((values[:-1] + values[1:]) / 2).astype(np.float32)  # exact: one more bit suffices
    around = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf))])
    above = np.float32([fmt.max * 1.03, fmt.max * 1.0625, fmt.max * 1.1, fmt.max * 2, 3.4e38, np.inf])
    tiny = np.float32([fmt.min_subnormal / 2, fmt.min_subnormal / 4, 1e-30, 1.4e-45])
    x = np.concatenate([values.astype(np.float32), around, above, tiny, [np.float32(np.nan)]])
    return np.concatenate([x, -x]).astype(np.float32)


def random_float32(n, seed):
    return np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


# -- format descriptors ---------------------------------------------------------------------


@fmt_param
def test_descriptor_matches_ml_dtypes_finfo(fmt):
    info = ml_dtypes.finfo(fmt.ml_dtype)
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)
    assert fmt.mantissa_bits == info.nmant
    assert fmt.exponent_bits + fmt.mantissa_bits == 7


def test_descriptor_numbers():
    assert (fp8.E4M3.max, fp8.E4M3.exponent_bias, fp8.E4M3.mantissa_bits) == (448.0, 7, 3)
    assert (fp8.E4M3.min_normal, fp8.E4M3.min_subnormal) == (2.0**-6, 2.0**-9)
    assert (fp8.E5M2.max, fp8.E5M2.exponent_bias, fp8.E5M2.mantissa_bits) == (57344.0, 15, 2)
    assert (fp8.E5M2.min_normal, fp8.E5M2.min_subnormal) == (2.0**-14, 2.0**-16)


def test_format_names_are_accepted_and_unknown_ones_rejected():
    assert fp8.as_format("E4M3") is fp8.E4M3 and fp8.as_format("e5m2") is fp8.E5M2
    with pytest.raises(ValueError, match="e4m3"):
        fp8.as_format("e3m4")


# -- decoding -------------------------------------------------------------------------------


def test_decode_accepts_ml_dtypes_arrays_and_rejects_other_dtypes():
    codes = np.array([0x38, 0xB8], np.uint8)
    np.testing.assert_array_equal(fp8.decode(codes.view(ml_dtypes.float8_e4m3fn), "e4m3"), [1.0, -1.0])
    with pytest.raises(TypeError, match="int64"):
        fp8.decode(np.array([1, 2]), "e4m3")
    with pytest.raises(TypeError, match="float8_e5m2"):
        fp8.decode(codes.view(ml_dtypes.float8_e5m2), "e4m3")


# -- encoding on the host ----------------------------------------------------------------------


@fmt_param
def test_every_finite_code_round_trips(fmt):
    codes = np.arange(256, dtype=np.uint8)
    finite = np.isfinite(fp8.decode(codes, fmt))
    np.testing.assert_array_equal(fp8.encode(fp8.decode(codes[finite], fmt), fmt), codes[finite])


@fmt_param
def test_signed_zeros_keep_their_sign(fmt):
    np.testing.assert_array_equal(fp8.encode(np.float32([0.0, -0.0]), fmt), [0x00, 0x80])


@fmt_param
def test_beyond_max_and_infinities_saturate_to_max(fmt):
    x = np.float32([fmt.max * 1.01, fmt.max * 4, np.inf, 3.4e38])
    np.testing.assert_array_equal(fp8.encode(x, fmt), fmt.max_code)
    np.testing.assert_array_equal(fp8.encode(-x, fmt), fmt.max_code | 0x80)


@fmt_param
def test_every_nan_becomes_the_canonical_nan_code_0x7f(fmt):
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF], np.uint32).view(np.float32)
    codes = fp8.encode(nans, fmt)
    np.testing.assert_array_equal(codes, 0x7F)


def test_bfloat16_input_is_widened_exactly():
    x = np.linspace(-500, 500, 1001).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(fp8.encode(x, "e4m3"), fp8.encode(x.astype(np.float32), "e4m3"))


def test_encode_keeps_the_shape():
    x = np.ones((3, 4, 5), np.float32)
    assert fp8.encode(x).shape == (3, 4, 5) and fp8.encode(x).dtype == np.uint8


@pytest.mark.parametrize("bad", [np.arange(4), np.arange(4, dtype=np.uint8), np.array([True])])
def test_encode_rejects_non_float_input_naming_the_dtype(bad):
    with pytest.raises(TypeError, match=str(bad.dtype)):
        fp8.encode(bad)


# -- device functions (in a kernel: simulator or GPU) -----------------------------------------


@cuda.jit
def hardware_encode_kernel(x, e4m3, e5m2):
    start = cuda.grid(1)
    for i in range(start, x.size, cuda.gridsize(1)):
        e4m3[i] = fp8_hardware.encode_e4m3_hw(x[i])
        e5m2[i] = fp8_hardware.encode_e5m2_hw(x[i])


@pytest.mark.skipif(not fp8_hardware.hardware_fp8_available(), reason="needs a GPU of compute capability >= 8.9")
def test_hardware_encoder_gives_identical_codes():
    x = np.concatenate([hard_cases(fp8.E4M3), hard_cases(fp8.E5M2), random_float32(10**6, seed=13)])
    e4m3, e5m2 = np.zeros(x.size, np.uint8), np.zeros(x.size, np.uint8)
    hardware_encode_kernel[256, 256](x, e4m3, e5m2)
    grading.assert_array_matches(e4m3, fp8.encode(x, "e4m3"), inputs=x, what="encode_e4m3_hw")
    grading.assert_array_matches(e5m2, fp8.encode(x, "e5m2"), inputs=x, what="encode_e5m2_hw")


def test_hardware_encoder_is_a_clear_error_on_the_simulator():
    if not tutorial.ON_SIMULATOR:
        pytest.skip("simulator behaviour")
    with pytest.raises(RuntimeError, match="compute capability >= 8.9"):
        fp8_hardware.encode_e4m3_hw(1.0)


# -- encoding a quotient x / scale, rounded once --------------------------------------------


def quotient_cases(fmt, n_scales=40, seed=21):
    """(x, scale) pairs whose float32 quotient lands exactly on an FP8 midpoint while the exact
    quotient does not: the double-rounding trap. Plus ordinary random pairs."""
    values, _ = finite_positive_values(fmt)
    mids = ((values[:-1] + values[1:]) / 2)
    rng = np.random.default_rng(seed)
    scales = (2.0 ** rng.uniform(-12, 4, n_scales)).astype(np.float32)
    m, s = np.meshgrid(mids, scales.astype(np.float64))
    x = (m * s).astype(np.float32)  # rounded: x / s is then rarely exactly m
    with np.errstate(over="ignore"):
        q32 = x / s.astype(np.float32)
    trap = (q32.astype(np.float64) == m) & (x.astype(np.float64) / s != m)
    x_trap, s_trap = x[trap], s[trap].astype(np.float32)
    x_rand = (rng.standard_normal(3000) * 10.0 ** rng.integers(-3, 3, 3000)).astype(np.float32)
    s_rand = (2.0 ** rng.uniform(-8, 4, 3000)).astype(np.float32)
    return np.concatenate([x_trap, -x_trap, x_rand]), np.concatenate([s_trap, s_trap, s_rand]), int(trap.sum())


@cuda.jit
def quotient_kernel(x, scale, e4m3, e5m2):
    start = cuda.grid(1)
    for i in range(start, x.size, cuda.gridsize(1)):
        e4m3[i] = encoders.encode_e4m3_quotient(x[i], scale[i])
        e5m2[i] = encoders.encode_e5m2_quotient(x[i], scale[i])


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_quotient_is_rounded_once_from_the_exact_value(fmt):
    x, scale, traps = quotient_cases(fmt)
    assert traps > 20, "the test needs midpoint traps to mean anything"
    reference = fp8.encode(x.astype(np.float64) / scale.astype(np.float64), fmt)  # float64 quotient: exact enough
    naive = fp8.encode(x / scale, fmt)  # divide in float32, then round again
    assert np.count_nonzero(naive != reference) > 0, "some traps should catch the naive double rounding"
    e4m3, e5m2 = np.zeros(x.size, np.uint8), np.zeros(x.size, np.uint8)
    quotient_kernel[launch_shape()](x, scale, e4m3, e5m2)
    got = e4m3 if fmt is fp8.E4M3 else e5m2
    grading.assert_array_matches(got, reference, inputs=x, what=f"encode_{fmt.name}_quotient")


def near_midpoints(fmt, n_scales=64, seed=22):
    """x within 6 float32 ulps of midpoint * scale, for random scales: quotients just around
    the FP8 rounding midpoints, where any rounding of the quotient before the final one shows."""
    values, _ = finite_positive_values(fmt)
    mids = ((values[:-1] + values[1:]) / 2)
    rng = np.random.default_rng(seed)
    s = (2.0 ** rng.uniform(-20, 6, n_scales)).astype(np.float32)
    m, ss = np.meshgrid(mids, s.astype(np.float64))
    x = (m * ss).astype(np.float32).ravel()
    shifted = [x.view(np.int32) + k for k in range(-6, 7)]  # neighbours, ulp by ulp
    x_all = np.concatenate([v.view(np.float32) for v in shifted])
    s_all = np.tile(ss.astype(np.float32).ravel(), 13)
    keep = np.isfinite(x_all)
    return np.concatenate([x_all[keep], -x_all[keep]]), np.concatenate([s_all[keep], s_all[keep]])


@cuda.jit
def quotient_hw_kernel(x, scale, e4m3, e5m2):
    start = cuda.grid(1)
    for i in range(start, x.size, cuda.gridsize(1)):
        e4m3[i] = fp8_hardware.encode_e4m3_quotient_hw(x[i], scale[i])
        e5m2[i] = fp8_hardware.encode_e5m2_quotient_hw(x[i], scale[i])


@pytest.mark.skipif(not fp8_hardware.hardware_fp8_available(), reason="needs a GPU of compute capability >= 8.9")
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_hardware_quotient_encoder_gives_identical_codes(fmt):
    x, scale, _ = quotient_cases(fmt)
    small = (np.random.default_rng(3).standard_normal(2000) * 1e-6).astype(np.float32)  # FP8 subnormals
    near_x, near_s = near_midpoints(fmt)
    tiny_s = np.full(1000, 2.0**-126, np.float32)  # the smallest scale it takes: the smallest normal float32
    x = np.concatenate([x, small, random_float32(10**5, seed=14), near_x, random_float32(1000, seed=15) * 1e-38])
    scale = np.concatenate([scale, np.full(small.size, 1e-5, np.float32), np.full(10**5, 0.37, np.float32),
                            near_s, tiny_s])
    e4m3, e5m2 = np.zeros(x.size, np.uint8), np.zeros(x.size, np.uint8)
    quotient_hw_kernel[256, 256](x, scale, e4m3, e5m2)
    reference = fp8.encode(x.astype(np.float64) / scale.astype(np.float64), fmt)
    grading.assert_array_matches(e4m3 if fmt is fp8.E4M3 else e5m2, reference, inputs=x,
                                 what=f"encode_{fmt.name}_quotient_hw")
