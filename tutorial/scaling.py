"""What every quantizer of chapters 02-04 shares: a finite amax, the scale rule on the device,
the quotient encoder to use, and the checks on its input.

* The scale comes from the largest *finite* magnitude: NaN and +-inf count as 0, so one bad
  value cannot blow a scale up (chapter 01's reduction machinery with [`finite_abs`][]).
* [`scale_from_amax`][] is the rule of [`tutorial.qtensor`][tutorial.qtensor], in float32,
  bit for bit.
* Each code is the correctly rounded FP8 code of the exact quotient x / scale
  (`tutorial.fp8.encode_e4m3_quotient`), not of its float32 rounding. On compute
  capability >= 8.9 the hardware conversion does most of that rounding, with the same codes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from . import fp8, reduction
from .device import ON_SIMULATOR
from .loads import BF16, aligned16, bf16_to_float32, load4, load4_bf16
from .qtensor import EPS
from .reduction import THREADS

FLT_MAX = float32(3.4028234663852886e38)
_EPS32 = float32(EPS)


@cuda.jit(device=True)
def finite_abs(v):
    """`|v|` for finite v; 0 for NaN and +-inf, which must not set a scale."""
    a = abs(float32(v))
    return a if a <= FLT_MAX else float32(0.0)  # NaN <= anything is False


@cuda.jit(device=True)
def finite_abs_at(x, i):
    return finite_abs(x[i])


@cuda.jit(device=True)
def finite_abs_bf16_at(x, i):
    return finite_abs(bf16_to_float32(x[i]))


def finite_absmax4_with(load):
    """The device function finite amax of `x[i:i + 4]`, read with one `load` (`load4`: 16 bytes
    of float32; `load4_bf16`: 8 bytes of bfloat16)."""

    @cuda.jit(device=True)
    def finite_absmax4(x, i):
        a, b, c, d = load(x, i)
        return max(max(finite_abs(a), finite_abs(b)), max(finite_abs(c), finite_abs(d)))

    return finite_absmax4


finite_absmax4 = finite_absmax4_with(load4)


@cuda.jit(device=True)
def scale_from_amax(amax, fmax):
    """`max(amax, EPS) / fmax` in float32: the scale rule of `tutorial.qtensor`, bit for bit."""
    return max(float32(amax), _EPS32) / float32(fmax)


finite_amax_kernel_vec4 = reduction.max_kernel_vec4(finite_absmax4, finite_abs_at)
finite_amax_kernel = reduction.max_kernel_scalar(finite_abs_at)
finite_amax_kernel_bf16 = reduction.max_kernel_vec4(finite_absmax4_with(load4_bf16), finite_abs_bf16_at)


def loader(d):
    """The 4-element load for device array `d`'s dtype: `load4` (float32) or `load4_bf16`."""
    return load4_bf16 if np.dtype(d.dtype) == BF16 else load4


def quotient_encoder(fmt):
    """The device function `code = encode(x / scale)` for `fmt`: the hardware-assisted one where
    the GPU converts to FP8 itself (identical codes), else the software one."""
    if fp8.hardware_fp8_available():
        return {"e4m3": fp8.encode_e4m3_quotient_hw, "e5m2": fp8.encode_e5m2_quotient_hw}[fmt.name]
    return {"e4m3": fp8.encode_e4m3_quotient, "e5m2": fp8.encode_e5m2_quotient}[fmt.name]


_kernels: dict = {}


def cached_kernel(key, build):
    """`build()` once per key: kernels specialised on a format (or a size) are made on first use."""
    if key not in _kernels:
        _kernels[key] = build()
    return _kernels[key]


# -- host side ----------------------------------------------------------------------------------

_FLOATS = ("float16", "float32", "float64", "bfloat16")


def as_device_float(x, name: str, ndim: int | None = None):
    """(device array, came_from_host), after the checks every quantizer makes: a float dtype,
    the rank if one is required, not empty. Numpy input is copied to the device; numba, torch
    and cupy device arrays are used where they are. bfloat16 (ml_dtypes on the host, torch on
    the device) arrives as a uint16 device array of its bit patterns (see `tutorial.loads`)."""
    host = not reduction._is_device_array(x)
    if host:
        x = np.asarray(x)
    dtype = str(x.dtype).replace("torch.", "")
    if dtype not in _FLOATS:
        raise ValueError(f"{name}: x must be a float16, bfloat16, float32 or float64 array, got dtype {dtype}")
    if ndim is not None and len(x.shape) != ndim:
        raise ValueError(f"{name}: x must be {ndim}-D, got shape {tuple(x.shape)}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)})")
    if host:
        x = np.ascontiguousarray(x)
        return cuda.to_device(x.view(np.uint16) if dtype == "bfloat16" else x), True
    if dtype == "bfloat16":  # torch exports no bfloat16 through __cuda_array_interface__: pass the bits
        x = x.view(__import__("torch").int16)
    d = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
    return (d.view(np.uint16) if dtype == "bfloat16" else d), False


def vec4_ready(d) -> bool:
    """Whether contiguous device array `d` can be read 4 elements at a time (float32 with
    16-byte alignment or bfloat16 with 8-byte, a multiple of 4 elements in its last dimension)."""
    return (d.is_c_contiguous() and d.shape[len(d.shape) - 1] % 4 == 0  # (the simulator has no shape[-1])
            and aligned16(d.reshape(math.prod(d.shape))))


@cuda.jit
def _widen_bf16(bits, out):
    for i in range(cuda.grid(1), bits.size, cuda.gridsize(1)):
        out[i] = bf16_to_float32(bits[i])


def widen_bf16(d):
    """A float32 copy of bfloat16 bits `d` (any shape; exact): for the general kernels, which
    read elements one by one and do not decode bfloat16 themselves."""
    out = cuda.device_array(d.shape, np.float32)
    flat = out.reshape(out.size)
    _widen_bf16[grid_blocks(out.size), THREADS](d.reshape(out.size), flat)
    return out


def sm_count() -> int:
    """Streaming multiprocessors of the GPU, for grids sized in blocks per SM (1 on the simulator,
    which runs blocks one after another)."""
    return 1 if ON_SIMULATOR else cuda.get_current_device().MULTIPROCESSOR_COUNT


def grid_blocks(n: int) -> int:
    """Blocks for a grid-stride pass over n elements, 4 per thread per trip."""
    return reduction._grid_blocks(n, THREADS * 4)


def finite_amax(flat):
    """A one-element device array: the largest finite |x| of contiguous 1-D device array `flat`."""
    partials = cuda.device_array(grid_blocks(flat.size), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.device_array(1, np.float32)
    finite_amax_into(flat, partials, counter, out)
    return out


def finite_amax_into(flat, partials, counter, out):
    """The one launch of [`finite_amax`][] on preallocated arrays (see
    [`reduction.absmax_into`][tutorial.reduction.absmax_into])."""
    if np.dtype(flat.dtype) == BF16 and not aligned16(flat):
        flat = widen_bf16(flat)
    if aligned16(flat):
        kernel = finite_amax_kernel_bf16 if np.dtype(flat.dtype) == BF16 else finite_amax_kernel_vec4
    else:
        kernel = finite_amax_kernel
    kernel[partials.size, THREADS](flat, partials, counter, out)
