"""Chapters 02 and 03: per-tensor and per-channel FP8 quantization, static and dynamic.

Every quantizer returns a :class:`~tutorial.qtensor.QTensor` and matches the numpy
references in :mod:`tutorial.reference` bit for bit, codes and scales:

* the scale comes from the largest *finite* magnitude (chapter 01's reduction machinery,
  with NaN and inf counted as 0), by the rule in :mod:`tutorial.qtensor`;
* each code is the correctly rounded FP8 code of the exact quotient x / scale
  (:func:`tutorial.fp8.encode_e4m3_quotient`), not of its float32 rounding.

Dynamic per-tensor quantization is two launches: the finite amax (one launch, chapter 01's
last-block-finishes pattern), then a fused scale-and-encode pass that computes the scale
from the amax on the device. Static quantization is the second launch alone.
Per-channel along rows (axis=0) is one fused launch: a block finds its row's amax, then
encodes the row while it is still in cache. Along columns (axis=1), a first launch finds
every column's amax (rows split across blocks, combined with an atomic max on the float
bits, valid because non-negative floats order like their bit patterns), a second encodes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, uint32

from . import fp8, reduction
from .bitcast import bits_float32, float32_bits
from .device import ON_SIMULATOR
from .loads import aligned16, load4
from .qtensor import EPS, QTensor
from .reduction import THREADS, block_max

FLT_MAX = float32(3.4028234663852886e38)
_EPS32 = float32(EPS)


@cuda.jit(device=True)
def finite_abs(v):
    """|v| for finite v; 0 for NaN and +-inf, which must not set a scale."""
    a = abs(float32(v))
    return a if a <= FLT_MAX else float32(0.0)  # NaN <= anything is False


@cuda.jit(device=True)
def finite_abs_at(x, i):
    return finite_abs(x[i])


@cuda.jit(device=True)
def finite_absmax4(x, i):
    a, b, c, d = load4(x, i)
    return max(max(finite_abs(a), finite_abs(b)), max(finite_abs(c), finite_abs(d)))


@cuda.jit(device=True)
def scale_from_amax(amax, fmax):
    """max(amax, EPS) / fmax in float32: the scale rule of tutorial.qtensor, bit for bit."""
    return max(float32(amax), _EPS32) / float32(fmax)


_finite_amax_vec4 = reduction.max_kernel_vec4(finite_absmax4, finite_abs_at)
_finite_amax_scalar = reduction.max_kernel_scalar(finite_abs_at)

# On compute capability >= 8.9 the hardware conversion does most of the rounding (same codes).
_QUOTIENT_ENCODERS = (
    {"e4m3": fp8.encode_e4m3_quotient_hw, "e5m2": fp8.encode_e5m2_quotient_hw}
    if fp8.hardware_fp8_available() else
    {"e4m3": fp8.encode_e4m3_quotient, "e5m2": fp8.encode_e5m2_quotient})
_kernels: dict = {}


def _cached(key, build):
    if key not in _kernels:
        _kernels[key] = build()
    return _kernels[key]


def _per_tensor_kernel(fmt, dynamic: bool):
    """codes = encode(x / scale) over 1-D x; scale = given, or computed from amax on the device."""
    encode = _QUOTIENT_ENCODERS[fmt.name]
    fmax = float32(fmt.max)

    def build():
        @cuda.jit
        def kernel(x, amax_or_scale, codes, scales):
            scale = scale_from_amax(amax_or_scale[0], fmax) if dynamic else amax_or_scale[0]
            if cuda.grid(1) == 0:
                scales[0] = scale
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                codes[i] = encode(x[i], scale)

        return kernel

    return _cached(("tensor", fmt.name, dynamic), build)


def _per_tensor_kernel_vec4(fmt, dynamic: bool):
    """The same over float32 x, 4 elements at a time: one 16-byte load (chapter 01's load4)
    and one 4-byte store of the 4 codes packed into a word (little-endian: the first code in
    the low byte). `words` is the codes array viewed as uint32, so x.size % 4 == 0."""
    encode = _QUOTIENT_ENCODERS[fmt.name]
    fmax = float32(fmt.max)

    def build():
        @cuda.jit
        def kernel(x, amax_or_scale, words, scales):
            scale = scale_from_amax(amax_or_scale[0], fmax) if dynamic else amax_or_scale[0]
            start = cuda.grid(1)
            if start == 0:
                scales[0] = scale
            for g in range(start, words.size, cuda.gridsize(1)):
                a, b, c, d = load4(x, 4 * g)
                # widen before shifting: a uint8 shifted left by 8 would overflow in numpy's rules
                words[g] = (uint32(encode(a, scale)) | (uint32(encode(b, scale)) << 8)
                            | (uint32(encode(c, scale)) << 16) | (uint32(encode(d, scale)) << 24))

        return kernel

    return _cached(("tensor4", fmt.name, dynamic), build)


def _per_row_kernel(fmt):
    """One block per row at a time: the row's finite amax, its scale, then its codes."""
    encode = _QUOTIENT_ENCODERS[fmt.name]
    fmax = float32(fmt.max)

    def build():
        @cuda.jit
        def kernel(x, codes, scales):
            rows, cols = x.shape
            for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):  # the same for the whole block
                m = float32(0.0)
                for j in range(cuda.threadIdx.x, cols, cuda.blockDim.x):
                    m = max(m, finite_abs(x[row, j]))
                scale = scale_from_amax(block_max(m), fmax)
                if cuda.threadIdx.x == 0:
                    scales[row, 0] = scale
                for j in range(cuda.threadIdx.x, cols, cuda.blockDim.x):  # the row is in cache now
                    codes[row, j] = encode(x[row, j], scale)

        return kernel

    return _cached(("rows", fmt.name), build)


@cuda.jit
def _column_amax_bits(x, rows_per_block, amax_bits):
    """amax_bits[j] = bits of the finite amax of column j. Threads own columns (coalesced
    reads along a row); blocks along y split the rows and combine with an atomic max on the
    bit patterns, which order like the non-negative floats they encode."""
    rows, cols = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= cols:
        return
    m = float32(0.0)
    start = cuda.blockIdx.y * rows_per_block
    for i in range(start, min(start + rows_per_block, rows)):
        m = max(m, finite_abs(x[i, j]))
    cuda.atomic.max(amax_bits, j, float32_bits(m))


def _per_column_kernel(fmt):
    encode = _QUOTIENT_ENCODERS[fmt.name]
    fmax = float32(fmt.max)

    def build():
        @cuda.jit
        def kernel(x, amax_bits, codes, scales):
            rows, cols = x.shape
            j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
            if j >= cols:
                return
            scale = scale_from_amax(bits_float32(amax_bits[j]), fmax)
            if cuda.blockIdx.y == 0:
                scales[0, j] = scale
            for i in range(cuda.blockIdx.y, rows, cuda.gridDim.y):
                codes[i, j] = encode(x[i, j], scale)

        return kernel

    return _cached(("columns", fmt.name), build)


# -- host functions ---------------------------------------------------------------------------

_FLOATS = (np.float16, np.float32, np.float64)


def _as_device_float(x, name: str, ndim: int | None = None):
    """(device array, came_from_host), after the checks every quantizer makes."""
    from .reduction import _is_device_array

    host = not _is_device_array(x)
    if host:
        x = np.asarray(x)
    dtype = np.dtype(str(x.dtype).replace("torch.", ""))
    if dtype not in _FLOATS:
        raise ValueError(f"{name}: x must be a float16, float32 or float64 array, got dtype {dtype}")
    if ndim is not None and len(x.shape) != ndim:
        raise ValueError(f"{name}: x must be {ndim}-D, got shape {tuple(x.shape)}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)})")
    if host:
        return cuda.to_device(np.ascontiguousarray(x)), True
    return (x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)), False


def _blocks(n: int) -> int:
    return reduction._grid_blocks(n, THREADS * 4)


def _result(codes, scales, fmt, block, from_host) -> QTensor:
    q = QTensor(codes, scales, fmt, block)
    return q.to_host() if from_host else q


def finite_amax(flat):
    """A one-element device array: the largest finite |x| of contiguous 1-D device array `flat`."""
    partials = cuda.device_array(_blocks(flat.size), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.device_array(1, np.float32)
    kernel = _finite_amax_vec4 if aligned16(flat) else _finite_amax_scalar
    kernel[partials.size, THREADS](flat, partials, counter, out)
    return out


def per_tensor_into(flat, given, codes, scales, fmt, dynamic: bool):
    """The encode launch of :func:`quantize_per_tensor` on preallocated device arrays: `given`
    holds the amax (dynamic) or the scale (static); scales[0] receives the scale used."""
    fmt = fp8.as_format(fmt)
    if aligned16(flat) and flat.size % 4 == 0:
        words = codes.view(np.uint32)
        _per_tensor_kernel_vec4(fmt, dynamic)[_blocks(flat.size), THREADS](flat, given, words, scales)
    else:
        _per_tensor_kernel(fmt, dynamic)[_blocks(flat.size), THREADS](flat, given, codes, scales)


def quantize_per_tensor(x, fmt="e4m3", scale=None) -> QTensor:
    """One scale for the whole tensor (any rank). `scale=None`: dynamic, from the finite amax of
    `x`; a positive float: static. Returns a QTensor on the host for numpy input, on the
    device for device input."""
    fmt = fp8.as_format(fmt)
    d, from_host = _as_device_float(x, "quantize_per_tensor")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"quantize_per_tensor: scale must be a positive finite number, got {scale!r}")
    if not d.is_c_contiguous():
        raise ValueError(f"quantize_per_tensor: x must be contiguous, got strides {d.strides}")
    flat = d.reshape(math.prod(d.shape))
    given = cuda.to_device(np.array([scale], np.float32)) if scale is not None else finite_amax(flat)
    codes = cuda.device_array(flat.size, np.uint8)
    scales = cuda.device_array(1, np.float32)
    per_tensor_into(flat, given, codes, scales, fmt, dynamic=scale is None)
    ones = (1,) * len(d.shape)
    return _result(codes.reshape(d.shape), scales.reshape(ones), fmt, tuple(d.shape), from_host)


def quantize_per_channel(x, axis, fmt="e4m3") -> QTensor:
    """One scale per index along `axis` of 2-D `x`: axis=0 one per row (block (1, N)),
    axis=1 one per column (block (M, 1)). Dynamic: each scale from its channel's finite amax."""
    fmt = fp8.as_format(fmt)
    if axis not in (0, 1):
        raise ValueError(f"quantize_per_channel: axis must be 0 (rows) or 1 (columns), got {axis!r}")
    d, from_host = _as_device_float(x, "quantize_per_channel", ndim=2)
    rows, cols = d.shape
    codes = cuda.device_array((rows, cols), np.uint8)
    if axis == 0:
        scales = cuda.device_array((rows, 1), np.float32)
        _per_row_kernel(fmt)[reduction._grid_blocks(rows, 1), THREADS](d, codes, scales)
        return _result(codes, scales, fmt, (1, cols), from_host)
    scales = cuda.device_array((1, cols), np.float32)
    amax_bits = cuda.to_device(np.zeros(cols, np.int32))
    rows_per_block = 64 if ON_SIMULATOR else 256
    grid = (math.ceil(cols / THREADS), math.ceil(rows / rows_per_block))
    _column_amax_bits[grid, THREADS](d, rows_per_block, amax_bits)
    _per_column_kernel(fmt)[grid, THREADS](d, amax_bits, codes, scales)
    return _result(codes, scales, fmt, (rows, 1), from_host)


def calibrate(batches, percentile: float = 99.9) -> float:
    """A static per-tensor scale's amax, from calibration data: the given percentile of the
    per-batch finite amax values. Use it when a tensor's range is stable across inputs
    (weights; activations of a trained model on representative data) and the cost or the
    latency of a dynamic amax pass matters; the percentile keeps one freak batch from
    setting the range. Pass the result to `scale_from_amax` (tutorial.qtensor) to get the
    static scale. Batches beyond the calibrated range saturate."""
    if not 0 < percentile <= 100:
        raise ValueError(f"calibrate: percentile must be in (0, 100], got {percentile!r}")
    maxima = []
    for k, batch in enumerate(batches):
        d, _ = _as_device_float(batch, f"calibrate (batch {k})")
        if not d.is_c_contiguous():
            raise ValueError(f"calibrate: batch {k} must be contiguous")
        maxima.append(float(finite_amax(d.reshape(math.prod(d.shape))).copy_to_host()[0]))
    if not maxima:
        raise ValueError("calibrate: no batches given")
    return float(np.percentile(maxima, percentile))


__all__ = ["quantize_per_tensor", "quantize_per_channel", "calibrate", "finite_amax"]
