"""Chapter 01's graded cases: warp_max, block_max and absmax_kernel.

Each case draws its inputs, names the harness (tests/harness_ch01.py) that runs the learner's
code on them, and judges the outputs against numpy (see tutorial.course.cases). Shapes stay
small: on the simulator every shuffle is a rendezvous of 32 Python threads.
"""

import numpy as np
import pytest

from tutorial import reduction as red
from tutorial.course import cases, grading
from tutorial.course.cases import Case, output

pytestmark = pytest.mark.chapter("01")
NEG_INF = np.float32(-np.inf)


def reference_absmax(x):
    """The spec: np.max(np.abs(x)) in float32 (NaN propagates, -0.0 counts as 0)."""
    return np.max(np.abs(np.asarray(x, np.float32)))


def group_maxima(x, size):
    """Each run of `size` values' maximum (NaN if the run holds one), repeated for every value of it."""
    return np.repeat(np.max(x.reshape(-1, size), axis=1), size)


def each_gets_its_group_max(size, what):
    """A judge: every thread's output is the maximum of its group of `size` inputs."""
    def judge(inputs, outputs):
        x = inputs["x"]
        grading.assert_array_matches(output(outputs), group_maxima(x, size), inputs=x, what=what)
    return judge


def all_nan(what):
    def judge(inputs, outputs):
        out = output(outputs)
        assert np.isnan(out).all(), f"{what} without NaN: {np.flatnonzero(~np.isnan(out)).tolist()}"
    return judge


def absmax_bits(inputs, outputs):
    """absmax_kernel's result has numpy's bits (any NaN where numpy's is NaN: a GPU's NaN has
    other bits than numpy's), and it leaves its counter at 0."""
    assert (output(outputs, "counter") == 0).all(), "the counter must be back at 0 for the next launch"
    want = reference_absmax(inputs["x"])
    for got in np.atleast_1d(output(outputs)).astype(np.float32):
        if np.isnan(want):
            assert np.isnan(got), f"expected nan, got {got!r}"
            continue
        assert got.tobytes() == want.tobytes(), \
            f"expected {want!r} (bits {want.view(np.uint32):#010x}), got {got!r} (bits {got.view(np.uint32):#010x})"


def absmax_inputs(x, blocks=3, threads=None, **more):
    return {"x": x, "blocks": blocks, "threads": red.THREADS if threads is None else threads, **more}


# -- warp_max -------------------------------------------------------------------------------------


def warp_max_in_lane(lane):
    def make(rng):
        x = -np.abs(rng.standard_normal(64)).astype(np.float32)
        x[lane] = 7.5  # warp 0's maximum at lane `lane`
        x[32 + (lane * 5) % 32] = 3.0  # warp 1's maximum elsewhere
        return {"x": x, "blocks": 1}
    return make


def warp_max_nan(rng):
    x = np.arange(32, dtype=np.float32)
    x[9] = np.nan
    return {"x": x, "blocks": 1}


WARP_MAX = [
    *(Case("warp_max", f"every lane of two warps gets its warp's maximum, warp 0's in lane {lane}",
           warp_max_in_lane(lane), "harness_ch01:warp_max_lanes", each_gets_its_group_max(32, "warp_max on each lane"),
           seed=lane) for lane in (0, 17, 31)),
    Case("warp_max", "a NaN in lane 9 makes every lane's maximum NaN (combine with nan_max, not max)",
         warp_max_nan, "harness_ch01:warp_max_lanes", all_nan("lanes")),
]


# -- block_max ------------------------------------------------------------------------------------


def block_max_last_thread(threads):
    def make(rng):
        x = rng.standard_normal(2 * threads).astype(np.float32)
        x[threads - 1] = 9.0  # block 0: the last thread holds the maximum
        return {"x": x, "blocks": 2}
    return make


def block_max_nan(rng):
    x = np.zeros(64, np.float32)
    x[40] = np.nan
    return {"x": x, "blocks": 1}


BLOCK_MAX = [
    *(Case("block_max", f"every thread of two blocks of {threads} threads gets its block's maximum "
           "(block 0's in its last thread)", block_max_last_thread(threads), "harness_ch01:block_max_threads",
           each_gets_its_group_max(threads, f"block_max with {threads} threads"), seed=threads)
      for threads in (32, 64, 96)),
    Case("block_max", "a NaN in warp 1 (thread 40) reaches every thread of the block, warp 0's too",
         block_max_nan, "harness_ch01:block_max_threads", all_nan("threads")),
]


# -- absmax_kernel --------------------------------------------------------------------------------


def largest_last(n):
    def make(rng):
        x = rng.standard_normal(n).astype(np.float32)
        x[-1] = -1e30  # a single huge value, negative, in the very last element
        return absmax_inputs(x)
    return make


def with_nan(rng):
    x = np.ones(2000, np.float32)
    x[1234] = np.nan
    return absmax_inputs(x)


ABSMAX = [
    *(Case("absmax_kernel", f"the largest magnitude is negative (-1e30) and the last of {n} elements",
           largest_last(n), "harness_ch01:absmax", absmax_bits, seed=n) for n in (1, 31, 1000, 4099)),
    Case("absmax_kernel", "3000 random values over 3 blocks: the same float32 bits as numpy's max(abs(x))",
         lambda rng: absmax_inputs((rng.standard_normal(3000) * 10).astype(np.float32)), "harness_ch01:absmax",
         absmax_bits, seed=3),
    Case("absmax_kernel", "one NaN among 2000 ones (element 1234) makes the result NaN", with_nan,
         "harness_ch01:absmax", absmax_bits),
    Case("absmax_kernel", "all zeros, two of them negative: the result is +0.0 (abs before max)",
         lambda rng: absmax_inputs(np.array([0.0, -0.0, -0.0], np.float32)), "harness_ch01:absmax", absmax_bits),
    Case("absmax_kernel", "a float16 array of shape (3, 5, 70): any dtype and rank, read as a flat run of values",
         lambda rng: absmax_inputs(rng.standard_normal((3, 5, 70)).astype(np.float16)), "harness_ch01:absmax",
         absmax_bits, seed=4),
    Case("absmax_kernel", "three launches on the same 5000 values give the same, right, bits (no race between blocks)",
         lambda rng: {"x": rng.standard_normal(5000).astype(np.float32), "runs": 3}, "harness_ch01:absmax_runs",
         absmax_bits, seed=5),
]

CASES = WARP_MAX + BLOCK_MAX + ABSMAX


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    cases.check(case)
