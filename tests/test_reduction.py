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


# warp_max, block_max and absmax_kernel, the exercises, are graded by the cases of
# tests/test_graded_ch01.py (and tests/test_hidden_ch01.py); these tests check the rest of the
# chapter: the library's entry points built on them.


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


@pytest.mark.parametrize("dtype", [np.float16, np.float32])  # float32 with rows of 4k values: 16-byte loads
@pytest.mark.parametrize("shape, block", [((37, 300), (16, 128)), ((130, 140), (128, 128)), ((5, 7), (2, 3))])
def test_absmax_blocks_tiles_with_partial_edge_tiles(shape, block, dtype):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    x[-1, -1] = -100  # the corner tile, the smallest
    x[0, 1] = np.nan  # poisons the first tile only
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
