"""Chapter 01's hidden graded tests: warp_max, block_max and absmax_kernel on inputs the visible
tests (tests/test_reduction.py) do not use.

Other block sizes (128 and 160 threads: a number of warps that is no power of two), other grid
sizes, maxima that are negative or infinite, blocks of -inf only, subnormals: an answer tuned to
the visible tests (one that starts from 0, pads with 0, or assumes 3 blocks of 64 threads) does
not pass them. The instructor's grading runs them; a release leaves this file out.
"""

import numpy as np
import pytest
from numba import cuda

from tutorial.course import grading

from tutorial import reduction as red  # the library, or chapter 01's exercise file under --impl exercise
from test_reduction import reference_absmax

pytestmark = [pytest.mark.chapter("01"), pytest.mark.hidden]
NEG_INF = np.float32(-np.inf)


def per_group_max(x, size):
    """Each run of `size` values' maximum (NaN if the run holds one), repeated for every value of it."""
    return np.repeat(np.max(x.reshape(-1, size), axis=1), size)


# -- warp_max --------------------------------------------------------------------------------------


@cuda.jit
def warp_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.warp_max(x[i])


def warp_cases():
    """(id, 32 values of one warp)."""
    lane_31 = np.full(32, NEG_INF)
    lane_31[31] = -5.0  # the maximum is negative: a reduction that starts from 0 gives 0
    ladder = np.nextafter(np.float32(1.0), np.float32(2.0)) - np.arange(32, dtype=np.float32) * np.float32(2.0**-23)
    ladder = np.roll(ladder, 13)  # values one float32 ulp apart; the largest in lane 13
    plus_inf = -np.abs(np.random.default_rng(31).standard_normal(32)).astype(np.float32)
    plus_inf[0] = np.inf
    return [("maximum -5 in lane 31, the rest -inf", lane_31), ("every lane -inf", np.full(32, NEG_INF)),
            ("+inf in lane 0, the rest negative", plus_inf), ("values one ulp apart, the largest in lane 13", ladder)]


@pytest.mark.graded("warp_max")
@pytest.mark.parametrize("x", [pytest.param(x, id=name) for name, x in warp_cases()])
def test_warp_max_of_negative_infinite_and_one_ulp_apart_values(x):
    """Two warps: the values, and the same values in reverse lane order; every lane gets its warp's maximum."""
    both = np.concatenate([x, x[::-1]]).astype(np.float32)
    out = np.full(64, 7.0, np.float32)  # poisoned: 7 is no input's maximum
    warp_max_kernel[1, 64](both, out)
    grading.assert_array_matches(out, per_group_max(both, 32), inputs=both, what="warp_max on each lane")


@pytest.mark.graded("warp_max")
def test_warp_max_in_ten_warps_keeps_a_nan_inside_its_own_warp():
    """2 blocks of 160 threads (10 warps), each maximum in another lane; a NaN in warp 7's lane 31 stays in warp 7."""
    x = -np.abs(np.random.default_rng(32).standard_normal(320)).astype(np.float32) - 1
    for w in range(10):
        x[32 * w + (7 * w + 3) % 32] = -0.5 * w  # warp w's maximum, negative but for warp 0
    x[32 * 7 + 31] = np.nan
    out = np.zeros(320, np.float32)
    warp_max_kernel[2, 160](x, out)
    grading.assert_array_matches(out, per_group_max(x, 32), inputs=x, what="warp_max on each lane")


# -- block_max -------------------------------------------------------------------------------------


@cuda.jit
def block_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.block_max(x[i])


@cuda.jit
def block_max_twice_kernel(x, first, second):
    """block_max twice in a row, on x and on -x: the second must not see the first's partials."""
    i = cuda.grid(1)
    first[i] = red.block_max(x[i])
    second[i] = red.block_max(-x[i])


@pytest.mark.graded("block_max")
@pytest.mark.parametrize("threads", [128, 160, 1024], ids=lambda n: f"{n} threads ({n // 32} warps)")
def test_block_max_with_4_5_and_32_warps_per_block(threads):
    """Two blocks of negative values: block 0's maximum in its last thread (last warp), block 1's in its thread 0."""
    x = -np.abs(np.random.default_rng(threads).standard_normal(2 * threads)).astype(np.float32) - 1
    x[threads - 1] = -0.25  # block 0: the last warp, its last lane
    x[threads] = -0.75  # block 1: thread 0
    out = np.zeros(2 * threads, np.float32)
    block_max_kernel[2, threads](x, out)
    grading.assert_array_matches(out, per_group_max(x, threads), inputs=x, what=f"block_max with {threads} threads")


@pytest.mark.graded("block_max")
def test_block_max_of_minus_infinities_and_a_nan_in_the_fifth_warp():
    """Blocks of 160 threads: block 0 all -inf (the result is -inf, not 0); block 1 all -inf but a NaN in thread 159."""
    x = np.full(320, NEG_INF)
    x[319] = np.nan
    out = np.zeros(320, np.float32)
    block_max_kernel[2, 160](x, out)
    grading.assert_array_matches(out, per_group_max(x, 160), inputs=x, what="block_max with 160 threads")


@pytest.mark.graded("block_max")
def test_block_max_twice_in_a_row_on_x_and_minus_x():
    """One block of 96 threads calls block_max on x, then on -x: the second call gets -min(x), not max(x)."""
    x = np.random.default_rng(33).standard_normal(96).astype(np.float32)
    x[50], x[95] = 4.0, -6.0
    first, second = np.zeros(96, np.float32), np.zeros(96, np.float32)
    block_max_twice_kernel[1, 96](x, first, second)
    grading.assert_array_matches(first, per_group_max(x, 96), inputs=x, what="the first block_max")
    grading.assert_array_matches(second, per_group_max(-x, 96), inputs=-x, what="the second block_max (on -x)")


# -- absmax_kernel ---------------------------------------------------------------------------------


def kernel_absmax(x, blocks, threads):
    """absmax_kernel itself, on `blocks` blocks of `threads` threads, into a poisoned output."""
    d = cuda.to_device(np.ascontiguousarray(x).reshape(-1))
    partials = cuda.device_array(blocks, np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.to_device(np.full(1, -1.0, np.float32))  # poisoned: a kernel that writes nothing fails
    red.absmax_kernel[blocks, threads](d, partials, counter, out)
    assert counter.copy_to_host()[0] == 0, "the counter must be back at 0 for the next launch"
    return np.float32(out.copy_to_host()[0])


def assert_same_bits(got, x):
    want = reference_absmax(x)
    assert got.tobytes() == want.tobytes(), f"expected {want!r} (bits {want.view(np.uint32):#010x}), got {got!r}"


@pytest.mark.graded("absmax_kernel")
@pytest.mark.parametrize("n, blocks, threads", [(1, 2, 64), (33, 5, 32), (5000, 4, 64)],
                         ids=["1 element, 2 blocks", "33 elements, 5 blocks of 32", "5000 elements, 4 blocks"])
def test_absmax_with_the_largest_magnitude_in_the_first_element(n, blocks, threads):
    """The largest magnitude (-2.5e37) in element 0; blocks with nothing to read must still join in."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    x[0] = -2.5e37
    assert_same_bits(kernel_absmax(x, blocks, threads), x)


@pytest.mark.graded("absmax_kernel")
def test_absmax_of_minus_infinities_only_is_infinity():
    """70 values, all -inf: |x| is +inf everywhere, so the result is +inf."""
    x = np.full(70, NEG_INF)
    assert_same_bits(kernel_absmax(x, 3, 64), x)


@pytest.mark.graded("absmax_kernel")
def test_absmax_of_float32_subnormals_keeps_their_bits():
    """300 subnormal float32 values (below 2^-126), both signs, the largest magnitude negative: exact bits."""
    rng = np.random.default_rng(34)
    bits = rng.integers(1, 2**23, 300).astype(np.uint32) | (rng.integers(0, 2, 300).astype(np.uint32) << 31)
    bits[123] = 0x807FFFFF  # -(the largest subnormal)
    x = bits.view(np.float32)
    assert_same_bits(kernel_absmax(x, 2, 64), x)
