"""Chapter 07: every Linear of all-MiniLM-L6-v2 quantized one way or another.

A [`Scheme`][] says how the weights (out x in) and the activations (tokens x in) of a Linear
are quantized: the block of their scales, the format, plain or power-of-two scales, and
whether the activations are quantized at all (weights-only). [`quantized_linear`][] turns it
into the `linear` hook of [`tutorial.transformer.minilm.encode`][tutorial.transformer.minilm.encode]:
quantize, dequantize, multiply in float32. On the CPU the quantization is chapter 02-04's
numpy reference (`tutorial.reference`), which the kernels match bit for bit, so the numbers
are the kernels' numbers; the multiply of dequantized values is what a scaled GEMM computes
up to float32 rounding of the sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import reference
from .minilm import float32_linear

GRANULARITIES = ("tensor", "channel", "token")  # or a block shape such as (1, 128)


@dataclass(frozen=True)
class Scheme:
    """How one Linear is quantized: `weights` and `activations` are "tensor" (one scale),
    "channel" (a scale per output channel: per row of the weight), "token" (a scale per token:
    per row of the activations) or a block shape; `activations=None` leaves them in float32."""

    name: str
    weights: object
    activations: object | None
    fmt: str = "e4m3"
    pow2: bool = False


SCHEMES = (
    Scheme("per-tensor", "tensor", "tensor"),
    Scheme("per-channel (weights) / per-token (activations)", "channel", "token"),
    Scheme("128x128 weights / 1x128 activations", (128, 128), (1, 128)),
    Scheme("128x128 / 1x128, power-of-two scales", (128, 128), (1, 128), pow2=True),
    Scheme("128x128 / 1x128, E5M2", (128, 128), (1, 128), fmt="e5m2"),
    Scheme("per-tensor, E5M2", "tensor", "tensor", fmt="e5m2"),
    Scheme("weights only, per-tensor", "tensor", None),
    Scheme("weights only, per-channel", "channel", None),
    Scheme("weights only, 128x128", (128, 128), None),
)


def block_of(granularity, shape) -> tuple[int, int]:
    """The block shape a granularity means for a 2-D array of `shape`."""
    rows, cols = shape
    if isinstance(granularity, tuple):
        return granularity
    if granularity == "tensor":
        return (rows, cols)
    if granularity in ("channel", "token"):
        return (1, cols)
    raise ValueError(f"block_of: granularity must be one of {GRANULARITIES} or a block shape, got {granularity!r}")


def roundtrip(x2d, granularity, fmt="e4m3", pow2=False) -> np.ndarray:
    """Quantize 2-D `x2d` with the course's reference and dequantize it (float32)."""
    q = reference.blockwise_reference(x2d, block_of(granularity, np.shape(x2d)), fmt, pow2_scales=pow2)
    return q.dequantize().astype(np.float32)


def quantized_linear(scheme: Scheme):
    """The `linear(name, x, w, b)` hook that quantizes as `scheme` says. Each weight is quantized
    once and kept; the activations of every call are quantized as they come."""
    weights = {}
    last = [None, None]  # the last activations quantized, and their roundtrip

    def linear(name, x, w, b):
        if name not in weights:
            weights[name] = roundtrip(w, scheme.weights, scheme.fmt, scheme.pow2)
        if scheme.activations is not None:
            if x is not last[0]:  # query, key and value share one input: quantize it once
                flat = x.reshape(-1, x.shape[-1])
                last[:] = x, roundtrip(flat, scheme.activations, scheme.fmt, scheme.pow2).reshape(x.shape)
            x = last[1]
        return float32_linear(name, x, weights[name], b)

    return linear


__all__ = ["Scheme", "SCHEMES", "quantized_linear", "roundtrip", "block_of"]
