"""Chapter 06's hidden graded cases: more descriptors (every swizzle mode, the largest fields),
fragments of other widths, and wgmma GEMMs of other shapes and scales. Not in a student
edition: the class autograder runs them beside the visible ones."""

import numpy as np
import pytest

from tutorial.course import cases
from tutorial.course.cases import Case

from test_graded_ch06 import exact_product, fields, mma_c_layout_per_warp, placed_by_hand, small_integer_operands, width

pytestmark = [pytest.mark.chapter("06"), pytest.mark.hidden]

LARGEST = (1 << 18) - 16  # the largest address or offset 14 bits of 16-byte units hold

CASES = [
    Case("descriptor", "every swizzle mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte) on one tile: the mode goes in "
         "bits 62-63 and nowhere else", fields((2048, 16, 1024, 0), (2048, 16, 1024, 1), (2048, 16, 1024, 2),
                                               (2048, 16, 1024, 3)), "harness_ch06:descriptors", placed_by_hand),
    Case("descriptor", "the largest fields: 14 bits of address, LBO and SBO each, none spilling into its neighbour",
         fields((LARGEST, LARGEST, LARGEST, 3), (LARGEST, 16, 16, 0), (16, LARGEST, 16, 0), (16, 16, LARGEST, 0)),
         "harness_ch06:descriptors", placed_by_hand),
    *(Case("fragment_d", f"D 64 x {n}: {n // 8} pieces of 8 columns, {n // 2} registers a thread", width(n),
           "harness_ch06:fragment_places", mma_c_layout_per_warp) for n in (16, 256)),
    Case("fragment_d", "a wgmma GEMM with one K-block cut short (K = 136) and 130 rows: two partial warpgroup tiles",
         small_integer_operands(130, 136, 40), "harness_ch06:wgmma_gemm", exact_product, seed=600),
    Case("fragment_d", "a wgmma GEMM 5 x 40 @ 40 x 9: less than one instruction's rows, columns and K",
         small_integer_operands(5, 40, 9), "harness_ch06:wgmma_gemm", exact_product, seed=601),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    """Chapter 06's hidden graded case `case`: draw its inputs, run its harness, judge the outputs."""
    cases.check(case)
