"""Chapter 01: warp_max, block_max, absmax, absmax_rows, absmax_blocks.

Shapes stay small: on the simulator every shuffle is a rendezvous of 32 Python threads.
"""

import numpy as np
import pytest
from numba import cuda

import tutorial
from tutorial.course import grading

from tutorial import reduction as red  # the library, or chapter 01's exercise file under --impl exercise
from tutorial import reduction_tiles
pytestmark = pytest.mark.chapter("01")
FULL = 0xFFFFFFFF


def reference_absmax(x, axis=None):
    """The spec: np.max(np.abs(x)) in float32 (NaN propagates, -0.0 counts as 0)."""
    return np.max(np.abs(np.asarray(x, np.float32)), axis=axis)


def reference_blocks(x, bm, bn):
    a = np.abs(np.asarray(x, np.float32))
    return np.array([[a[i:i + bm, j:j + bn].max() for j in range(0, a.shape[1], bn)]
                     for i in range(0, a.shape[0], bm)], np.float32)


# -- warp_max ---------------------------------------------------------------------------------


@cuda.jit
def warp_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.warp_max(x[i])


@pytest.mark.graded("warp_max")
@pytest.mark.parametrize("where", [0, 17, 31], ids=lambda lane: f"maximum in lane {lane}")
def test_warp_max_gives_every_lane_its_warps_maximum(where):
    """Every lane of two warps gets its own warp's maximum; all other values are negative."""
    x = -np.abs(np.random.default_rng(where).standard_normal(64)).astype(np.float32)
    x[where] = 7.0  # warp 0's maximum at lane `where`
    x[32 + (where * 5) % 32] = 3.0  # warp 1's maximum elsewhere
    out = np.zeros(64, np.float32)
    warp_max_kernel[1, 64](x, out)
    grading.assert_array_matches(out, np.repeat(x.reshape(2, 32).max(axis=1), 32), inputs=x,
                                 what="warp_max on each lane")


@pytest.mark.graded("warp_max")
def test_warp_max_propagates_nan():
    """A NaN in lane 9 makes every lane's maximum NaN (combine with nan_max, not max)."""
    x = np.arange(32, dtype=np.float32)
    x[9] = np.nan
    out = np.zeros(32, np.float32)
    warp_max_kernel[1, 32](x, out)
    assert np.isnan(out).all(), f"lanes without NaN: {np.flatnonzero(~np.isnan(out)).tolist()}"


# -- block_max --------------------------------------------------------------------------------


@cuda.jit
def block_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.block_max(x[i])


@pytest.mark.graded("block_max")
@pytest.mark.parametrize("threads", [32, 64, 96], ids=lambda n: f"{n // 32} warp{'s' * (n > 32)} per block")
def test_block_max_gives_every_thread_its_blocks_maximum(threads):
    """Every thread of two blocks gets its own block's maximum, held by block 0's last thread."""
    x = np.random.default_rng(threads).standard_normal(2 * threads).astype(np.float32)
    x[threads - 1] = 9.0  # block 0: the last thread holds the maximum
    out = np.zeros(2 * threads, np.float32)
    block_max_kernel[2, threads](x, out)
    grading.assert_array_matches(out, np.repeat(x.reshape(2, threads).max(axis=1), threads), inputs=x,
                                 what=f"block_max with {threads} threads")


@pytest.mark.graded("block_max")
def test_block_max_propagates_nan_from_any_warp():
    """A NaN in warp 1 (thread 40) reaches every thread of the block, warp 0's too."""
    x = np.zeros(64, np.float32)
    x[40] = np.nan
    out = np.zeros(64, np.float32)
    block_max_kernel[1, 64](x, out)
    assert np.isnan(out).all(), f"threads without NaN: {np.flatnonzero(~np.isnan(out)).tolist()}"


# -- absmax -----------------------------------------------------------------------------------


def kernel_absmax(x):
    """Launch the exercise's absmax_kernel itself (the library's absmax may pick its
    vectorized sibling for float32): a few blocks, so that blocks really combine."""
    d = cuda.to_device(np.ascontiguousarray(x).reshape(-1))
    partials = cuda.device_array(3, np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.to_device(np.full(1, -1.0, np.float32))  # poisoned: a kernel that writes nothing fails
    red.absmax_kernel[3, red.THREADS](d, partials, counter, out)
    assert counter.copy_to_host()[0] == 0, "the counter must be back at 0 for the next launch"
    return out.copy_to_host()[0]


@pytest.mark.graded("absmax_kernel")
@pytest.mark.parametrize("n", [1, 31, 1000, 4099], ids=lambda n: f"{n} element{'s' * (n > 1)}")
def test_absmax_matches_numpy_with_the_largest_value_last(n):
    """The largest magnitude is negative (-1e30) and in the very last element: the tail counts."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    x[-1] = -1e30  # a single huge value, negative, in the very last element
    got = kernel_absmax(x)
    assert got == np.float32(1e30), f"expected 1e+30, got {got!r}"


@pytest.mark.graded("absmax_kernel")
def test_absmax_of_random_data_matches_numpy_bit_for_bit():
    """3000 random values over 3 blocks: the same float32 bits as numpy's max(abs(x))."""
    x = (np.random.default_rng(3).standard_normal(3000) * 10).astype(np.float32)
    got = np.float32(kernel_absmax(x))
    assert got.tobytes() == reference_absmax(x).tobytes(), (got, reference_absmax(x))


@pytest.mark.graded("absmax_kernel")
def test_absmax_with_a_nan_anywhere_is_nan():
    """One NaN among 2000 ones (element 1234) makes the result NaN."""
    x = np.ones(2000, np.float32)
    x[1234] = np.nan
    got = kernel_absmax(x)
    assert np.isnan(got), f"expected nan, got {got!r}"


@pytest.mark.graded("absmax_kernel")
def test_absmax_of_zeros_and_negative_zeros_is_positive_zero():
    """All zeros, two of them negative: the result is +0.0 (abs before max)."""
    got = kernel_absmax(np.array([0.0, -0.0, -0.0], np.float32))
    assert got == 0.0 and not np.signbit(got), f"expected 0.0, got {got!r}"


@pytest.mark.graded("absmax_kernel")
def test_absmax_of_float16_and_any_shape():
    """A float16 array of shape (3, 5, 70): any dtype and rank, read as a flat run of values."""
    x = np.random.default_rng(4).standard_normal((3, 5, 70)).astype(np.float16)
    got = kernel_absmax(x)
    assert got == reference_absmax(x), f"expected {reference_absmax(x)!r}, got {got!r}"


@pytest.mark.graded("absmax_kernel")
def test_absmax_is_deterministic():
    """Three launches on the same 5000 values give the same, right, bits (no race between blocks)."""
    x = np.random.default_rng(5).standard_normal(5000).astype(np.float32)
    runs = {np.float32(kernel_absmax(x)).tobytes() for _ in range(3)}
    assert runs == {reference_absmax(x).tobytes()}, "the same bits, and the right ones, every run"


@pytest.mark.parametrize("n", [1, 3, 4, 5, 1000, 4099])
def test_library_absmax_matches_numpy_for_sizes_around_the_vector_width(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    x[-1] = 1e30
    assert red.absmax(x) == np.float32(1e30)
    x[n // 2] = np.nan
    assert np.isnan(red.absmax(x))


def test_library_absmax_of_float16_and_float64():
    for dtype in (np.float16, np.float64):
        x = np.random.default_rng(9).standard_normal(777).astype(dtype)
        assert red.absmax(x) == reference_absmax(x)


def test_absmax_of_a_device_array_stays_on_the_device():
    x = np.random.default_rng(6).standard_normal(500).astype(np.float32)
    out = red.absmax(cuda.to_device(x))
    assert hasattr(out, "copy_to_host") and out.shape == (1,)
    assert out.copy_to_host()[0] == reference_absmax(x)


@pytest.mark.parametrize("bad, message", [(np.zeros(0, np.float32), "empty"),
                                          (np.zeros((3, 0), np.float32), "empty"),
                                          (np.arange(5), "int64")])
def test_absmax_rejects_bad_input_naming_itself(bad, message):
    with pytest.raises(ValueError, match=f"absmax: .*{message}"):
        red.absmax(bad)


# -- absmax_rows and absmax_blocks -------------------------------------------------------------


def test_absmax_rows_matches_numpy_on_a_ragged_width():
    x = np.random.default_rng(7).standard_normal((6, 300)).astype(np.float32)
    x[2, 299] = -50.0
    x[4, 0] = np.nan
    got = reduction_tiles.absmax_rows(x)
    grading.assert_array_matches(got, reference_absmax(x, axis=1), inputs=None, what="absmax_rows")


@pytest.mark.parametrize("bn", [32, 64, 128, 256])
def test_absmax_blocks_along_rows_with_a_partial_last_block(bn):
    x = np.random.default_rng(bn).standard_normal((3, 300)).astype(np.float32)
    got = reduction_tiles.absmax_blocks(x, (1, bn))
    assert got.shape == (3, -(-300 // bn)) and got.dtype == np.float32
    grading.assert_array_matches(got, reference_blocks(x, 1, bn), what=f"absmax_blocks (1, {bn})")


@pytest.mark.parametrize("shape, block", [((37, 300), (16, 128)), ((130, 140), (128, 128)), ((5, 7), (2, 3))])
def test_absmax_blocks_tiles_with_partial_edge_tiles(shape, block):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float16)
    x[-1, -1] = -100  # the corner tile, the smallest
    got = reduction_tiles.absmax_blocks(x, block)
    grading.assert_array_matches(got, reference_blocks(x, *block), what=f"absmax_blocks {block}")


def test_absmax_blocks_nan_only_poisons_its_own_block():
    x = np.ones((2, 256), np.float32)
    x[1, 200] = np.nan
    got = reduction_tiles.absmax_blocks(x, (1, 128))
    assert np.isnan(got[1, 1]) and np.isnan(got).sum() == 1


@pytest.mark.parametrize("call, message", [
    (lambda: reduction_tiles.absmax_blocks(np.ones(10, np.float32)), "2-D"),
    (lambda: reduction_tiles.absmax_blocks(np.ones((4, 4), np.float32), (0, 128)), "positive"),
    (lambda: reduction_tiles.absmax_rows(np.ones((2, 2, 2), np.float32)), "absmax_rows: x must be 2-D"),
    (lambda: reduction_tiles.absmax_blocks(np.ones((4, 4), np.int32)), "int32"),
])
def test_absmax_blocks_and_rows_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_cuda_array_interface_inputs_stay_on_the_device(library):
    if tutorial.ON_SIMULATOR:
        pytest.skip("torch and cupy arrays live on a GPU")
    module = pytest.importorskip(library)
    x = np.random.default_rng(8).standard_normal((64, 256)).astype(np.float32)
    device_x = module.asarray(x, device="cuda") if library == "torch" else module.asarray(x)
    rows = reduction_tiles.absmax_rows(device_x)
    assert hasattr(rows, "copy_to_host")
    np.testing.assert_array_equal(rows.copy_to_host(), reference_absmax(x, axis=1))
    np.testing.assert_array_equal(red.absmax(device_x).copy_to_host()[0], reference_absmax(x))


@pytest.mark.parametrize("shape, bn", [((5, 512), 128), ((3, 1024), 256), ((2, 1024), 512), ((3, 128), 128),
                                       ((2, 384), 128), ((7, 1024), 128)])
def test_vectorized_row_blocks_and_their_fallback(shape, bn):
    """Rows of whole segments take the 16-byte-load kernel (4, 2 or 1 segments per warp per
    trip); other shapes (segments per row not a multiple of that) take the scalar one."""
    x = np.random.default_rng(shape[0]).standard_normal(shape).astype(np.float32)
    x[-1, -1] = 80.0
    grading.assert_array_matches(reduction_tiles.absmax_blocks(x, (1, bn)), reference_blocks(x, 1, bn),
                                 what=f"absmax_blocks (1, {bn}) on {shape}")
