"""Exact reference quantizers in numpy, a few lines each (like DeepGEMM's per_token_cast_to_fp8).

They are the specification the kernels are judged against, bit for bit on codes and scales.
Arithmetic is float64: the quotient x / scale of two float32 numbers is then never close
enough to an FP8 midpoint for its float64 rounding to matter, so the codes are the correctly
rounded codes of the exact quotient (tutorial.fp8.encode rounds float64 input once).
"""

from __future__ import annotations

import numpy as np

from . import fp8
from .qtensor import QTensor, scale_from_amax


def finite_amax(x, axis=None, keepdims=False) -> np.ndarray:
    """max |x| over the finite elements (0 where there are none), in float64."""
    x = np.asarray(x, np.float64)
    return np.max(np.where(np.isfinite(x), np.abs(x), 0.0), axis=axis, keepdims=keepdims)


def blockwise_reference(x, block, fmt="e4m3") -> QTensor:
    """One scale per `block` tile of `x` (any rank); edge tiles are smaller."""
    fmt = fp8.as_format(fmt)
    x = np.asarray(x, np.float64)
    padded = np.pad(x, [(0, -n % b) for n, b in zip(x.shape, block)])  # zeros never raise an amax
    tiles = padded.reshape([d for n, b in zip(padded.shape, block) for d in (n // b, b)])
    scales = scale_from_amax(finite_amax(tiles, axis=tuple(range(1, 2 * x.ndim, 2))), fmt)
    per_element = QTensor(np.zeros(x.shape, np.uint8), scales, fmt, tuple(block)).scale_per_element()
    return QTensor(fp8.encode(x / per_element, fmt), scales, fmt, tuple(block))


def per_tensor_reference(x, fmt="e4m3", scale=None) -> QTensor:
    """One scale for the whole tensor: from its finite amax, or the given (static) `scale`."""
    x = np.asarray(x)
    if scale is None:
        return blockwise_reference(x, x.shape, fmt)
    fmt = fp8.as_format(fmt)
    scale = np.float32(scale)
    codes = fp8.encode(np.asarray(x, np.float64) / np.float64(scale), fmt)
    return QTensor(codes, np.full((1,) * x.ndim, scale, np.float32), fmt, tuple(x.shape))


def per_channel_reference(x, axis, fmt="e4m3") -> QTensor:
    """One scale per index along `axis` of 2-D `x`: axis=0 one per row, axis=1 one per column."""
    m, n = np.shape(x)
    return blockwise_reference(x, (1, n) if axis == 0 else (m, 1), fmt)
