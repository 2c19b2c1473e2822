"""Chapter 01's hidden graded cases: warp_max, block_max and absmax_kernel on inputs the visible
cases (tests/test_graded_ch01.py) do not use.

Other block sizes (128 and 160 threads: a number of warps that is no power of two), other grid
sizes, maxima that are negative or infinite, blocks of -inf only, subnormals: an answer tuned to
the visible cases (one that starts from 0, pads with 0, or assumes 3 blocks of 64 threads) does
not pass them. The instructor's grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest

from tutorial.course import cases, grading
from tutorial.course.cases import Case, output

from test_graded_ch01 import NEG_INF, absmax_bits, absmax_inputs, each_gets_its_group_max

pytestmark = [pytest.mark.chapter("01"), pytest.mark.hidden]


def warp_cases():
    """(what it shows, 32 values of one warp)."""
    def lane_31(rng):
        x = np.full(32, NEG_INF)
        x[31] = -5.0  # the maximum is negative: a reduction that starts from 0 gives 0
        return x

    def ladder(rng):  # values one float32 ulp apart; the largest in lane 13
        x = np.nextafter(np.float32(1.0), np.float32(2.0)) - np.arange(32, dtype=np.float32) * np.float32(2.0**-23)
        return np.roll(x, 13)

    def plus_inf(rng):
        x = -np.abs(rng.standard_normal(32)).astype(np.float32)
        x[0] = np.inf
        return x

    return [("maximum -5 in lane 31, the rest -inf", lane_31), ("every lane -inf", lambda rng: np.full(32, NEG_INF)),
            ("+inf in lane 0, the rest negative", plus_inf), ("values one ulp apart, the largest in lane 13", ladder)]


def both_orders(values):
    """Two warps: the values, and the same values in reverse lane order."""
    def make(rng):
        x = values(rng).astype(np.float32)
        return {"x": np.concatenate([x, x[::-1]]), "blocks": 1}
    return make


def ten_warps_with_a_nan(rng):
    x = -np.abs(rng.standard_normal(320)).astype(np.float32) - 1
    for w in range(10):
        x[32 * w + (7 * w + 3) % 32] = -0.5 * w  # warp w's maximum, negative but for warp 0
    x[32 * 7 + 31] = np.nan
    return {"x": x, "blocks": 2}


def negative_blocks(threads, blocks):
    def make(rng):
        x = -np.abs(rng.standard_normal(blocks * threads)).astype(np.float32) - 1
        x[threads - 1] = -0.25  # block 0: the last warp, its last lane
        x[threads % x.size] = -0.75  # block 1: thread 0 (or block 0's thread 0)
        return {"x": x, "blocks": blocks}
    return make


def minus_infinities_and_a_nan(rng):
    x = np.full(320, NEG_INF)
    x[319] = np.nan
    return {"x": x, "blocks": 2}


def x_then_minus_x(rng):
    x = rng.standard_normal(96).astype(np.float32)
    x[50], x[95] = 4.0, -6.0
    return {"x": x}


def twice_judge(inputs, outputs):
    x = inputs["x"]
    grading.assert_array_matches(output(outputs, "first"), np.repeat(x.max(), x.size), inputs=x,
                                 what="the first block_max")
    grading.assert_array_matches(output(outputs, "second"), np.repeat((-x).max(), x.size), inputs=-x,
                                 what="the second block_max (on -x)")


def largest_first(n, blocks, threads):
    def make(rng):
        x = rng.standard_normal(n).astype(np.float32)
        x[0] = -2.5e37
        return absmax_inputs(x, blocks, threads)
    return make


def subnormals(rng):
    bits = rng.integers(1, 2**23, 300).astype(np.uint32) | (rng.integers(0, 2, 300).astype(np.uint32) << 31)
    bits[123] = 0x807FFFFF  # -(the largest subnormal)
    return absmax_inputs(bits.view(np.float32), 2, 64)


CASES = [
    *(Case("warp_max", f"two warps, the second in reverse lane order: {shows}", both_orders(values),
           "harness_ch01:warp_max_lanes", each_gets_its_group_max(32, "warp_max on each lane"), seed=31)
      for shows, values in warp_cases()),
    Case("warp_max", "2 blocks of 160 threads (10 warps), each maximum in another lane; a NaN in warp 7's lane 31 "
         "stays in warp 7", ten_warps_with_a_nan, "harness_ch01:warp_max_lanes",
         each_gets_its_group_max(32, "warp_max on each lane"), seed=32),
    *(Case("block_max", f"two blocks of {threads} threads ({threads // 32} warps), negative values: block 0's "
           "maximum in its last thread, block 1's in its thread 0", negative_blocks(threads, 2),
           "harness_ch01:block_max_threads", each_gets_its_group_max(threads, f"block_max with {threads} threads"),
           seed=threads) for threads in (128, 160)),
    # One block of the most threads a block can have: 32 warps, 32 partials (the simulator runs a
    # Python thread per CUDA thread: a second block would double the case's 15 CPU seconds).
    Case("block_max", "one block of 1024 threads (32 warps), negative values, the maximum in its last thread",
         negative_blocks(1024, 1), "harness_ch01:block_max_threads",
         each_gets_its_group_max(1024, "block_max with 1024 threads"), seed=1024),
    Case("block_max", "blocks of 160 threads: block 0 all -inf (the result is -inf, not 0); block 1 all -inf but a "
         "NaN in thread 159", minus_infinities_and_a_nan, "harness_ch01:block_max_threads",
         each_gets_its_group_max(160, "block_max with 160 threads")),
    Case("block_max", "one block of 96 threads calls block_max on x, then on -x: the second call gets -min(x)",
         x_then_minus_x, "harness_ch01:block_max_twice", twice_judge, seed=33),
    *(Case("absmax_kernel", f"the largest magnitude (-2.5e37) in element 0 of {n}, {blocks} blocks of {threads}: "
           "blocks with nothing to read must still join in", largest_first(n, blocks, threads), "harness_ch01:absmax",
           absmax_bits, seed=n) for n, blocks, threads in [(1, 2, 64), (33, 5, 32), (5000, 4, 64)]),
    Case("absmax_kernel", "70 values, all -inf: |x| is +inf everywhere, so the result is +inf",
         lambda rng: absmax_inputs(np.full(70, NEG_INF), 3, 64), "harness_ch01:absmax", absmax_bits),
    Case("absmax_kernel", "300 subnormal float32 values (below 2^-126), both signs, the largest magnitude negative: "
         "exact bits", subnormals, "harness_ch01:absmax", absmax_bits, seed=34),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_hidden(case):
    cases.check(case)
