"""Chapter 04: block quantization matches the numpy references bit for bit, codes and scales.

The graded cases of row_group_kernel and tile_kernel are in tests/test_graded_ch04.py; these are
the library's other tests (the general kernel, other dtypes, device input, bad input).
"""

import numpy as np
import pytest
from numba import cuda

from tutorial import fp8, fp8_hardware
from tutorial.course import grading
from tutorial.reference import blockwise_reference, per_token_group_reference, pow2_scale_from_amax

from test_per_tensor import assert_same, hostile

from tutorial.quant import blockwise, interleaved  # noqa: E402  (blockwise: the library, or chapter 04's exercise file)
pytestmark = pytest.mark.chapter("04")


def test_pow2_scale_is_the_smallest_power_of_two_that_does_not_saturate():
    amax = np.array([448.0, 449.0, 447.9, 1.0, 0.0, 3e38], np.float32)
    s = pow2_scale_from_amax(amax, "e4m3")
    np.testing.assert_array_equal(s, np.float32([1.0, 2.0, 1.0, 2.0**-8, 2.0**-48, 2.0**120]))
    assert (amax / s <= 448).all() and (amax / (s / 2) > 448)[amax > 0].all()


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


@pytest.mark.parametrize("shape", [(9, 384), (8, 256)])  # (9, 384): the last warp tile holds one group
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pow2, encoder", [(False, "fast"), (True, "fast"), (False, "exact")])
def test_group_kernel_x8_matches_the_reference_over_several_grids(shape, dtype, pow2, encoder):
    """groups_x8's kernel, 8 values a lane and a group per half-warp, launched over several
    grids of 2-warp blocks (launch_covering), NaN, inf and zeros in the input."""
    import ml_dtypes

    from tutorial.quant import groups_x8
    from tutorial.runtime.launch import launch_covering
    from tutorial.runtime.loads import load8_of

    x = hostile(shape, seed=17)
    if dtype == "bfloat16":
        x = x.astype(ml_dtypes.bfloat16)
    ref = blockwise_reference(np.asarray(x, np.float32), (1, 128), pow2_scales=pow2, encoder=encoder)
    d = cuda.to_device(x.view(np.uint16) if dtype == "bfloat16" else x).reshape(x.size)
    per_trip = 2 if dtype == "bfloat16" else 1
    kernel = groups_x8.group_kernel_x8(fp8.E4M3, load8_of(d), pow2, encoder, per_trip, x.size % 256 == 0)
    codes = cuda.device_array(x.size, np.uint8)
    scales = cuda.device_array(x.size // 128, np.float32)
    launch_covering(kernel, -(-x.size // 256), 2 * per_trip, 64, d, codes.view(np.uint64), scales)
    grading.assert_array_matches(scales.copy_to_host(), ref.scales.reshape(-1), what="scales")
    grading.assert_array_matches(codes.copy_to_host(), ref.codes.reshape(-1), what="codes",
                                 inputs=np.asarray(x, np.float32).reshape(-1))


def test_only_the_fast_encoder_takes_the_x8_group_kernel(monkeypatch):
    """The default (exact) encoder runs the learner's row_group_kernel, which quantize_blockwise
    grades; the fast one on 1 x 128 float32 groups takes groups_x8."""
    taken = []
    real = blockwise.groups_x8_into
    monkeypatch.setattr(blockwise, "groups_x8_into", lambda *a, **k: taken.append(1) or real(*a, **k))
    x = hostile((3, 256), seed=18)
    assert_same(blockwise.quantize_blockwise(x, (1, 128)), blockwise_reference(x, (1, 128)))
    assert taken == []
    assert_same(blockwise.quantize_blockwise(x, (1, 128), encoder="fast"),
                blockwise_reference(x, (1, 128), encoder="fast"))
    assert taken == [1]
