"""Chapter 04: block quantization matches the numpy references bit for bit, codes and scales."""

import numpy as np
import pytest
from numba import cuda

from tutorial import fp8, fp8_hardware
from tutorial.course import grading
from tutorial.reference import (blockwise_reference, interleaved_reference, per_block_reference,
                                per_token_group_reference, pow2_scale_from_amax)

from test_per_tensor import assert_same, hostile

from tutorial.quant import blockwise, interleaved  # noqa: E402  (blockwise: the library, or chapter 04's exercise file)
pytestmark = pytest.mark.chapter("04")
group_exercise = pytest.mark.graded("row_group_kernel")
tile_exercise = pytest.mark.graded("tile_kernel")


def with_zero_block(x, block):
    x[:block[0], :block[1]] = 0.0  # the first tile all zeros: exact zeros, the EPS scale
    return x


@group_exercise
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_1x128_matches_the_deepgemm_style_reference(fmt):
    """1x128 groups with outliers, NaN, -inf, signed zeros, and an all-zero first group."""
    x = with_zero_block(hostile((6, 512), seed=1), (1, 128))
    assert_same(blockwise.quantize_blockwise(x, (1, 128), fmt), per_token_group_reference(x, 128, fmt), x)


@group_exercise
@pytest.mark.parametrize("bn", [16, 32, 64, 256], ids=lambda bn: f"groups of {bn}")
def test_other_group_widths_along_a_row(bn):
    """Group widths other than 128, with an all-zero first group."""
    x = with_zero_block(hostile((3, 512), seed=bn), (1, bn))
    assert_same(blockwise.quantize_blockwise(x, (1, bn)), blockwise_reference(x, (1, bn)), x)


@group_exercise
def test_a_last_warp_tile_that_is_partly_past_the_end():
    """3x96 in groups of 32: the last warp's 128 values hold only 32 of the matrix (a tail)."""
    x = hostile((3, 96), seed=5)  # 288 values: the third 128-value warp tile holds only 32
    assert_same(blockwise.quantize_blockwise(x, (1, 32)), blockwise_reference(x, (1, 32)), x)


@group_exercise
def test_m_major_scales_are_the_same_scales_stored_transposed():
    """scales_m_major=True: the same scales, stored column by column (as (N / 128, M))."""
    x = hostile((5, 256), seed=6)
    q = blockwise.quantize_blockwise(x, (1, 128), scales_m_major=True)
    assert_same(q, per_token_group_reference(x), x)
    assert q.scales.shape == (5, 2) and q.scales.T.flags["C_CONTIGUOUS"], "scales not stored M-major"


@group_exercise
def test_interleaved_buffer_holds_each_groups_codes_then_its_scale():
    """The interleaved layout: each group's 128 codes, then the 4 bytes of its scale."""
    x = hostile((4, 384), seed=7)
    buf = interleaved.quantize_groups_interleaved(x, 128)
    ref = per_token_group_reference(x)
    grading.assert_array_matches(buf, interleaved_reference(ref), what="interleaved buffer")
    assert_same(interleaved.split_interleaved(buf, 128, cols=x.shape[1]), ref)


@pytest.mark.parametrize("block", [pytest.param((1, 128), marks=group_exercise, id="1x128 groups"),
                                   pytest.param((128, 128), marks=tile_exercise, id="128x128 tiles")])
def test_power_of_two_scales(block):
    """pow2_scales=True: every scale the smallest power of two that does not saturate (UE8M0)."""
    x = hostile((130, 256), seed=8) if block[0] > 1 else hostile((4, 256), seed=8)
    q = blockwise.quantize_blockwise(x, block, pow2_scales=True)
    assert_same(q, blockwise_reference(x, block, pow2_scales=True), x)
    mantissa, _ = np.frexp(q.scales)
    assert (mantissa == 0.5).all(), "every scale is a power of two"


def test_pow2_scale_is_the_smallest_power_of_two_that_does_not_saturate():
    amax = np.array([448.0, 449.0, 447.9, 1.0, 0.0, 3e38], np.float32)
    s = pow2_scale_from_amax(amax, "e4m3")
    np.testing.assert_array_equal(s, np.float32([1.0, 2.0, 1.0, 2.0**-8, 2.0**-48, 2.0**120]))
    assert (amax / s <= 448).all() and (amax / (s / 2) > 448)[amax > 0].all()


@tile_exercise
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_128x128_matches_the_deepgemm_style_reference(fmt):
    """128x128 tiles: an all-zero first tile, and a second row of tiles only 2 rows high."""
    x = with_zero_block(hostile((130, 256), seed=9), (128, 128))  # a second row of tiles 2 rows high
    assert_same(blockwise.quantize_blockwise(x, (128, 128), fmt), per_block_reference(x, 128, fmt), x)


@tile_exercise
def test_edge_tiles_of_a_300x1000_matrix():
    """300x1000 in 128x128 tiles: partial tiles along both edges and in the corner."""
    x = hostile((300, 1000), seed=10)
    assert_same(blockwise.quantize_blockwise(x, (128, 128)), per_block_reference(x), x)


@pytest.mark.parametrize("shape, block, dtype", [((7, 300), (1, 128), np.float32),  # rows not whole groups
                                                 ((40, 130), (16, 64), np.float64),
                                                 ((9, 33), (2, 3), np.float32),
                                                 ((20, 256), (1, 128), np.float16)])
def test_general_kernel_for_ragged_shapes_and_other_dtypes(shape, block, dtype):
    x = hostile(shape, seed=11, dtype=dtype)
    assert_same(blockwise.quantize_blockwise(x, block), blockwise_reference(x, block))


@pytest.mark.parametrize("block, shape", [((1, 128), (3, 256)), ((128, 128), (130, 128)), ((1, 128), (3, 130))])
def test_bfloat16_input_quantizes_like_its_exact_float32_value(block, shape):
    import ml_dtypes

    x = hostile(shape, seed=12).astype(ml_dtypes.bfloat16)
    assert_same(blockwise.quantize_blockwise(x, block), blockwise_reference(x.astype(np.float32), block))


def test_nan_stays_nan_and_inf_saturates_within_its_block():
    x = np.ones((2, 256), np.float32)
    x[0, 5], x[1, 200] = np.nan, np.inf
    back = blockwise.quantize_blockwise(x, (1, 128)).dequantize()
    assert np.isnan(back[0, 5]) and back[1, 200] == 1.0  # inf saturates to its block's amax, 1
    assert (back[np.isfinite(x) & ~np.isnan(back)] == 1.0).all()


@pytest.mark.skipif(not fp8_hardware.hardware_fp8_available(), reason="needs a GPU of compute capability >= 8.9")
@pytest.mark.parametrize("block", [(1, 128), (128, 128)])
def test_software_and_hardware_encoders_give_identical_codes(block):
    x = hostile((256, 512), seed=13)
    soft = blockwise.quantize_blockwise(x, block, encoder="software")
    hard = blockwise.quantize_blockwise(x, block, encoder="hardware")
    assert_same(hard, soft)
    assert_same(soft, blockwise_reference(x, block))


def test_device_input_gives_a_device_qtensor():
    x = hostile((4, 256), seed=14)
    q = blockwise.quantize_blockwise(cuda.to_device(x), (1, 128))
    assert hasattr(q.codes, "copy_to_host")
    assert_same(q.to_host(), per_token_group_reference(x))


@pytest.mark.parametrize("call, message", [
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.float32), (0, 128)), "block must be two positive"),
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.float32), (1, -1)), "block must be two positive"),
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.float32), 128), "block must be two positive"),
    (lambda: blockwise.quantize_blockwise(np.ones(4, np.float32)), "x must be 2-D"),
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.int8)), "x must be a float"),
    (lambda: blockwise.quantize_blockwise(np.ones((0, 4), np.float32)), "empty"),
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.float32), (2, 2), scales_m_major=True), "(1, bn)"),
    (lambda: interleaved.quantize_groups_interleaved(np.ones((4, 100), np.float32), 128), "multiple of group"),
    (lambda: blockwise.quantize_blockwise(np.ones((4, 4), np.float32), encoder="magic"), "encoder must be"),
])
def test_bad_input_is_an_error_naming_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
