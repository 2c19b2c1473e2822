"""Chapter 07 on the course's kernels (tutorial.transformer.kernel_path): the quantizers give the
reference's codes and scales for every scheme's weights and activations, and a Linear on the
kernels computes what the numpy path computes, up to the float32 sums of the product. Small
shapes, so that they run on the simulator; no model needed."""

import numpy as np
import pytest

from tutorial import reference
from tutorial.gemm.wgmma import ACCUMULATION_BOUND
from tutorial.runtime.device import ON_SIMULATOR, warpgroup_mma_available
from tutorial.transformer import kernel_path, schemes

from test_minilm import HAVE_MODEL

SCHEME = {s.name: s for s in schemes.SCHEMES}


def _data(shape, seed, outliers=False):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if outliers:  # a few loud channels, as real activations have
        x[:, 3] *= 40
    return x


@pytest.mark.parametrize("granularity, block", [("tensor", (160, 136)), ("channel", (1, 136)), ((128, 128), (128, 128))])
@pytest.mark.parametrize("fmt, pow2", [("e4m3", False), ("e5m2", True)])
def test_a_weight_on_the_kernels_is_the_reference_transposed(granularity, block, fmt, pow2):
    if pow2 and not isinstance(granularity, tuple):
        with pytest.raises(ValueError, match="granularity"):
            kernel_path.quantize_weight_t(_data((160, 136), 0), granularity, fmt, pow2)
        return
    w = _data((160, 136), 0)  # out x in, with a tail in both directions for 128 x 128 blocks
    got = kernel_path.quantize_weight_t(w, granularity, fmt, pow2).to_host()
    want = reference.blockwise_reference(w, block, fmt, pow2_scales=pow2)
    np.testing.assert_array_equal(got.codes, want.codes.T)
    np.testing.assert_array_equal(got.scales, want.scales.T)


@pytest.mark.parametrize("granularity, block", [("tensor", (24, 256)), ("token", (1, 256)), ((1, 128), (1, 128))])
def test_activations_on_the_kernels_are_the_reference(granularity, block):
    x = _data((24, 256), 1, outliers=True)
    got = kernel_path.quantize_activations(x, granularity).to_host()
    want = reference.blockwise_reference(x, block, "e4m3")
    np.testing.assert_array_equal(got.codes, want.codes)
    np.testing.assert_array_equal(got.scales, want.scales)
    with pytest.raises(ValueError, match="granularity"):
        kernel_path.quantize_activations(x, "channel")


@pytest.mark.parametrize("name", ["per-tensor", "128x128 weights / 1x128 activations",
                                  "per-channel (weights) / per-token (activations)", "weights only, 128x128"])
def test_a_linear_on_the_kernels_computes_the_numpy_paths_product(name):
    scheme = SCHEME[name]
    x, w = _data((2, 9, 128), 2, outliers=True), _data((136, 128), 3)  # (batch, tokens, in), out x in
    b = _data((136,), 4)
    got = kernel_path.kernel_linear(scheme)("layer", x, w, b)
    want = schemes.quantized_linear(scheme)("layer", x, w, b)
    assert got.shape == want.shape == (2, 9, 136) and got.dtype == np.float32
    # The same dequantized operands: only the order of the float32 sums differs, and on Hopper the
    # wgmma kernel's K-blocks carry the tensor cores' own accumulation error
    xq = schemes.roundtrip(x.reshape(18, 128), scheme.activations, scheme.fmt) if scheme.activations else x
    bound = np.abs(xq.reshape(18, 128)) @ np.abs(schemes.roundtrip(w, scheme.weights, scheme.fmt)).T
    relative = 1e-5 + (ACCUMULATION_BOUND if warpgroup_mma_available() and scheme.activations else 0.0)
    np.testing.assert_array_less(np.abs(got - want).reshape(18, 136), relative * bound + 1e-6)
    assert np.abs(got - want).max() > 0 or scheme.activations is None  # (not the numpy path in disguise)


def test_linears_not_named_take_the_numpy_path():
    scheme = SCHEME["per-tensor"]
    x, w, b = _data((9, 128), 5), _data((16, 128), 6), _data((16,), 7)
    hook = kernel_path.kernel_linear(scheme, names={"kernels"})
    np.testing.assert_array_equal(hook("numpy", x, w, b), schemes.quantized_linear(scheme)("numpy", x, w, b))


@pytest.mark.skipif(ON_SIMULATOR, reason="the whole model on the kernels: a GPU's work (the simulator runs a subset)")
@pytest.mark.skipif(not HAVE_MODEL, reason="all-MiniLM-L6-v2 is not installed")
def test_the_whole_model_on_the_kernels_agrees_with_the_numpy_path():
    from tutorial.transformer import evaluate, minilm

    model = minilm.MiniLM.load()
    rows = evaluate.kernel_agreement(model, evaluate.course_sentences()[:64], schemes.SCHEMES[:3] + schemes.SCHEMES[6:7])
    for r in rows:
        # The codes are the reference's; the GEMM's float32 sums differ in the last bits, and a
        # value on an FP8 rounding midpoint downstream may then round the other way.
        assert r["cosine min"] > 0.995, r
        assert abs(r["kernels top10"] - r["numpy top10"]) <= 0.05, r
    # weights only: the kernels quantize the weights, numpy multiplies as in the numpy path
    assert rows[-1]["max |difference|"] < 1e-5
