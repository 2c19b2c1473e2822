"""Chapter 00's hidden graded tests: FP8 encoding and decoding, on inputs the visible tests
(tests/test_fp8.py) do not use.

Other dtypes at the format's edges (448 and 464 for E4M3, the largest subnormal, float16 and
float64 values at and beside the midpoints), other launch shapes, and a decoding reference
built from the definition rather than from ml_dtypes: an answer tuned to the visible tests
does not pass them. The instructor's grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest

from tutorial.course import grading

from tutorial import fp8  # the library, or chapter 00's exercise file under --impl exercise
from test_fp8 import finite_positive_values, nearest_code

pytestmark = [pytest.mark.chapter("00"), pytest.mark.hidden]
rounding_exercise = pytest.mark.graded("round_bits_to_fp8")
decode_exercise = pytest.mark.graded("fp8_to_float32_bits")

FORMATS = [fp8.E4M3, fp8.E5M2]
fmt_param = pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)


def with_neighbours(x):
    """`x` (any float dtype) and its nearest neighbours below and above in that dtype, both signs."""
    x = np.asarray(x)
    zero, big = x.dtype.type(0), x.dtype.type(np.inf)
    with np.errstate(over="ignore"):  # float16's 65504 has inf above it: an input like any other
        x = np.concatenate([x, np.nextafter(x, zero), np.nextafter(x, big)])
    return np.concatenate([x, -x])


def definition_value(code, fmt):
    """The value of FP8 `code` straight from the definition (sign, exponent field, mantissa field),
    in float64: no table, no ml_dtypes."""
    sign = -1.0 if code & 0x80 else 1.0
    e = (code >> fmt.mantissa_bits) & ((1 << fmt.exponent_bits) - 1)
    m = code & ((1 << fmt.mantissa_bits) - 1)
    top = (1 << fmt.exponent_bits) - 1
    if fmt.has_inf and e == top:
        return sign * np.inf if m == 0 else np.copysign(np.nan, sign)
    if not fmt.has_inf and e == top and m == (1 << fmt.mantissa_bits) - 1:
        return np.copysign(np.nan, sign)
    if e == 0:  # subnormal (or zero): no implicit bit, the smallest exponent
        return sign * m * 2.0 ** (1 - fmt.exponent_bias - fmt.mantissa_bits)
    return sign * (1 + m / 2.0**fmt.mantissa_bits) * 2.0 ** (e - fmt.exponent_bias)


# -- round_bits_to_fp8 ---------------------------------------------------------------------------


@rounding_exercise
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_values_around_e4m3_max_saturate_to_448_and_never_to_nan(dtype):
    """416 to 480 and 65504 (448 the max, 464 the would-be tie with 480): +-448 above 448, never 0x7f."""
    x = with_neighbours(np.array([416, 424, 432, 440, 447, 448, 449, 456, 464, 472, 480, 65504], dtype))
    got = fp8.encode(x, fp8.E4M3)
    grading.assert_array_matches(got, nearest_code(x, fp8.E4M3), inputs=x, what="E4M3 code near max")
    assert not np.isin(got, [0x7F, 0xFF]).any(), "a finite value became the NaN code"


@rounding_exercise
@fmt_param
def test_the_subnormal_to_normal_boundary_in_three_dtypes(fmt):
    """The largest subnormal, its tie with the smallest normal, half the smallest subnormal: float16/32/64."""
    step = fmt.min_subnormal
    largest_subnormal = fmt.min_normal - step
    points = [largest_subnormal, largest_subnormal + step / 2, fmt.min_normal, step / 2, step, 1.5 * step,
              largest_subnormal - step / 2]
    for dtype in (np.float16, np.float32, np.float64):
        x = with_neighbours(np.array(points, dtype))
        grading.assert_array_matches(fp8.encode(x, fmt), nearest_code(x, fmt), inputs=x,
                                     what=f"{fmt.name} code of a {np.dtype(dtype).name} at the subnormal boundary")
    tie = np.float32([largest_subnormal + step / 2, -(largest_subnormal + step / 2)])
    smallest_normal = 1 << fmt.mantissa_bits  # its code: exponent field 1, mantissa 0 (even)
    want = np.uint8([smallest_normal, smallest_normal | 0x80])
    grading.assert_array_matches(fp8.encode(tie, fmt), want, inputs=tie, what=f"{fmt.name} code of the tie")


@rounding_exercise
@fmt_param
def test_float64_and_float16_at_and_beside_every_midpoint(fmt):
    """float64 on each midpoint (to even), an ulp above (up), 1e+-300, NaN payloads; float16 midpoints in 2-D."""
    values, _ = finite_positive_values(fmt)
    mids = (values[:-1] + values[1:]) / 2
    x = np.concatenate([mids, np.nextafter(mids, np.inf), -mids, -np.nextafter(mids, np.inf),
                        [1e300, -1e300, 1e-300, -1e-300, 5e-324, -0.0, np.inf, -np.inf]])
    x = np.concatenate([x, np.array([0x7FF8000000000001, 0xFFF0000000000001], np.uint64).view(np.float64)])
    grading.assert_array_matches(fp8.encode(x, fmt), nearest_code(x, fmt), inputs=x,
                                 what=f"{fmt.name} code of a float64")
    half = with_neighbours(mids.astype(np.float16)).reshape(6, -1)  # float16 holds every midpoint exactly
    grading.assert_array_matches(fp8.encode(half, fmt), nearest_code(half, fmt), inputs=half,
                                 what=f"{fmt.name} code of a float16")


@rounding_exercise
def test_device_encoders_in_a_grid_stride_loop_on_edge_values():
    """encode_e4m3 / encode_e5m2 in a 3-block grid-stride kernel: boundaries, float32 subnormals, -0.0, inf, NaN."""
    e4m3, e5m2 = fp8.E4M3, fp8.E5M2
    points = [448, 464, 57344, 61440,
              e4m3.min_normal - e4m3.min_subnormal / 2, e5m2.min_normal - e5m2.min_subnormal / 2,
              e4m3.min_subnormal / 2, e5m2.min_subnormal / 2, 1e-40, 1.4e-45, 3e-39, 0.0, np.inf]
    x = np.concatenate([with_neighbours(np.array(points, np.float32)), np.float32([np.nan, -np.nan])])
    for fmt, encode in [(e4m3, fp8.encode_e4m3), (e5m2, fp8.encode_e5m2)]:
        codes = np.full(x.size, 0xAA, np.uint8)  # poisoned: an unwritten code shows
        fp8.encode_kernel(encode)[3, 32](x, codes)
        grading.assert_array_matches(codes, nearest_code(x, fmt), inputs=x, what=f"encode_{fmt.name} in a kernel")


# -- fp8_to_float32_bits -------------------------------------------------------------------------


@decode_exercise
@fmt_param
def test_decode_matches_the_definition_in_a_shuffled_2d_array(fmt):
    """All 256 codes, shuffled into a 16x16 array, against sign * 2^(e - bias) * (1.m) computed from the definition."""
    codes = np.random.default_rng(100 + fmt.mantissa_bits).permutation(256).astype(np.uint8).reshape(16, 16)
    want = np.array([[definition_value(int(c), fmt) for c in row] for row in codes]).astype(np.float32)
    grading.assert_array_matches(fp8.decode(codes, fmt), want, inputs=codes, what=f"decoded {fmt.name} value")


@decode_exercise
@pytest.mark.parametrize("fmt, cases", [
    (fp8.E4M3, {0x00: 0.0, 0x80: -0.0, 0x01: 2.0**-9, 0x81: -(2.0**-9), 0x07: 7 * 2.0**-9, 0x08: 2.0**-6,
                0x38: 1.0, 0x7E: 448.0, 0xFE: -448.0, 0x7F: np.nan, 0xFF: -np.nan, 0x78: 256.0, 0x7C: 384.0}),
    (fp8.E5M2, {0x00: 0.0, 0x80: -0.0, 0x01: 2.0**-16, 0x83: -3 * 2.0**-16, 0x04: 2.0**-14, 0x3C: 1.0,
                0x7B: 57344.0, 0xFB: -57344.0, 0x7C: np.inf, 0xFC: -np.inf, 0x7D: np.nan, 0xFE: -np.nan}),
], ids=["e4m3 landmarks", "e5m2 landmarks"])
def test_decode_of_signed_zero_subnormals_max_inf_and_nan(fmt, cases):
    """Named codes: -0.0 keeps its sign, subnormals are k * 2^(1 - bias - M), max, +-inf (E5M2 only), signed NaN."""
    codes = np.array(list(cases), np.uint8)
    want = np.array([np.copysign(np.nan, v) if np.isnan(v) else v for v in cases.values()], np.float32)
    grading.assert_array_matches(fp8.decode(codes, fmt), want, inputs=codes, what=f"decoded {fmt.name} value")


@decode_exercise
def test_device_decoders_in_a_grid_stride_loop():
    """decode_e4m3 / decode_e5m2 in a 2-block grid-stride kernel over 600 random codes (each code about twice)."""
    codes = np.random.default_rng(101).integers(0, 256, 600).astype(np.uint8)
    for fmt, decode in [(fp8.E4M3, fp8.decode_e4m3), (fp8.E5M2, fp8.decode_e5m2)]:
        values = np.full(codes.size, 12345.0, np.float32)  # poisoned: an unwritten value shows
        fp8.decode_kernel(decode)[2, 32](codes, values)
        want = np.array([definition_value(int(c), fmt) for c in codes]).astype(np.float32)
        grading.assert_array_matches(values, want, inputs=codes, what=f"decode_{fmt.name} in a kernel")
