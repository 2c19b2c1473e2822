"""Chapter 00's hidden graded cases: FP8 encoding and decoding, on inputs the visible cases
(tests/test_graded_ch00.py) do not use.

Other dtypes at the format's edges (448 and 464 for E4M3, the largest subnormal, float16 and
float64 values at and beside the midpoints), other launch shapes, and a decoding reference
built from the definition rather than from ml_dtypes: an answer tuned to the visible cases
does not pass them. The instructor's grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest

from tutorial import fp8  # the format descriptors (the learner's code runs in the harness only)
from tutorial.course import cases, grading
from tutorial.course.cases import Case, output

from test_fp8 import finite_positive_values
from test_graded_ch00 import DECODE, FORMATS, ROUND, fmt_of, nearest_code

pytestmark = [pytest.mark.chapter("00"), pytest.mark.hidden]


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


def definition_values(codes, fmt):
    """`definition_value` of every code, as float32, in the codes' shape."""
    return np.array([definition_value(int(c), fmt) for c in codes.reshape(-1)]).astype(np.float32).reshape(codes.shape)


# -- round_bits_to_fp8 ---------------------------------------------------------------------------


def around_e4m3_max(dtype):
    return lambda rng: {"x": with_neighbours(np.array([416, 424, 432, 440, 447, 448, 449, 456, 464, 472, 480, 65504],
                                                      dtype)), "fmt": "e4m3"}


def saturates_to_448(inputs, outputs):
    x, got = inputs["x"], output(outputs)
    grading.assert_array_matches(got, nearest_code(x, fp8.E4M3), inputs=x, what="E4M3 code near max")
    assert not np.isin(got, [0x7F, 0xFF]).any(), "a finite value became the NaN code"


DTYPES = (np.float16, np.float32, np.float64)


def boundary_points(fmt):
    step = fmt.min_subnormal
    largest_subnormal = fmt.min_normal - step
    return step, largest_subnormal, [largest_subnormal, largest_subnormal + step / 2, fmt.min_normal, step / 2,
                                     step, 1.5 * step, largest_subnormal - step / 2]


def subnormal_boundary(fmt):
    def make(rng):
        step, largest_subnormal, points = boundary_points(fmt)
        tie = np.float32([largest_subnormal + step / 2, -(largest_subnormal + step / 2)])
        return {**{np.dtype(d).name: with_neighbours(np.array(points, d)) for d in DTYPES}, "tie": tie,
                "fmt": fmt.name}
    return make


def subnormal_boundary_codes(inputs, outputs):
    fmt = fmt_of(inputs)
    for dtype in DTYPES:
        name = np.dtype(dtype).name
        x = inputs[name]
        grading.assert_array_matches(output(outputs, name), nearest_code(x, fmt), inputs=x,
                                     what=f"{fmt.name} code of a {name} at the subnormal boundary")
    tie = inputs["tie"]
    smallest_normal = 1 << fmt.mantissa_bits  # its code: exponent field 1, mantissa 0 (even)
    want = np.uint8([smallest_normal, smallest_normal | 0x80])
    grading.assert_array_matches(output(outputs, "tie"), want, inputs=tie, what=f"{fmt.name} code of the tie")


def float64_and_float16(fmt):
    def make(rng):
        values, _ = finite_positive_values(fmt)
        mids = (values[:-1] + values[1:]) / 2
        x = np.concatenate([mids, np.nextafter(mids, np.inf), -mids, -np.nextafter(mids, np.inf),
                            [1e300, -1e300, 1e-300, -1e-300, 5e-324, -0.0, np.inf, -np.inf]])
        x = np.concatenate([x, np.array([0x7FF8000000000001, 0xFFF0000000000001], np.uint64).view(np.float64)])
        half = with_neighbours(mids.astype(np.float16)).reshape(6, -1)  # float16 holds every midpoint exactly
        return {"x": x, "half": half, "fmt": fmt.name}
    return make


def float64_and_float16_codes(inputs, outputs):
    fmt = fmt_of(inputs)
    x, half = inputs["x"], inputs["half"]
    grading.assert_array_matches(output(outputs, "x"), nearest_code(x, fmt), inputs=x,
                                 what=f"{fmt.name} code of a float64")
    grading.assert_array_matches(output(outputs, "half"), nearest_code(half, fmt), inputs=half,
                                 what=f"{fmt.name} code of a float16")


def edge_values(rng):
    e4m3, e5m2 = fp8.E4M3, fp8.E5M2
    points = [448, 464, 57344, 61440,
              e4m3.min_normal - e4m3.min_subnormal / 2, e5m2.min_normal - e5m2.min_subnormal / 2,
              e4m3.min_subnormal / 2, e5m2.min_subnormal / 2, 1e-40, 1.4e-45, 3e-39, 0.0, np.inf]
    x = np.concatenate([with_neighbours(np.array(points, np.float32)), np.float32([np.nan, -np.nan])])
    return {"x": x, "blocks": 3, "threads": 32}


def kernel_codes_are_nearest(inputs, outputs):
    x = inputs["x"]
    for fmt in FORMATS:
        grading.assert_array_matches(output(outputs, fmt.name), nearest_code(x, fmt), inputs=x,
                                     what=f"encode_{fmt.name} in a kernel")


# -- fp8_to_float32_bits -------------------------------------------------------------------------


def shuffled_codes(fmt):
    return lambda rng: {"codes": rng.permutation(256).astype(np.uint8).reshape(16, 16), "fmt": fmt.name}


def decodes_as_defined(inputs, outputs):
    fmt, codes = fmt_of(inputs), inputs["codes"]
    grading.assert_array_matches(output(outputs), definition_values(codes, fmt), inputs=codes,
                                 what=f"decoded {fmt.name} value")


LANDMARKS = {
    "e4m3": {0x00: 0.0, 0x80: -0.0, 0x01: 2.0**-9, 0x81: -(2.0**-9), 0x07: 7 * 2.0**-9, 0x08: 2.0**-6,
             0x38: 1.0, 0x7E: 448.0, 0xFE: -448.0, 0x7F: np.nan, 0xFF: -np.nan, 0x78: 256.0, 0x7C: 384.0},
    "e5m2": {0x00: 0.0, 0x80: -0.0, 0x01: 2.0**-16, 0x83: -3 * 2.0**-16, 0x04: 2.0**-14, 0x3C: 1.0,
             0x7B: 57344.0, 0xFB: -57344.0, 0x7C: np.inf, 0xFC: -np.inf, 0x7D: np.nan, 0xFE: -np.nan},
}


def landmarks(fmt):
    return lambda rng: {"codes": np.array(list(LANDMARKS[fmt.name]), np.uint8), "fmt": fmt.name}


def decodes_to_the_landmarks(inputs, outputs):
    fmt, codes = fmt_of(inputs), inputs["codes"]
    named = LANDMARKS[fmt.name]
    want = np.array([np.copysign(np.nan, named[int(c)]) if np.isnan(named[int(c)]) else named[int(c)]
                     for c in codes], np.float32)
    grading.assert_array_matches(output(outputs), want, inputs=codes, what=f"decoded {fmt.name} value")


def random_codes(rng):
    return {"codes": rng.integers(0, 256, 600).astype(np.uint8), "blocks": 2, "threads": 32}


def kernel_values_are_as_defined(inputs, outputs):
    codes = inputs["codes"]
    for fmt in FORMATS:
        grading.assert_array_matches(output(outputs, fmt.name), definition_values(codes, fmt), inputs=codes,
                                     what=f"decode_{fmt.name} in a kernel")


CASES = [
    *(Case(ROUND, "416 to 480 and 65504 (448 the max, 464 the would-be tie with 480): +-448 above 448, never 0x7f "
           f"({np.dtype(dtype).name})", around_e4m3_max(dtype), "harness_ch00:encode", saturates_to_448)
      for dtype in DTYPES),
    *(Case(ROUND, "the largest subnormal, its tie with the smallest normal, half the smallest subnormal: "
           f"float16/32/64 ({fmt.name})", subnormal_boundary(fmt), "harness_ch00:encode_each",
           subnormal_boundary_codes) for fmt in FORMATS),
    *(Case(ROUND, "float64 on each midpoint (to even), an ulp above (up), 1e+-300, NaN payloads; float16 midpoints "
           f"in 2-D ({fmt.name})", float64_and_float16(fmt), "harness_ch00:encode_each", float64_and_float16_codes)
      for fmt in FORMATS),
    Case(ROUND, "encode_e4m3 / encode_e5m2 in a 3-block grid-stride kernel: boundaries, float32 subnormals, -0.0, "
         "inf, NaN", edge_values, "harness_ch00:device_encoders_grid_stride", kernel_codes_are_nearest),
    *(Case(DECODE, "all 256 codes, shuffled into a 16x16 array, against sign * 2^(e - bias) * (1.m) computed from "
           f"the definition ({fmt.name})", shuffled_codes(fmt), "harness_ch00:decode", decodes_as_defined,
           seed=100 + fmt.mantissa_bits) for fmt in FORMATS),
    *(Case(DECODE, "named codes: -0.0 keeps its sign, subnormals are k * 2^(1 - bias - M), max, +-inf (E5M2 only), "
           f"signed NaN ({fmt.name} landmarks)", landmarks(fmt), "harness_ch00:decode", decodes_to_the_landmarks)
      for fmt in FORMATS),
    Case(DECODE, "decode_e4m3 / decode_e5m2 in a 2-block grid-stride kernel over 600 random codes (each code about "
         "twice)", random_codes, "harness_ch00:device_decoders_grid_stride", kernel_values_are_as_defined, seed=101),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """A hidden graded case of chapter 00: its inputs, the learner's outputs, judged (see the case's id)."""
    cases.check(case)
