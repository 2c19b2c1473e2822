"""Chapter 07 on the course's kernels: each Linear quantized by chapters 02-04's quantizers and
multiplied by chapter 05's [`scaled_matmul`][tutorial.gemm.scaled_matmul].

[`tutorial.transformer.schemes.quantized_linear`][tutorial.transformer.schemes.quantized_linear]
computes a quantized Linear in numpy: the reference quantizers, then a float32 product of
dequantized values. [`kernel_linear`][] computes the same Linear on the device:

* the activations `x` (tokens x in) are the product's `a`. "tensor" is one scale
  (`quantize_per_tensor`), "token" is a scale per row (`quantize_per_channel(x, 0)`), and a
  block such as (1, 128) goes to `quantize_blockwise`.
* the weight `w` (out x in) enters as `b = w.T` (in x out). Its per-output-channel scales are
  then per column (`quantize_per_channel(w.T, 1)`), and a (bm, bn) block of `w` is a (bn, bm)
  block of `w.T`. The codes and scales are those of `w`, transposed (a test checks it).
* `scaled_matmul(a, b)` accumulates in float32, and the bias is added in numpy.

With weights only, the activations stay float32, so no FP8 product applies. The weights are
quantized by the kernels and dequantized, and the product is numpy's.

The quantizers match the references bit for bit, so only the products differ between the two
paths: the GEMM's float32 sums against numpy's, a few ulps. On a GPU the whole model runs on
this path (`evaluate.kernel_agreement`). On the simulator, where a kernel costs about a
millisecond per thread, the notebook runs it on a subset.
"""

from __future__ import annotations

import numpy as np

from ..gemm import scaled_matmul
from ..qtensor import QTensor
from ..quant.blockwise import quantize_blockwise
from ..quant.per_channel import quantize_per_channel
from ..quant.per_tensor import quantize_per_tensor
from .schemes import Scheme, quantized_linear


def quantize_activations(x2d, granularity, fmt="e4m3", pow2=False) -> QTensor:
    """(tokens, in) activations quantized by the course's kernels as `granularity` says:
    "tensor", "token" (a scale per row) or a block shape."""
    if granularity == "tensor" and not pow2:
        return quantize_per_tensor(x2d, fmt)
    if granularity == "token" and not pow2:
        return quantize_per_channel(x2d, 0, fmt)
    if isinstance(granularity, tuple):
        return quantize_blockwise(x2d, granularity, fmt, pow2_scales=pow2)
    raise ValueError(f"quantize_activations: granularity must be 'tensor', 'token' or a block shape (power-of-two "
                     f"scales: a block shape only), got {granularity!r} with pow2={pow2}")


def quantize_weight_t(w, granularity, fmt="e4m3", pow2=False) -> QTensor:
    """`w.T` (in, out) for the product `x @ w.T`, quantized by the course's kernels so that its
    codes and scales are those of `w` quantized as `granularity` says ("tensor", "channel": a
    scale per output channel, or a block shape of `w`), transposed."""
    wt = np.ascontiguousarray(np.asarray(w, np.float32).T)
    if granularity == "tensor" and not pow2:
        return quantize_per_tensor(wt, fmt)
    if granularity == "channel" and not pow2:
        return quantize_per_channel(wt, 1, fmt)
    if isinstance(granularity, tuple):
        bm, bn = granularity
        return quantize_blockwise(wt, (bn, bm), fmt, pow2_scales=pow2)
    raise ValueError(f"quantize_weight_t: granularity must be 'tensor', 'channel' or a block shape (power-of-two "
                     f"scales: a block shape only), got {granularity!r} with pow2={pow2}")


def kernel_linear(scheme: Scheme, *, names=None):
    """The `linear(name, x, w, b)` hook that runs the Linears on the course's kernels as
    `scheme` says (each weight quantized once and kept). With `names`, only the Linears named
    there take the kernels and the others take the numpy path of
    [`quantized_linear`][tutorial.transformer.schemes.quantized_linear]: that is how the
    simulator runs a subset."""
    numpy_path = quantized_linear(scheme)
    weights: dict = {}

    def linear(name, x, w, b):
        if names is not None and name not in names:
            return numpy_path(name, x, w, b)
        if name not in weights:
            weights[name] = quantize_weight_t(w, scheme.weights, scheme.fmt, scheme.pow2)
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), np.float32)
        if scheme.activations is None:
            y = flat @ weights[name].dequantize()
        else:
            y = scaled_matmul(quantize_activations(flat, scheme.activations, scheme.fmt, scheme.pow2), weights[name])
        return (y + b).astype(np.float32).reshape(*x.shape[:-1], w.shape[0])

    return linear


__all__ = ["kernel_linear", "quantize_activations", "quantize_weight_t"]
