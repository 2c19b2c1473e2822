"""FP8 formats and codecs: bit-exact against ml_dtypes, and against an exact nearest-value search.

ml_dtypes turns values beyond max into NaN (E4M3) or inf (E5M2), while our encoders
saturate, so inputs are clipped to +-max before ml_dtypes sees them. Host functions run on
the CPU; device functions run in a kernel (simulator or GPU, whichever is active).
"""

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

import tutorial
from tutorial.course import grading

from tutorial import fp8, fp8_hardware  # fp8: the library, or chapter 00's exercise file under --impl exercise
from tutorial.quant import encoders
pytestmark = pytest.mark.chapter("00")
decode_exercise = pytest.mark.graded("fp8_to_float32_bits")
rounding_exercise = pytest.mark.graded("round_bits_to_fp8")

FORMATS = [fp8.E4M3, fp8.E5M2]
fmt_param = pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)


def ml_dtypes_codes(x, fmt):
    """The ml_dtypes answer for float32 `x`, with our saturation applied first and its NaN
    codes (which keep the sign, and are 0x7e for E5M2) replaced by the canonical 0x7f."""
    with np.errstate(invalid="ignore"):
        codes = np.clip(x, -fmt.max, fmt.max).astype(fmt.ml_dtype).view(np.uint8)
    return np.where(np.isnan(x), np.uint8(fmt.nan_code), codes)


def finite_positive_values(fmt):
    """(values, codes) of the finite non-negative codes, ascending."""
    codes = np.arange(0x80, dtype=np.uint8)
    values = codes.view(fmt.ml_dtype).astype(np.float64)
    keep = np.isfinite(values)
    return values[keep], codes[keep]


def nearest_code(x, fmt):
    """Exact reference: the code of the nearest representable value, ties to the even code.

    Works in float64 on values that float64 holds exactly (every float32 and float16, and
    every FP8 midpoint), by search rather than by bit manipulation.
    """
    values, codes = finite_positive_values(fmt)
    x = np.asarray(x, np.float64)
    mag = np.nan_to_num(np.minimum(np.abs(x), fmt.max))
    hi = np.clip(np.searchsorted(values, mag), 1, values.size - 1)
    lo = hi - 1
    d_lo, d_hi = mag - values[lo], values[hi] - mag
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (codes[hi] % 2 == 0))
    out = np.where(pick_hi, codes[hi], codes[lo]).astype(np.uint8)
    out |= np.signbit(x).astype(np.uint8) << 7
    return np.where(np.isnan(x), np.uint8(fmt.nan_code), out)


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


@decode_exercise
@fmt_param
def test_decode_all_256_codes_matches_ml_dtypes(fmt):
    """Every one of the 256 codes decodes to the value ml_dtypes gives it."""
    codes = np.arange(256, dtype=np.uint8)
    ours = fp8.decode(codes, fmt)
    ref = codes.view(fmt.ml_dtype).astype(np.float32)
    grading.assert_array_matches(ours, ref, inputs=codes, what=f"decoded {fmt.name} value")


@decode_exercise
def test_e4m3_has_no_infinity_and_two_nan_codes():
    """E4M3 has no infinity: only 0x7f and 0xff are NaN, and 0x7e is 448."""
    values = fp8.representable_values(fp8.E4M3)
    assert not np.isinf(values).any(), f"infinite codes: {[hex(c) for c in np.flatnonzero(np.isinf(values))]}"
    nans = [hex(c) for c in np.flatnonzero(np.isnan(values))]
    assert nans == ["0x7f", "0xff"], f"NaN codes: {nans}, expected ['0x7f', '0xff']"


@decode_exercise
def test_e5m2_has_infinities_and_six_nan_codes():
    """E5M2 is IEEE-like: 0x7c and 0xfc are +-inf, and the six codes above them NaN."""
    values = fp8.representable_values(fp8.E5M2)
    assert values[0x7C] == np.inf and values[0xFC] == -np.inf, f"0x7c -> {values[0x7C]}, 0xfc -> {values[0xFC]}"
    nans = [hex(c) for c in np.flatnonzero(np.isnan(values))]
    assert nans == ["0x7d", "0x7e", "0x7f", "0xfd", "0xfe", "0xff"], f"NaN codes: {nans}"


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


@rounding_exercise
@fmt_param
def test_midpoints_and_their_neighbours_match_ml_dtypes(fmt):
    """Every FP8 value, every midpoint between two, and the float32 neighbours of both."""
    x = hard_cases(fmt)
    grading.assert_array_matches(fp8.encode(x, fmt), ml_dtypes_codes(x, fmt), inputs=x, what=f"{fmt.name} code")
    grading.assert_array_matches(fp8.encode(x, fmt), nearest_code(x, fmt), inputs=x, what=f"{fmt.name} code")


@rounding_exercise
@fmt_param
def test_ties_go_to_the_even_code(fmt):
    """Exact midpoints between two FP8 values round to the one with an even code."""
    values, codes = finite_positive_values(fmt)
    mids = ((values[:-1] + values[1:]) / 2).astype(np.float32)
    got = fp8.encode(mids, fmt)
    even = np.where(codes[:-1] % 2 == 0, codes[:-1], codes[1:])
    grading.assert_array_matches(got, even, inputs=mids, what=f"{fmt.name} code of a midpoint")


@rounding_exercise
def test_e4m3_subnormals_are_multiples_of_2_to_minus_9():
    """Subnormals: k * 2^-9 is code k; ties between them go to even; 2^-10 rounds to 0."""
    k = np.arange(8)
    x = (k * 2.0**-9).astype(np.float32)
    grading.assert_array_matches(fp8.encode(x, "e4m3"), k.astype(np.uint8), inputs=x, what="subnormal code")
    # 1.5 and 2.5 smallest subnormals are ties: to 2 and 2 (even), not 2 and 3;
    # half the smallest subnormal is a tie between 0 and 1: to 0; a bit above goes to 1
    half = np.float32(2.0**-10)
    x = np.float32([1.5 * 2**-9, 2.5 * 2**-9, half, np.nextafter(half, np.float32(1))])
    grading.assert_array_matches(fp8.encode(x, "e4m3"), np.uint8([2, 2, 0, 1]), inputs=x,
                                 what="code of a tie between subnormals")


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


@rounding_exercise
@fmt_param
def test_a_million_random_float32_bit_patterns_match_ml_dtypes(fmt):
    """A million random float32 bit patterns, NaN, inf and every exponent among them."""
    x = random_float32(10**6, seed=11)
    grading.assert_array_matches(fp8.encode(x, fmt), ml_dtypes_codes(x, fmt), inputs=x, what=f"{fmt.name} code")


@rounding_exercise
@fmt_param
def test_float16_input_is_rounded_from_its_own_bits(fmt):
    """All 65536 float16 values, rounded from their own bits."""
    x = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)  # all of them
    grading.assert_array_matches(fp8.encode(x, fmt), nearest_code(x, fmt), inputs=x, what=f"{fmt.name} code")


@rounding_exercise
@fmt_param
def test_float64_input_is_rounded_once_not_through_float32(fmt):
    """float64 values just below a midpoint round down: no detour through float32."""
    # Just below an FP8 midpoint, float64 -> float32 would land on the midpoint itself and
    # then round to even: double rounding. (ml_dtypes does exactly that.)
    values, _ = finite_positive_values(fmt)
    mids = (values[:-1] + values[1:]) / 2
    below = np.nextafter(mids, 0.0)
    grading.assert_array_matches(fp8.encode(below, fmt), nearest_code(below, fmt), inputs=below,
                                 what=f"{fmt.name} code of a float64 just below a midpoint")
    x = np.random.default_rng(5).standard_normal(10**5) * 10.0 ** np.random.default_rng(6).integers(-8, 6, 10**5)
    grading.assert_array_matches(fp8.encode(x, fmt), nearest_code(x, fmt), inputs=x, what=f"{fmt.name} code")


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
def encode_kernel(x, e4m3, e5m2):
    start = cuda.grid(1)
    for i in range(start, x.size, cuda.gridsize(1)):
        e4m3[i] = fp8.encode_e4m3(x[i])
        e5m2[i] = fp8.encode_e5m2(x[i])


@cuda.jit
def decode_kernel(codes, e4m3, e5m2):
    i = cuda.grid(1)
    if i < codes.size:
        e4m3[i] = fp8.decode_e4m3(codes[i])
        e5m2[i] = fp8.decode_e5m2(codes[i])


def launch_shape():
    # The simulator runs one Python thread per CUDA thread: 64 threads striding is fastest.
    return (2, 32) if tutorial.ON_SIMULATOR else (256, 256)


def check_device_encoders(x):
    e4m3, e5m2 = np.zeros(x.size, np.uint8), np.zeros(x.size, np.uint8)
    encode_kernel[launch_shape()](x, e4m3, e5m2)
    grading.assert_array_matches(e4m3, fp8.encode(x, "e4m3"), inputs=x, what="encode_e4m3 in a kernel")
    grading.assert_array_matches(e5m2, fp8.encode(x, "e5m2"), inputs=x, what="encode_e5m2 in a kernel")


@decode_exercise
def test_device_decoders_on_all_256_codes():
    """decode_e4m3 and decode_e5m2 inside a kernel, on all 256 codes."""
    codes = np.arange(256, dtype=np.uint8)
    e4m3, e5m2 = np.zeros(256, np.float32), np.zeros(256, np.float32)
    decode_kernel[8, 32](codes, e4m3, e5m2)
    for got, fmt in [(e4m3, fp8.E4M3), (e5m2, fp8.E5M2)]:
        want = codes.view(fmt.ml_dtype).astype(np.float32)
        grading.assert_array_matches(got, want, inputs=codes, what=f"decode_{fmt.name} in a kernel")


@rounding_exercise
def test_device_encoders_on_all_codes_and_hard_cases():
    """encode_e4m3 and encode_e5m2 inside a kernel, on every value, midpoint and neighbour."""
    check_device_encoders(np.concatenate([hard_cases(fp8.E4M3), hard_cases(fp8.E5M2)]))


@rounding_exercise
def test_device_encoders_on_a_million_random_bit_patterns():
    """encode_e4m3 and encode_e5m2 inside a kernel, on a million random float32 patterns."""
    check_device_encoders(random_float32(10**6, seed=12))


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
