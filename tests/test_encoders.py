"""The two encoders, bit for bit against their references, on every quantizer.

* `encoder="exact"`: the correctly rounded codes of x / scale (tutorial.reference, float64).
* `encoder="fast"`: the codes of float32(x * inv), inv = fmax / amax or 1 / scale
  (tutorial.reference.fast_codes; what DeepGEMM's per_token_cast_to_fp8 computes).

The inputs include values next to FP8 midpoints, where the two encoders disagree (double
rounding): each encoder must give its own reference's code there, not the other's. On a GPU
with torch, the fast encoder is also checked against torch itself.
"""

import ml_dtypes
import numpy as np
import pytest

from tutorial import fp8
from tutorial.qtensor import scale_from_amax
from tutorial.reference import (blockwise_reference, fast_codes, per_channel_reference, per_tensor_reference)
from tutorial.runtime.device import ON_SIMULATOR

from test_per_tensor import assert_same, hostile

from tutorial.quant import blockwise, interleaved, per_channel, per_tensor  # noqa: E402

ENCODERS = ["exact", "fast"]


def near_midpoints(amax, fmt="e4m3", count=None):
    """Values x, |x| <= amax, whose quotient x / scale lies within 2 float32 ulps of a midpoint
    between two FP8 values (scale from `amax`): where rounding twice can go wrong."""
    fmt = fp8.as_format(fmt)
    scale = np.float64(scale_from_amax(np.float32(amax), fmt))
    values = fp8.decode(np.arange(0, fmt.max_code + 1, dtype=np.uint8), fmt).astype(np.float64)
    base = ((values[:-1] + values[1:]) / 2 * scale).astype(np.float32).view(np.int32)
    x = np.concatenate([(base + d).view(np.float32) for d in (-2, -1, 0, 1, 2)])
    x = x[np.abs(x) <= np.float32(amax)]
    return x if count is None else x[:count]


def disagreeing(amax, fmt="e4m3"):
    """The values of [`near_midpoints`][] on which the two encoders give different codes."""
    x = near_midpoints(amax, fmt)
    scale = scale_from_amax(np.float32(amax), fmt)
    exact = fp8.encode(x.astype(np.float64) / np.float64(scale), fmt)
    fast = fast_codes(x, np.float32(fp8.as_format(fmt).max) / np.float32(amax), fmt)
    return x[exact != fast]


def trap_matrix(rows, cols, amax=3.0, fmt="e4m3", seed=0):
    """A matrix whose every row has amax `amax` (one element equal to it) and holds the values
    the encoders disagree on, the rest normal noise: per-row, per-group and per-tensor scales
    all come from `amax`."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * amax / 4).clip(-amax, amax).astype(np.float32)
    traps = disagreeing(amax, fmt)
    assert traps.size, "no disagreeing values found: the test would prove nothing"
    slots = x.reshape(-1)[1::7]  # (a view: writing it writes x)
    n = min(slots.size, traps.size)
    slots[:n] = traps[:n]
    x[:, 0] = amax  # every row, group of 128 and tile starting at column 0 holds the amax
    return x


def test_the_encoders_disagree_near_midpoints_so_these_tests_can_tell_them_apart():
    for amax in (3.0, 0.7, 12.345):
        assert disagreeing(amax).size >= 20


@pytest.mark.chapter("02")
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_per_tensor_dynamic_and_static(encoder, fmt):
    x = trap_matrix(4, 256, fmt=fmt)
    assert_same(per_tensor.quantize_per_tensor(x, fmt, encoder=encoder), per_tensor_reference(x, fmt, encoder=encoder), x)
    s = 3.0 / fp8.as_format(fmt).max
    assert_same(per_tensor.quantize_per_tensor(x, fmt, s, encoder=encoder),
                per_tensor_reference(x, fmt, s, encoder=encoder), x)


@pytest.mark.chapter("02")
@pytest.mark.parametrize("encoder", ENCODERS)
def test_per_tensor_general_kernel_and_bfloat16(encoder):
    x = trap_matrix(3, 131)  # not a multiple of 4: the one-value-per-thread kernel
    assert_same(per_tensor.quantize_per_tensor(x, encoder=encoder), per_tensor_reference(x, encoder=encoder), x)
    b = hostile((4, 128), seed=3).astype(ml_dtypes.bfloat16)
    assert_same(per_tensor.quantize_per_tensor(b, encoder=encoder),
                per_tensor_reference(b.astype(np.float32), encoder=encoder))


@pytest.mark.chapter("03")
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel(encoder, axis):
    x = trap_matrix(8, 256)
    assert_same(per_channel.quantize_per_channel(x, axis, encoder=encoder),
                per_channel_reference(x, axis, encoder=encoder), x)


@pytest.mark.chapter("04")
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("block, pow2", [((1, 128), False), ((1, 128), True), ((1, 32), False),
                                         ((16, 32), False), ((16, 32), True), ((3, 5), False)])
def test_blockwise(encoder, block, pow2):
    x = trap_matrix(16, 256)
    assert_same(blockwise.quantize_blockwise(x, block, pow2_scales=pow2, encoder=encoder),
                blockwise_reference(x, block, pow2_scales=pow2, encoder=encoder), x)


@pytest.mark.chapter("04")
def test_blockwise_fast_on_bfloat16_and_interleaved():
    b = hostile((4, 256), seed=5).astype(ml_dtypes.bfloat16)
    ref = blockwise_reference(b.astype(np.float32), (1, 128), encoder="fast")
    assert_same(blockwise.quantize_blockwise(b, (1, 128), encoder="fast"), ref)
    buf = interleaved.quantize_groups_interleaved(trap_matrix(2, 256), 128, encoder="fast")
    assert_same(interleaved.split_interleaved(buf, 128, cols=256),
                blockwise_reference(trap_matrix(2, 256), (1, 128), encoder="fast"))


@pytest.mark.parametrize("call", [
    lambda x: per_tensor.quantize_per_tensor(x, encoder="fastest"),
    lambda x: per_channel.quantize_per_channel(x, 0, encoder=None),
    lambda x: blockwise.quantize_blockwise(x, encoder="Exact"),
    lambda x: interleaved.quantize_groups_interleaved(x, encoder=1),
])
def test_an_unknown_encoder_is_an_error_naming_it(call):
    with pytest.raises(ValueError, match="encoder must be one of"):
        call(np.ones((2, 128), np.float32))


@pytest.mark.skipif(ON_SIMULATOR, reason="torch's own casts run on the GPU")
@pytest.mark.parametrize("group", [128, 4096])
def test_fast_matches_torch_deepgemm_style_casts_on_the_gpu(group):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    x = trap_matrix(64, 4096)
    t = torch.as_tensor(x, device="cuda").view(64, -1, group)
    amax = t.abs().float().amax(dim=2).clamp(min=2.0**-40)  # DeepGEMM's per_token_cast_to_fp8 (its eps: 1e-4)
    # DeepGEMM writes 448.0 / amax; torch computes a number over a tensor as amax.reciprocal() * 448,
    # rounding twice, so the one division is spelled out here.
    inv = torch.full_like(amax, 448.0) / amax
    codes = (t * inv.unsqueeze(2)).to(torch.float8_e4m3fn).view(64, 4096)
    theirs = codes.view(torch.uint8).cpu().numpy()
    ours = blockwise.quantize_blockwise(x, (1, group), encoder="fast")
    np.testing.assert_array_equal(ours.codes, theirs)
    # (and a tensor over a number is computed as a product with its reciprocal: a tensor over a tensor divides)
    np.testing.assert_array_equal(ours.scales, (amax / torch.full_like(amax, 448.0)).cpu().numpy())
    exact = blockwise.quantize_blockwise(x, (1, group))
    assert (exact.codes != theirs).any()  # the traps: torch rounds twice, as the fast encoder does
