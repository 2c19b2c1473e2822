"""Chapter 02's hidden graded cases: pack4 and the vectorized per-tensor kernel on inputs the
visible cases (tests/test_graded_ch02.py) do not use.

Codes with the high bit of the word set, many words over several blocks, a grid-stride loop
whose last trip is partial, a tensor that is NaN but for one value, bfloat16 input, static
power-of-two scales with quotients exactly on FP8 midpoints: an answer tuned to the visible
cases does not pass them. Every input here takes the vectorized kernel (float32 or bfloat16,
a multiple of 4 elements). The instructor's grading runs them; a release leaves this file out.
"""

import ml_dtypes
import numpy as np
import pytest

from tutorial import fp8
from tutorial.course import cases
from tutorial.course.cases import Case, output

from test_graded_ch02 import KERNEL, bfloat16_bits, fmt_index, matches_reference, packed_words
from test_per_tensor import hostile

pytestmark = [pytest.mark.chapter("02"), pytest.mark.hidden]


# -- pack4 ------------------------------------------------------------------------------------------


def codes(values, blocks=1, threads=32):
    return lambda rng: {"codes": np.asarray(values, np.uint8), "blocks": blocks, "threads": threads}


PACK4_CODES = [
    ("all codes 0xff", np.full(12, 0xFF, np.uint8)),
    ("the high byte set: bit 31", np.uint8([0, 0, 0, 0x80, 0, 0, 0, 0xFF, 0x80, 0x80, 0x80, 0x80])),
    ("a single 1 in each byte in turn", np.uint8([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])),
]


def random_codes(rng):
    return {"codes": rng.integers(0, 256, 384).astype(np.uint8), "blocks": 3, "threads": 32}


# -- per_tensor_kernel_vec4 -------------------------------------------------------------------------


def grid_stride(fmt):
    return lambda rng: {"x": hostile((4112,), rng), "fmt": fmt_index(fmt)}


def all_nan_but_one(rng):
    x = np.full(1024, np.nan, np.float32)
    x[777] = -3.5
    return {"x": x, "fmt": fmt_index("e4m3")}


def minus_448_at_777(inputs, outputs):
    matches_reference(inputs, outputs)
    code = output(outputs, "codes")[777]
    assert code == 0xFE, f"code of -3.5: {code:#04x}, expected 0xfe (-448)"


def bfloat16_input(scale):
    def make(rng):
        x = hostile((6, 38), rng).astype(ml_dtypes.bfloat16)  # 228 values: 4 per load, not the library's 8
        return {"bits": bfloat16_bits(x), "fmt": fmt_index("e4m3"), **({} if scale is None else {"scale": scale})}
    return make


def fp8_midpoints(rng):
    fmt = fp8.E5M2
    values = np.arange(0x80, dtype=np.uint8).view(fmt.ml_dtype).astype(np.float64)
    values = values[np.isfinite(values)]
    mids = (values[:-1] + values[1:]) / 2  # 123 midpoints
    exact = np.concatenate([mids, -mids[:116], [1.5 * fmt.max]]).reshape(2, 3, 40)  # 1.5 * max: saturates
    x = (exact * 2.0**-10).astype(np.float32)
    assert (x.astype(np.float64) == exact * 2.0**-10).all(), "the inputs must be exact for the quotients to be ties"
    return {"x": x, "fmt": fmt_index("e5m2"), "scale": 2.0**-10}


CASES = [
    *(Case("pack4", f"{shows}: each word is the codes' little-endian uint32", codes(values),
           "harness_ch02:pack4_words", packed_words) for shows, values in PACK4_CODES),
    Case("pack4", "384 random codes, 96 words, packed by 3 blocks of 32 threads in a grid-stride loop", random_codes,
         "harness_ch02:pack4_words", packed_words, seed=200),
    *(Case(KERNEL, f"4112 values (1028 words), {fmt}: the grid's threads cover 256 words a trip, so the last trip "
           "holds only 4 words", grid_stride(fmt), "harness_ch02:quantize", matches_reference, seed=201)
      for fmt in ("e4m3", "e5m2")),
    Case(KERNEL, "1024 NaNs and one -3.5 (element 777): the scale comes from 3.5 alone; NaN codes 0x7f, and -3.5 "
         "becomes -448", all_nan_but_one, "harness_ch02:quantize", minus_448_at_777),
    Case(KERNEL, "a (6, 38) bfloat16 tensor (8-byte loads of 4 values), dynamic scale: quantizes like its exact "
         "float32 value", bfloat16_input(None), "harness_ch02:quantize_bfloat16", matches_reference, seed=202),
    Case(KERNEL, "a (6, 38) bfloat16 tensor (8-byte loads of 4 values), static scale 0.05: quantizes like its exact "
         "float32 value", bfloat16_input(0.05), "harness_ch02:quantize_bfloat16_static", matches_reference, seed=202),
    Case(KERNEL, "a (2, 3, 40) tensor of E5M2 midpoints times 2^-10 with the static scale 2^-10: every quotient an "
         "exact tie", fp8_midpoints, "harness_ch02:quantize_static", matches_reference),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """What the case's input shows is its id (tutorial.course.cases)."""
    cases.check(case)
