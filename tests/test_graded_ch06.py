"""Chapter 06's graded cases: descriptor and fragment_d (which builds on descriptor: the GEMM
cases need both).

Each case draws its inputs, names the harness (tests/harness_ch06.py) that runs the learner's
code on them, and judges the outputs (see tutorial.course.cases): the descriptors bit by bit
against the fields placed by hand, the fragment against mma.sync's C layout repeated per warp
and per 8 columns, and a whole wgmma GEMM on small-integer codes, exact.
"""

import numpy as np
import pytest

from tutorial.course import cases, grading
from tutorial.course.cases import Case, output
from tutorial.gemm import mma

pytestmark = pytest.mark.chapter("06")


def fields(*rows):
    """Inputs of the descriptors harness: one (address, lbo, sbo, swizzle) per row."""
    def make(rng):
        address, lbo, sbo, swizzle = (np.array(column, np.int64) for column in zip(*rows))
        return {"address": address, "lbo": lbo, "sbo": sbo, "swizzle": swizzle}
    return make


def placed_by_hand(inputs, outputs):
    """Each field at its bit: address / 16 from bit 0, lbo / 16 from 16, sbo / 16 from 32, the
    swizzle mode from 62 (2^k for bit k: no shifts in the judge)."""
    want = [int(a) // 16 + int(l) // 16 * 2**16 + int(s) // 16 * 2**32 + int(w) * 2**62
            for a, l, s, w in zip(inputs["address"], inputs["lbo"], inputs["sbo"], inputs["swizzle"])]
    grading.assert_array_matches(output(outputs), np.array(want, np.uint64), what="descriptor bits by case")


DESCRIPTORS = [
    Case("descriptor", "the descriptors of chapter 06's first kernel, no swizzle: A's tile at 0 and its k32 steps "
         "(LBO 128 along K, SBO 1024 between 8-row groups)", fields((0, 128, 1024, 0), (256, 128, 1024, 0),
                                                                   (512, 128, 1024, 0), (8192, 128, 1024, 0)),
         "harness_ch06:descriptors", placed_by_hand),
    Case("descriptor", "the fast kernel's 128-byte-swizzled tiles: mode 1, SBO 1024, LBO 16, addresses anywhere in "
         "shared memory", fields((1024, 16, 1024, 1), (1056, 16, 1024, 1), (0x2A000, 16, 1024, 1),
                                 (0x3FFF0, 16, 1024, 1)), "harness_ch06:descriptors", placed_by_hand),
]


def width(n):
    return lambda rng: {"n": np.array([n], np.int64)}


def mma_c_layout_per_warp(inputs, outputs):
    """Warp w's 16 rows start at 16w; in each 8-column piece p, lane holds mma.sync's C
    fragment (mma.fragment_c), registers 4p .. 4p + 3."""
    n = int(inputs["n"][0])
    want = np.array([[(16 * (t // 32) + row, 8 * p + col) for p in range(n // 8) for row, col in mma.fragment_c(t % 32)]
                     for t in range(128)], np.int64)
    grading.assert_array_matches(output(outputs), want, what="(row, column) of D by [thread, register]")


FRAGMENTS = [
    Case("fragment_d", "D 64 x 8: one m16n8 piece per warp, warp w's rows 16w to 16w + 15", width(8),
         "harness_ch06:fragment_places", mma_c_layout_per_warp),
    Case("fragment_d", "D 64 x 128, the fast kernel's width: 16 pieces of 8 columns, 64 registers a thread", width(128),
         "harness_ch06:fragment_places", mma_c_layout_per_warp),
]


CODE_OF = {-4: 0xC8, -3: 0xC4, -2: 0xC0, -1: 0xB8, 0: 0x00, 1: 0x38, 2: 0x40, 3: 0x44, 4: 0x48}  # E4M3, by hand
E4M3_OF = {code: float(value) for value, code in CODE_OF.items()}


def small_integer_operands(m, k, n):
    """e4m3 codes of -4 .. 4 with power-of-two scales, 1x128 / 128x128: every product and sum exact."""
    def make(rng):
        values = np.arange(-4, 5, dtype=np.float32)
        pick = np.vectorize(lambda v: CODE_OF[int(v)])
        return {"a_codes": pick(rng.choice(values, (m, k))).astype(np.uint8),
                "a_scales": rng.choice([0.5, 1.0, 2.0], (m, -(-k // 128))).astype(np.float32),
                "a_block": np.array([1, 128]),
                "b_codes": pick(rng.choice(values, (k, n))).astype(np.uint8),
                "b_scales": rng.choice([0.25, 1.0, 4.0], (-(-k // 128), -(-n // 128))).astype(np.float32),
                "b_block": np.array([128, 128])}
    return make




def exact_product(inputs, outputs):
    """The float64 product of the dequantized operands, rounded once to float32: with these
    codes and scales every partial sum is exact, so the GEMM must give it bit for bit."""
    def dequantized(x, block):
        values = np.vectorize(E4M3_OF.__getitem__)(inputs[f"{x}_codes"]).astype(np.float64)
        scales = np.repeat(np.repeat(inputs[f"{x}_scales"], block[0], 0), block[1], 1)[:values.shape[0], :values.shape[1]]
        return values * scales
    a = dequantized("a", inputs["a_block"])
    b = dequantized("b", inputs["b_block"])
    grading.assert_array_matches(output(outputs), (a @ b).astype(np.float32), what="C by [row, column]")


GEMMS = [
    Case("fragment_d", "a whole wgmma GEMM, 70 x 300 @ 300 x 24 on small-integer codes (tails in M, N and K): each "
         "thread's registers land where fragment_d says", small_integer_operands(70, 300, 24),
         "harness_ch06:wgmma_gemm", exact_product, seed=6),
    Case("fragment_d", "a whole wgmma GEMM, 64 x 256 @ 256 x 16: the instruction reads A and B through "
         "descriptor's bits, and fragment_d places D", small_integer_operands(64, 256, 16), "harness_ch06:wgmma_gemm",
         exact_product, seed=7),
]

CASES = DESCRIPTORS + FRAGMENTS + GEMMS


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """Chapter 06's graded case `case`: draw its inputs, run its harness, judge the outputs."""
    cases.check(case)
