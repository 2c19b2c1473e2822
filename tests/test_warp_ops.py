"""Warp-level operations behave as on a GPU.

The same file runs on the simulator (where tutorial.runtime.simulator provides the operations) and
on a GPU (TUTORIAL_DEVICE=gpu), and must pass unchanged on both. Only the tests marked
`simulator_only` check things a GPU cannot report (it would hang or be undefined instead).
Results a GPU leaves undefined (reading a lane that does not take part) are never checked.
"""

import numpy as np
import pytest
from numba import cuda, int32

import tutorial
from tutorial.reference import blockwise_reference

FULL = 0xFFFFFFFF
simulator_only = pytest.mark.skipif(not tutorial.ON_SIMULATOR, reason="checks simulator diagnostics")


def linear_values(n, dtype=np.float32):
    return (np.arange(n) * 3 + 1).astype(dtype)


# -- shuffles: source-lane rules --------------------------------------------------------------


@cuda.jit
def shuffle_kernel(values, out, kind, operand):
    i = cuda.threadIdx.x
    v = values[i]
    if kind == 0:
        out[i] = cuda.shfl_sync(FULL, v, operand)
    elif kind == 1:
        out[i] = cuda.shfl_up_sync(FULL, v, operand)
    elif kind == 2:
        out[i] = cuda.shfl_down_sync(FULL, v, operand)
    else:
        out[i] = cuda.shfl_xor_sync(FULL, v, operand)


def expected_shuffle(values, kind, operand):
    b = operand & 31  # shfl.sync takes the operand's low 5 bits
    out = values.copy()
    for w in range(0, values.size, 32):
        for lane in range(32):
            src = {0: b, 1: lane - b, 2: lane + b, 3: lane ^ b}[kind]
            if 0 <= src < 32:
                out[w + lane] = values[w + src]
    return out


@pytest.mark.parametrize("kind, name", [(0, "shfl_sync"), (1, "shfl_up_sync"),
                                        (2, "shfl_down_sync"), (3, "shfl_xor_sync")])
@pytest.mark.parametrize("operand", [0, 1, 5, 16, 31, 33])
def test_shuffle_source_lanes(kind, name, operand):
    values = linear_values(64)
    out = np.full(64, -1, np.float32)
    shuffle_kernel[1, 64](values, out, kind, operand)
    np.testing.assert_array_equal(out, expected_shuffle(values, kind, operand), err_msg=name)


def test_shfl_down_16_returns_own_value_past_lane_31():
    values = linear_values(32)
    out = np.zeros(32, np.float32)
    shuffle_kernel[1, 32](values, out, 2, 16)
    np.testing.assert_array_equal(out[:16], values[16:])
    np.testing.assert_array_equal(out[16:], values[16:])


@cuda.jit
def shuffle_64bit_kernel(f64, i64, out_f, out_i):
    i = cuda.threadIdx.x
    out_f[i] = cuda.shfl_xor_sync(FULL, f64[i], 3)
    out_i[i] = cuda.shfl_down_sync(FULL, i64[i], 1)


def test_shuffles_move_64_bit_values_whole():
    f64 = np.arange(32) * 1.0000000001 + 2.0**40
    i64 = np.arange(32, dtype=np.int64) * (1 << 40) + 7
    out_f, out_i = np.zeros(32), np.zeros(32, np.int64)
    shuffle_64bit_kernel[1, 32](f64, i64, out_f, out_i)
    np.testing.assert_array_equal(out_f, f64[np.arange(32) ^ 3])
    np.testing.assert_array_equal(out_i, np.append(i64[1:], i64[31]))


# -- a warp-level max reduction, the pattern chapter 01 builds on ---------------------------


@cuda.jit
def warp_max_kernel(values, out):
    i = cuda.grid(1)
    v = values[i]
    offset = 16
    while offset > 0:
        v = max(v, cuda.shfl_down_sync(FULL, v, offset))
        offset //= 2
    if cuda.laneid == 0:
        out[i // 32] = v


def test_shfl_down_tree_reduces_each_warp_to_lane_0():
    rng = np.random.default_rng(1)
    values = rng.standard_normal(128).astype(np.float32)
    out = np.zeros(4, np.float32)
    warp_max_kernel[2, 64](values, out)
    np.testing.assert_array_equal(out, values.reshape(4, 32).max(axis=1))


# -- masks naming part of a warp ----------------------------------------------------------


@cuda.jit
def half_warp_sum_kernel(values, out):
    i = cuda.threadIdx.x
    mask = 0x0000FFFF if i % 32 < 16 else 0xFFFF0000
    v = values[i]
    offset = 8
    while offset > 0:  # xor offsets below 16 stay inside each half
        v += cuda.shfl_xor_sync(mask, v, offset)
        offset //= 2
    out[i] = v


def test_two_half_warps_with_their_own_masks_reduce_independently():
    values = np.arange(64, dtype=np.int32) ** 2
    out = np.zeros(64, np.int32)
    half_warp_sum_kernel[1, 64](values, out)
    np.testing.assert_array_equal(out, np.repeat(values.reshape(4, 16).sum(axis=1), 16))


@cuda.jit
def subset_kernel(values, out):
    i = cuda.threadIdx.x
    out[i] = -1
    if i % 4 == 0:  # only lanes 0, 4, 8, ... take part, and they say so in the mask
        out[i] = cuda.shfl_down_sync(0x11111111, values[i], 4)


def test_mask_with_every_fourth_lane():
    values = np.arange(32, dtype=np.int32) + 100
    out = np.zeros(32, np.int32)
    subset_kernel[1, 32](values, out)
    lanes = np.arange(0, 28, 4)
    np.testing.assert_array_equal(out[lanes], values[lanes + 4])
    assert np.all(out[np.arange(32) % 4 != 0] == -1)


# -- a last partial warp --------------------------------------------------------------------


@cuda.jit
def partial_warp_kernel(values, out, ballots, masks):
    i = cuda.threadIdx.x
    v = values[i]
    out[i] = cuda.shfl_down_sync(FULL, v, 2)
    ballots[i] = cuda.ballot_sync(FULL, v % 2 == 0)
    masks[i] = cuda.activemask()


def test_partial_last_warp_shuffles_among_its_existing_lanes():
    n = 40  # warp 1 has lanes 0..7 only
    values = np.arange(n, dtype=np.int32)
    out = np.zeros(n, np.int32)
    ballots = np.zeros(n, np.int32)
    masks = np.zeros(n, np.uint32)
    partial_warp_kernel[1, n](values, out, ballots, masks)
    defined = np.r_[0:30, 32:38]  # lanes whose source lane exists
    np.testing.assert_array_equal(out[defined], values[defined + 2])
    np.testing.assert_array_equal(out[30:32], values[30:32])  # past lane 31: own value
    assert np.all(ballots[:32].view(np.uint32) == 0x55555555)
    assert np.all(ballots[32:].view(np.uint32) == 0x55)
    assert np.all(masks[:32] == FULL) and np.all(masks[32:] == 0xFF)


# -- warps that shuffle while other warps wait at syncthreads -----------------------------


@cuda.jit
def staggered_kernel(values, out):
    shared = cuda.shared.array(64, np.int32)
    i = cuda.threadIdx.x
    warp = i // 32
    v = values[i]
    if warp == 0:  # warp 0 shuffles first, then meets the block at the barrier
        v = cuda.shfl_xor_sync(FULL, v, 1)
    shared[i] = v
    cuda.syncthreads()
    if warp == 1:  # warp 1 shuffles after the barrier, reading what warp 0 wrote
        v = cuda.shfl_xor_sync(FULL, shared[i - 32], 2)
    cuda.syncthreads()
    out[i] = v


def test_warps_shuffle_on_either_side_of_syncthreads():
    values = np.arange(64, dtype=np.int32) * 7
    out = np.zeros(64, np.int32)
    staggered_kernel[1, 64](values, out)
    lanes = np.arange(32)
    first = values[lanes ^ 1]
    np.testing.assert_array_equal(out[:32], first)
    np.testing.assert_array_equal(out[32:], first[lanes ^ 2])


# -- 2-D and 3-D blocks: lane = linear thread index mod 32 --------------------------------


@cuda.jit
def block3d_kernel(out_lane, out_shfl):
    t = cuda.threadIdx
    linear = t.x + cuda.blockDim.x * (t.y + cuda.blockDim.y * t.z)
    out_lane[linear] = cuda.laneid
    out_shfl[linear] = cuda.shfl_xor_sync(FULL, linear, 5)


@pytest.mark.parametrize("block", [(8, 8), (4, 4, 4), (5, 3, 3)])
def test_multidimensional_blocks_number_lanes_linearly(block):
    n = int(np.prod(block))
    lanes = np.zeros(n, np.int32)
    shfl = np.zeros(n, np.int64)
    block3d_kernel[1, block](lanes, shfl)
    linear = np.arange(n)
    np.testing.assert_array_equal(lanes, linear % 32)
    source = linear ^ 5
    defined = source < n  # in the partial last warp some sources do not exist
    np.testing.assert_array_equal(shfl[defined], source[defined])


# -- syncwarp and votes -----------------------------------------------------------------------


@cuda.jit
def syncwarp_kernel(out):
    shared = cuda.shared.array(64, np.int32)
    i = cuda.threadIdx.x
    shared[i] = i * i
    cuda.syncwarp(FULL)
    out[i] = shared[(i // 32) * 32 + (i % 32 + 1) % 32]


def test_syncwarp_orders_shared_memory_within_a_warp():
    out = np.zeros(64, np.int32)
    syncwarp_kernel[1, 64](out)
    i = np.arange(64)
    np.testing.assert_array_equal(out, ((i // 32) * 32 + (i % 32 + 1) % 32) ** 2)


@cuda.jit
def vote_kernel(values, out):
    i = cuda.threadIdx.x
    v = values[i]
    out[i, 0] = cuda.all_sync(FULL, v > 0)
    out[i, 1] = cuda.any_sync(FULL, v > 5)
    out[i, 2] = cuda.ballot_sync(FULL, v > 5)
    out[i, 3] = cuda.eq_sync(FULL, v > 0)


def test_votes_across_each_warp():
    values = np.ones(64, np.int32)
    values[[3, 40]] = 9  # one large value in each warp
    values[50] = -1  # warp 1 is no longer all positive
    out = np.zeros((64, 4), np.int64)
    vote_kernel[1, 64](values, out)
    np.testing.assert_array_equal(out[:32, 0], 1)
    np.testing.assert_array_equal(out[32:, 0], 0)
    np.testing.assert_array_equal(out[:, 1], 1)
    assert np.all(out[:32, 2] == 1 << 3) and np.all(out[32:, 2] == 1 << 8)
    np.testing.assert_array_equal(out[:32, 3], 1)
    np.testing.assert_array_equal(out[32:, 3], 0)


@cuda.jit
def exited_lanes_kernel(values, out):
    i = cuda.threadIdx.x
    if i >= 20:
        return  # lanes 20..31 exit before the shuffle
    out[i] = cuda.shfl_down_sync(cuda.activemask(), values[i], 4)


def test_lanes_that_exited_are_not_waited_for():
    values = np.arange(32, dtype=np.int32)
    out = np.full(32, -1, np.int32)
    exited_lanes_kernel[1, 32](values, out)
    np.testing.assert_array_equal(out[:16], values[4:20])


# -- what a GPU would hang on or leave undefined, reported by the simulator ----------------


@cuda.jit
def mask_without_self_kernel(out):
    i = cuda.threadIdx.x
    out[i] = cuda.shfl_sync(0x1, i, 0)  # lanes 1..31 leave themselves out of the mask


@simulator_only
def test_mask_leaving_out_the_caller_is_an_error():
    with pytest.raises(Exception, match="leaves itself out"):
        mask_without_self_kernel[1, 32](np.zeros(32, np.int64))


@cuda.jit
def deadlock_kernel(out):
    i = cuda.threadIdx.x
    if i < 16:
        out[i] = cuda.shfl_down_sync(FULL, i, 1)  # waits for lanes 16..31 ...
    cuda.syncthreads()  # ... which wait here for lanes 0..15


@cuda.jit
def odd_lanes_at_barrier_kernel(out):
    i = cuda.threadIdx.x
    v = i
    if i % 2 == 0:
        v = cuda.shfl_xor_sync(FULL, v, 1)  # a full-mask shuffle inside a divergent branch
    cuda.syncthreads()
    out[i] = v


@cuda.jit
def mask_names_a_lane_that_never_arrives_kernel(out):
    i = cuda.threadIdx.x
    if i < 16:
        out[i] = cuda.shfl_sync(0x0000FFFF | 1 << 16, i, 0)  # names lane 16 ...
    else:
        cuda.syncwarp(0xFFFF0000 | 1)  # ... which waits for lane 0 in another call
    out[i] += 1


DEADLOCKS = {
    "half a warp shuffles while the other half waits at syncthreads": deadlock_kernel,
    "a full-mask shuffle inside a divergent branch": odd_lanes_at_barrier_kernel,
    "a mask naming a lane that never arrives": mask_names_a_lane_that_never_arrives_kernel,
}


@simulator_only
@pytest.mark.parametrize("case", list(DEADLOCKS))
def test_a_real_deadlock_is_reported(case):
    with pytest.raises(Exception, match="deadlock in warp 0: lanes .* wait in"):
        DEADLOCKS[case][1, 32](np.zeros(32, np.int64))


# -- a busy machine: the simulator starts a block's threads one by one, slowly -------------


@pytest.fixture
def slow_thread_start(monkeypatch):
    """Each simulated thread starts 25 ms after the one before, as on a loaded laptop: the
    first lanes reach their shuffles long before the last lanes exist."""
    import time

    from numba.cuda.simulator import kernel

    start = kernel.BlockThread.start

    def slow_start(self):
        time.sleep(0.025)
        start(self)

    monkeypatch.setattr(kernel.BlockThread, "start", slow_start)


@simulator_only
def test_a_slowly_started_block_still_reduces_correctly(slow_thread_start):
    from tutorial import reduction

    @cuda.jit
    def reduce_kernel(x, warp_out, block_out):
        i = cuda.threadIdx.x
        warp_out[i] = reduction.warp_max(x[i])
        block_out[i] = reduction.block_max(x[i])

    x = np.arange(64, dtype=np.float32)[::-1].copy()
    warp_out, block_out = np.zeros(64, np.float32), np.zeros(64, np.float32)
    reduce_kernel[1, 64](x, warp_out, block_out)
    np.testing.assert_array_equal(warp_out, np.repeat([63.0, 31.0], 32))
    np.testing.assert_array_equal(block_out, np.full(64, 63.0))
    x = np.random.default_rng(1).standard_normal(3000).astype(np.float32)
    assert tutorial.absmax(x) == np.abs(x).max()
    q = tutorial.quantize_blockwise(x[:512].reshape(2, 256), block=(1, 128))
    want = blockwise_reference(x[:512].reshape(2, 256), (1, 128))
    np.testing.assert_array_equal(q.codes, want.codes)
    np.testing.assert_array_equal(q.scales, want.scales)


@simulator_only
@pytest.mark.parametrize("case", list(DEADLOCKS))
def test_a_real_deadlock_is_reported_however_slowly_threads_start(case, slow_thread_start):
    with pytest.raises(Exception, match="deadlock in warp 0"):
        DEADLOCKS[case][1, 32](np.zeros(32, np.int64))


@cuda.jit
def float16_shuffle_kernel(values, out):
    i = cuda.threadIdx.x
    out[i] = cuda.shfl_sync(FULL, values[i], 0)


@simulator_only
def test_shuffling_a_type_numba_rejects_is_an_error():
    with pytest.raises(Exception, match="32- and 64-bit"):
        float16_shuffle_kernel[1, 32](np.zeros(32, np.float16), np.zeros(32, np.float16))


@cuda.jit
def _shared_neighbour(out):
    s = cuda.shared.array(64, int32)
    t = cuda.threadIdx.x
    s[t] = t
    cuda.syncthreads()
    out[t] = s[(t + 1) % 64]  # written by another thread: only right if the array is shared


def test_every_thread_of_a_block_gets_the_same_shared_array():
    expected = (np.arange(64) + 1) % 64
    for launch in range(30):  # the simulator's unpatched look-up raced about one launch in ten
        out = np.full(64, -1, np.int32)
        _shared_neighbour[1, 64](out)
        np.testing.assert_array_equal(out, expected, err_msg=f"launch {launch}")
