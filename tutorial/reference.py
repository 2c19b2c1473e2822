"""Exact reference quantizers in numpy, a few lines each (like DeepGEMM's `per_token_cast_to_fp8`).

They are the specification the kernels are judged against, bit for bit on codes and scales.
Arithmetic is float64: the quotient x / scale of two float32 numbers is then never close
enough to an FP8 midpoint for its float64 rounding to matter, so the codes are the correctly
rounded codes of the exact quotient ([`tutorial.fp8.encode`][tutorial.fp8.encode] rounds
float64 input once).

With `encoder="fast"` they compute what torch and DeepGEMM compute instead: the codes of
`float32(x * inv)`, `inv = float32(fmax / max(amax, EPS))` (DeepGEMM's `448.0 / amax`), or
`inv = float32(1 / scale)` for a static or power-of-two scale, every operation in float32 as
theirs are. [`fast_codes`][] is that multiply-then-encode, in two lines.
"""

from __future__ import annotations

import numpy as np

from . import fp8
from .qtensor import EPS, QTensor, scale_from_amax


def finite_amax(x, axis=None, keepdims=False) -> np.ndarray:
    """`max |x|` over the finite elements (0 where there are none), in float64."""
    x = np.asarray(x, np.float64)
    return np.max(np.where(np.isfinite(x), np.abs(x), 0.0), axis=axis, keepdims=keepdims)


def pow2_scale_from_amax(amax, fmt) -> np.ndarray:
    """The smallest power of two s with `max(amax, EPS) / s <= fmt.max` (UE8M0 scales): exact,
    from the binary exponent of the quotient, one step up where it falls short."""
    fmt = fp8.as_format(fmt)
    a = np.maximum(np.asarray(amax, np.float32).astype(np.float64), EPS)
    _, exponent = np.frexp(a / fmt.max)  # a / fmax = m * 2^exponent, m in [0.5, 1)
    s = np.ldexp(1.0, exponent - 1)  # 2^floor(log2(a / fmax))
    return np.where(s * fmt.max < a, 2 * s, s).astype(np.float32)


def as_float32_values(x) -> np.ndarray:
    """The values the quantizers see, in float64: float64 input is rounded to float32 first (the
    kernels compute in float32; a finite float64 beyond float32's range is their error)."""
    x = np.asarray(x)
    return (x.astype(np.float32) if x.dtype == np.float64 else x).astype(np.float64)


def fast_codes(x, inv, fmt="e4m3") -> np.ndarray:
    """The fast encoder: the codes of `float32(x * inv)`, both float32 (inv broadcasts)."""
    with np.errstate(over="ignore"):  # a product beyond float32 is inf, which saturates
        return fp8.encode(np.asarray(x, np.float32) * np.asarray(inv, np.float32), fmt)


def _check_encoder(encoder):
    if encoder not in ("exact", "fast"):
        raise ValueError(f"encoder must be 'exact' or 'fast', got {encoder!r}")


def blockwise_reference(x, block, fmt="e4m3", pow2_scales=False, encoder="exact") -> QTensor:
    """One scale per `block` tile of `x` (any rank); edge tiles are smaller."""
    _check_encoder(encoder)
    fmt = fp8.as_format(fmt)
    x = as_float32_values(x)
    tile = [min(b, n) for n, b in zip(x.shape, block)]  # a block past the edge is one block: the tensor's size
    padded = np.pad(x, [(0, -n % b) for n, b in zip(x.shape, tile)])  # zeros never raise an amax
    tiles = padded.reshape([d for n, b in zip(padded.shape, tile) for d in (n // b, b)])
    amax = finite_amax(tiles, axis=tuple(range(1, 2 * x.ndim, 2)))
    scales = (pow2_scale_from_amax if pow2_scales else scale_from_amax)(amax, fmt)

    def per_element(s):
        return QTensor(np.zeros(x.shape, np.uint8), s, fmt, tuple(block)).scale_per_element()

    if encoder == "fast":
        inv = (np.float32(1.0) / scales if pow2_scales
               else np.float32(fmt.max) / np.maximum(amax.astype(np.float32), np.float32(EPS)))
        return QTensor(fast_codes(x, per_element(inv), fmt), scales, fmt, tuple(block))
    return QTensor(fp8.encode(x / per_element(scales), fmt), scales, fmt, tuple(block))


def per_tensor_reference(x, fmt="e4m3", scale=None, encoder="exact") -> QTensor:
    """One scale for the whole tensor: from its finite amax, or the given (static) `scale`."""
    _check_encoder(encoder)
    x = np.asarray(x)
    if scale is None:
        return blockwise_reference(x, x.shape, fmt, encoder=encoder)
    fmt = fp8.as_format(fmt)
    scale = np.float32(scale)
    if encoder == "fast":
        codes = fast_codes(as_float32_values(x), np.float32(1.0) / scale, fmt)
    else:
        codes = fp8.encode(as_float32_values(x) / np.float64(scale), fmt)
    return QTensor(codes, np.full((1,) * x.ndim, scale, np.float32), fmt, tuple(x.shape))


def per_channel_reference(x, axis, fmt="e4m3", encoder="exact") -> QTensor:
    """One scale per index along `axis` of 2-D `x`: `axis=0` one per row, `axis=1` one per column."""
    if axis not in (0, 1):
        raise ValueError(f"per_channel_reference: axis must be 0 (rows) or 1 (columns), got {axis!r}")
    m, n = np.shape(x)
    return blockwise_reference(x, (1, n) if axis == 0 else (m, 1), fmt, encoder=encoder)


def per_token_group_reference(x, group=128, fmt="e4m3", pow2_scales=False, encoder="exact") -> QTensor:
    """1 x `group` blocks: one scale per row and `group` columns (DeepGEMM's `per_token_cast_to_fp8`)."""
    return blockwise_reference(x, (1, group), fmt, pow2_scales, encoder)


def per_block_reference(x, tile=128, fmt="e4m3", pow2_scales=False, encoder="exact") -> QTensor:
    """`tile` x `tile` blocks (DeepGEMM's `per_block_cast_to_fp8`)."""
    return blockwise_reference(x, (tile, tile), fmt, pow2_scales, encoder)


def interleaved_reference(q: QTensor) -> np.ndarray:
    """The interleaved layout of a `(1, group)` QTensor: per row, each group's codes followed by
    the 4 bytes of its float32 scale."""
    q = q.to_host()
    rows, group = q.codes.shape[0], q.block[1]
    codes = q.codes.reshape(rows, -1, group)
    scales = np.ascontiguousarray(q.scales, np.float32).view(np.uint8).reshape(rows, -1, 4)
    return np.concatenate([codes, scales], axis=2).reshape(rows, -1)


def scaled_matmul_reference(a: QTensor, b: QTensor) -> np.ndarray:
    """`C = sum_k decode(a) * a_scale * decode(b) * b_scale` in float64: every product of a code
    (4 significant bits at most) and a float32 scale is exact in float64, and so is the rest,
    up to float64's rounding of the sum."""
    deq = [fp8.decode(q.to_host().codes, q.fmt).astype(np.float64) * q.scale_per_element().astype(np.float64)
           for q in (a, b)]
    return deq[0] @ deq[1]
