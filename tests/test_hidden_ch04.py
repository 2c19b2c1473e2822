"""Chapter 04's hidden graded tests: the (1, bn) group kernel and the tile kernel on inputs the
visible tests (tests/test_blockwise.py) do not use.

A single row, E5M2, bfloat16 input, groups of 16 and 512, more warp tiles than warps, the
interleaved and M-major layouts at other group widths; 128 x 128 tiles of a 129 x 132 matrix
(a second tile row 1 high, a second tile column 4 wide) with power-of-two scales, and other
tile shapes: an answer tuned to the visible tests does not pass them.

Every input here takes the exercise's kernel. On the simulator quantize_blockwise gives 128 x
128 tiles to the general kernel (64 threads cannot hold 16384 values in registers), so that test
launches tile_kernel itself, as the library does on a GPU. (And 129 x 129 would take the general
kernel everywhere: the tile kernel needs rows a multiple of 4 long.) The instructor's grading
runs them; a release leaves this file out.
"""

import math

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

from tutorial import fp8
from tutorial.course import grading
from tutorial.qtensor import QTensor
from tutorial.reference import blockwise_reference, interleaved_reference, per_block_reference
from tutorial.runtime.loads import load4

from tutorial.quant import blockwise, interleaved  # blockwise: the library, or chapter 04's exercise file
from test_per_tensor import assert_same, hostile

pytestmark = [pytest.mark.chapter("04"), pytest.mark.hidden]
group_exercise = pytest.mark.graded("row_group_kernel")
tile_exercise = pytest.mark.graded("tile_kernel")


# -- row_group_kernel ---------------------------------------------------------------------------------


@group_exercise
@pytest.mark.parametrize("shape, fmt", [((1, 128), "e5m2"), ((1, 640), "e4m3")],
                         ids=["one row, one group, e5m2", "one row of 5 groups, e4m3"])
def test_1x128_groups_of_a_single_row(shape, fmt):
    """A single row: a group that is the whole matrix, or 5 groups of 128, the largest magnitude in the last group."""
    x = hostile(shape, seed=400 + shape[1])
    x[0, -1] = -2000.0
    assert_same(blockwise.quantize_blockwise(x, (1, 128), fmt), blockwise_reference(x, (1, 128), fmt), x)


@group_exercise
def test_1x128_groups_of_bfloat16_with_an_all_nan_group():
    """A (5, 384) bfloat16 matrix (8-byte loads) whose group (2, 1) is all NaN: the EPS scale and code 0x7f there."""
    x = hostile((5, 384), seed=401)
    x[2, 128:256] = np.nan
    x = x.astype(ml_dtypes.bfloat16)
    wide = x.astype(np.float32)
    assert_same(blockwise.quantize_blockwise(x, (1, 128)), blockwise_reference(wide, (1, 128)), wide)


@group_exercise
@pytest.mark.parametrize("shape, bn, pow2", [((3, 1024), 512, False), ((33, 64), 16, True)],
                         ids=["groups of 512 (4 loads per lane)", "groups of 16, 33 rows, power-of-two scales"])
def test_groups_of_512_and_of_16_over_several_warp_trips(shape, bn, pow2):
    """Groups wider than a warp's load, and groups of 16 over more warp tiles than the grid has warps."""
    x = hostile(shape, seed=402 + bn)
    q = blockwise.quantize_blockwise(x, (1, bn), pow2_scales=pow2)
    assert_same(q, blockwise_reference(x, (1, bn), pow2_scales=pow2), x)


@group_exercise
@pytest.mark.parametrize("layout", ["interleaved, groups of 32", "m_major, groups of 64"])
def test_other_scale_layouts_at_other_group_widths(layout):
    """The interleaved buffer with groups of 32 (3 x 192), and M-major scales with groups of 64 (7 x 192)."""
    if layout.startswith("interleaved"):
        x = hostile((3, 192), seed=404)
        buf = interleaved.quantize_groups_interleaved(x, 32)
        grading.assert_array_matches(buf, interleaved_reference(blockwise_reference(x, (1, 32))),
                                     what="interleaved buffer")
    else:
        x = hostile((7, 192), seed=405)
        q = blockwise.quantize_blockwise(x, (1, 64), scales_m_major=True)
        assert_same(q, blockwise_reference(x, (1, 64)), x)
        assert q.scales.shape == (7, 3) and q.scales.T.flags["C_CONTIGUOUS"], "scales not stored M-major"


# -- tile_kernel --------------------------------------------------------------------------------------


def tile_kernel_quantize(x, block, fmt, pow2, threads):
    """quantize_blockwise's tile-kernel launch, made directly: `threads` threads per block,
    one tile per block at a time, into poisoned codes and scales."""
    fmt = fp8.as_format(fmt)
    rows, cols = x.shape
    bm, bn = block
    grid = (math.ceil(rows / bm), math.ceil(cols / bn))
    codes = cuda.to_device(np.full(rows * cols, 0xAA, np.uint8))
    scales = cuda.to_device(np.full(grid, np.nan, np.float32))
    kernel = blockwise.tile_kernel(fmt, bm, bn, threads, load4, pow2)
    kernel[min(scales.size, 4), threads](cuda.to_device(x.reshape(-1)), rows, cols, codes.view(np.uint32),
                                         scales.reshape(scales.size))
    return QTensor(codes.copy_to_host().reshape(rows, cols), scales.copy_to_host(), fmt, block)


@tile_exercise
def test_128x128_tiles_of_a_129x132_matrix_with_power_of_two_scales():
    """129x132 in 128x128 tiles, power-of-two scales: a second tile row 1 high, a second tile column 4 wide."""
    x = hostile((129, 132), seed=406)
    x[128, 131] = -3e4  # the 1 x 4 corner tile's maximum
    q = tile_kernel_quantize(x, (128, 128), "e4m3", pow2=True, threads=128)
    assert_same(q, per_block_reference(x, 128, "e4m3", pow2_scales=True), x)


@tile_exercise
@pytest.mark.parametrize("shape, block, fmt, dtype", [
    pytest.param((70, 260), (32, 128), "e5m2", np.float32, id="32x128 tiles of 70x260, e5m2"),
    pytest.param((6, 12), (2, 4), "e4m3", np.float32, id="2x4 tiles of 6x12: one 4-value group per tile row"),
    pytest.param((40, 136), (16, 64), "e4m3", ml_dtypes.bfloat16, id="16x64 tiles of bfloat16 40x136"),
])
def test_other_tile_shapes_through_quantize_blockwise(shape, block, fmt, dtype):
    """Tiles other than 128x128 (edge tiles on both sides where the shape is not a multiple), float32 and bfloat16."""
    x = hostile(shape, seed=407 + shape[0]).astype(dtype)
    wide = x.astype(np.float32)
    assert_same(blockwise.quantize_blockwise(x, block, fmt), blockwise_reference(wide, block, fmt), wide)
