"""Chapter 00's graded cases: round_bits_to_fp8 and fp8_to_float32_bits, bit-exact against
ml_dtypes and against an exact nearest-value search.

Each case draws its inputs, names the harness (tests/harness_ch00.py) that runs the learner's
code on them (fp8.encode and fp8.decode on the host; encode_e4m3, encode_e5m2, decode_e4m3 and
decode_e5m2 in a kernel), and judges the outputs against the references below (see
tutorial.course.cases). ml_dtypes turns values beyond max into NaN (E4M3) or inf (E5M2), while
our encoders saturate, so inputs are clipped to +-max before ml_dtypes sees them.
"""

import numpy as np
import pytest

from tutorial import fp8  # the format descriptors (the learner's code runs in the harness only)
from tutorial.course import cases, grading
from tutorial.course.cases import Case, output

from test_fp8 import finite_positive_values, hard_cases

pytestmark = pytest.mark.chapter("00")
DECODE, ROUND = "fp8_to_float32_bits", "round_bits_to_fp8"
FORMATS = [fp8.E4M3, fp8.E5M2]


def ml_dtypes_codes(x, fmt):
    """The ml_dtypes answer for float32 `x`, with our saturation applied first and its NaN
    codes (which keep the sign, and are 0x7e for E5M2) replaced by the canonical 0x7f."""
    with np.errstate(invalid="ignore"):
        codes = np.clip(x, -fmt.max, fmt.max).astype(fmt.ml_dtype).view(np.uint8)
    return np.where(np.isnan(x), np.uint8(fmt.nan_code), codes)


def nearest_code(x, fmt):
    """Exact reference: the code of the nearest representable value, ties to the even code.

    Works in float64 on values that float64 holds exactly (every float32 and float16, and
    every FP8 midpoint), by search rather than by bit manipulation.
    """
    values, codes = finite_positive_values(fmt)
    with np.errstate(invalid="ignore"):  # a signalling NaN widened to float64: still NaN
        x = np.asarray(x, np.float64)
    mag = np.nan_to_num(np.minimum(np.abs(x), fmt.max))
    hi = np.clip(np.searchsorted(values, mag), 1, values.size - 1)
    lo = hi - 1
    d_lo, d_hi = mag - values[lo], values[hi] - mag
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (codes[hi] % 2 == 0))
    out = np.where(pick_hi, codes[hi], codes[lo]).astype(np.uint8)
    out |= np.signbit(x).astype(np.uint8) << 7
    return np.where(np.isnan(x), np.uint8(fmt.nan_code), out)


def fmt_of(inputs):
    """The format a case's inputs name ("e4m3" or "e5m2")."""
    return fp8.as_format(str(inputs["fmt"]))


def random_float32(rng, n):
    """`n` random float32 bit patterns: NaN, inf and every exponent among them."""
    return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def next_generator(rng, step=1):
    """A second generator, seeded as `rng` was but with its case seed `step` further on (and the
    grading run's seed, if any, the same): for a make that draws from two seeds, SEED and SEED + 1."""
    entropy = rng.bit_generator.seed_seq.entropy
    return np.random.default_rng(entropy + step if np.isscalar(entropy) else [entropy[0] + step, *entropy[1:]])


def matches_nearest_code(what, name=cases.RESULT, x="x"):
    """A judge: the output `name`, the codes of input `x`, are each one's nearest code."""
    def judge(inputs, outputs):
        fmt = fmt_of(inputs)
        grading.assert_array_matches(output(outputs, name), nearest_code(inputs[x], fmt), inputs=inputs[x],
                                     what=what.format(fmt=fmt.name))
    return judge


# -- fp8_to_float32_bits ----------------------------------------------------------------------------


def all_codes(fmt):
    return lambda rng: {"codes": np.arange(256, dtype=np.uint8), "fmt": fmt.name}


def decodes_as_ml_dtypes(inputs, outputs):
    fmt, codes = fmt_of(inputs), inputs["codes"]
    ref = codes.view(fmt.ml_dtype).astype(np.float32)
    grading.assert_array_matches(output(outputs), ref, inputs=codes, what=f"decoded {fmt.name} value")


def e4m3_nan_codes(inputs, outputs):
    values = output(outputs)
    assert not np.isinf(values).any(), f"infinite codes: {[hex(c) for c in np.flatnonzero(np.isinf(values))]}"
    nans = [hex(c) for c in np.flatnonzero(np.isnan(values))]
    assert nans == ["0x7f", "0xff"], f"NaN codes: {nans}, expected ['0x7f', '0xff']"


def e5m2_infinities_and_nan_codes(inputs, outputs):
    values = output(outputs)
    assert values[0x7C] == np.inf and values[0xFC] == -np.inf, f"0x7c -> {values[0x7C]}, 0xfc -> {values[0xFC]}"
    nans = [hex(c) for c in np.flatnonzero(np.isnan(values))]
    assert nans == ["0x7d", "0x7e", "0x7f", "0xfd", "0xfe", "0xff"], f"NaN codes: {nans}"


def device_decodes_as_ml_dtypes(inputs, outputs):
    codes = inputs["codes"]
    for fmt in FORMATS:
        want = codes.view(fmt.ml_dtype).astype(np.float32)
        grading.assert_array_matches(output(outputs, fmt.name), want, inputs=codes,
                                     what=f"decode_{fmt.name} in a kernel")


DECODING = [
    *(Case(DECODE, f"every one of the 256 codes decodes to the value ml_dtypes gives it ({fmt.name})",
           all_codes(fmt), "harness_ch00:decode", decodes_as_ml_dtypes) for fmt in FORMATS),
    Case(DECODE, "E4M3 has no infinity: only 0x7f and 0xff are NaN, and 0x7e is 448",
         lambda rng: {"fmt": "e4m3"}, "harness_ch00:representable_values", e4m3_nan_codes),
    Case(DECODE, "E5M2 is IEEE-like: 0x7c and 0xfc are +-inf, and the six codes above them NaN",
         lambda rng: {"fmt": "e5m2"}, "harness_ch00:representable_values", e5m2_infinities_and_nan_codes),
    Case(DECODE, "decode_e4m3 and decode_e5m2 inside a kernel, on all 256 codes",
         lambda rng: {"codes": np.arange(256, dtype=np.uint8), "blocks": 8, "threads": 32},
         "harness_ch00:device_decoders", device_decodes_as_ml_dtypes),
]


# -- round_bits_to_fp8 ------------------------------------------------------------------------------


def hard(fmt):
    return lambda rng: {"x": hard_cases(fmt), "fmt": fmt.name}


def matches_ml_dtypes_and_nearest_code(inputs, outputs):
    fmt, x, got = fmt_of(inputs), inputs["x"], output(outputs)
    grading.assert_array_matches(got, ml_dtypes_codes(x, fmt), inputs=x, what=f"{fmt.name} code")
    grading.assert_array_matches(got, nearest_code(x, fmt), inputs=x, what=f"{fmt.name} code")


def midpoints(fmt):
    def make(rng):
        values, _ = finite_positive_values(fmt)
        return {"x": ((values[:-1] + values[1:]) / 2).astype(np.float32), "fmt": fmt.name}
    return make


def ties_to_even(inputs, outputs):
    fmt, mids = fmt_of(inputs), inputs["x"]
    _, codes = finite_positive_values(fmt)
    even = np.where(codes[:-1] % 2 == 0, codes[:-1], codes[1:])
    grading.assert_array_matches(output(outputs), even, inputs=mids, what=f"{fmt.name} code of a midpoint")


def e4m3_subnormals(rng):
    # 1.5 and 2.5 smallest subnormals are ties: to 2 and 2 (even), not 2 and 3;
    # half the smallest subnormal is a tie between 0 and 1: to 0; a bit above goes to 1
    half = np.float32(2.0**-10)
    return {"subnormals": (np.arange(8) * 2.0**-9).astype(np.float32),
            "ties": np.float32([1.5 * 2**-9, 2.5 * 2**-9, half, np.nextafter(half, np.float32(1))]), "fmt": "e4m3"}


def subnormal_codes(inputs, outputs):
    x = inputs["subnormals"]
    grading.assert_array_matches(output(outputs, "subnormals"), np.arange(8).astype(np.uint8), inputs=x,
                                 what="subnormal code")
    x = inputs["ties"]
    grading.assert_array_matches(output(outputs, "ties"), np.uint8([2, 2, 0, 1]), inputs=x,
                                 what="code of a tie between subnormals")


def random_bit_patterns(n, fmt=None):
    def make(rng):
        return {"x": random_float32(rng, n), **({} if fmt is None else {"fmt": fmt.name})}
    return make


def matches_ml_dtypes(inputs, outputs):
    fmt, x = fmt_of(inputs), inputs["x"]
    grading.assert_array_matches(output(outputs), ml_dtypes_codes(x, fmt), inputs=x, what=f"{fmt.name} code")


def all_float16(fmt):
    return lambda rng: {"x": np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16), "fmt": fmt.name}


def float64_inputs(fmt):
    def make(rng):
        # Just below an FP8 midpoint, float64 -> float32 would land on the midpoint itself and
        # then round to even: double rounding. (ml_dtypes does exactly that.)
        values, _ = finite_positive_values(fmt)
        below = np.nextafter((values[:-1] + values[1:]) / 2, 0.0)
        x = rng.standard_normal(10**5) * 10.0 ** next_generator(rng).integers(-8, 6, 10**5)
        return {"below": below, "x": x, "fmt": fmt.name}
    return make


def float64_codes(inputs, outputs):
    fmt = fmt_of(inputs)
    below, x = inputs["below"], inputs["x"]
    grading.assert_array_matches(output(outputs, "below"), nearest_code(below, fmt), inputs=below,
                                 what=f"{fmt.name} code of a float64 just below a midpoint")
    grading.assert_array_matches(output(outputs, "x"), nearest_code(x, fmt), inputs=x, what=f"{fmt.name} code")


def device_encodes_as_nearest_code(inputs, outputs):
    """Each device encoder's codes are the host encoder's: the nearest code (float32 input)."""
    x = inputs["x"]
    for fmt in FORMATS:
        grading.assert_array_matches(output(outputs, fmt.name), nearest_code(x, fmt), inputs=x,
                                     what=f"encode_{fmt.name} in a kernel")


ROUNDING = [
    *(Case(ROUND, f"every FP8 value, every midpoint between two, and the float32 neighbours of both ({fmt.name})",
           hard(fmt), "harness_ch00:encode", matches_ml_dtypes_and_nearest_code) for fmt in FORMATS),
    *(Case(ROUND, f"exact midpoints between two FP8 values round to the one with an even code ({fmt.name})",
           midpoints(fmt), "harness_ch00:encode", ties_to_even) for fmt in FORMATS),
    Case(ROUND, "subnormals: k * 2^-9 is code k; ties between them go to even; 2^-10 rounds to 0",
         e4m3_subnormals, "harness_ch00:encode_each", subnormal_codes),
    *(Case(ROUND, f"a million random float32 bit patterns, NaN, inf and every exponent among them ({fmt.name})",
           random_bit_patterns(10**6, fmt), "harness_ch00:encode", matches_ml_dtypes, seed=11) for fmt in FORMATS),
    *(Case(ROUND, f"all 65536 float16 values, rounded from their own bits ({fmt.name})",
           all_float16(fmt), "harness_ch00:encode", matches_nearest_code("{fmt} code")) for fmt in FORMATS),
    *(Case(ROUND, f"float64 values just below a midpoint round down: no detour through float32 ({fmt.name})",
           float64_inputs(fmt), "harness_ch00:encode_each", float64_codes, seed=5) for fmt in FORMATS),
    Case(ROUND, "encode_e4m3 and encode_e5m2 inside a kernel, on every value, midpoint and neighbour",
         lambda rng: {"x": np.concatenate([hard_cases(fp8.E4M3), hard_cases(fp8.E5M2)])},
         "harness_ch00:device_encoders", device_encodes_as_nearest_code),
    Case(ROUND, "encode_e4m3 and encode_e5m2 inside a kernel, on a million random float32 patterns",
         random_bit_patterns(10**6), "harness_ch00:device_encoders", device_encodes_as_nearest_code, seed=12),
]

CASES = DECODING + ROUNDING


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """A graded case of chapter 00: its inputs, the learner's outputs, judged (see the case's id)."""
    cases.check(case)
