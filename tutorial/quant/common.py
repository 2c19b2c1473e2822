"""What every quantizer of chapters 02-04 shares: a finite amax, the scale rules on the device,
and the 4-element loader for the input's dtype.

* The scale comes from the largest *finite* magnitude: NaN and +-inf count as 0, so one bad
  value cannot blow a scale up (chapter 01's reduction machinery with [`finite_abs`][]).
* [`scale_rule`][] is the rule of [`tutorial.qtensor.scale_from_amax`][tutorial.qtensor.scale_from_amax]
  in float32 on the device, bit for bit; [`pow2_scale_rule`][] that of
  [`tutorial.reference.pow2_scale_from_amax`][tutorial.reference.pow2_scale_from_amax].
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from .. import reduction
from ..qtensor import EPS
from ..reduction import FULL_MASK, THREADS, WARP, warp_max
from ..runtime.bitcast import bits_float32, float32_bits
from ..runtime.launch import grid_blocks
from ..runtime.loads import BF16, aligned16, bf16_to_float32, load4, load4_bf16, widen_bf16

FLT_MAX = float32(3.4028234663852886e38)
_EPS32 = float32(EPS)


@cuda.jit(device=True)
def finite_abs(v):
    """`|v|` for finite v; 0 for NaN and +-inf, which must not set a scale."""
    a = abs(float32(v))
    return a if a <= FLT_MAX else float32(0.0)  # NaN <= anything is False


@cuda.jit(device=True)
def finite_amax4(a, b, c, d):
    """The largest finite magnitude of four values (0 if none is finite)."""
    return max(max(finite_abs(a), finite_abs(b)), max(finite_abs(c), finite_abs(d)))


@cuda.jit(device=True)
def finite_abs_at(x, i):
    return finite_abs(x[i])


@cuda.jit(device=True)
def finite_abs_bf16_at(x, i):
    return finite_abs(bf16_to_float32(x[i]))


def finite_amax4_at(load):
    """The device function: the finite amax of `x[i:i + 4]`, read with one `load` (`load4`: 16
    bytes of float32; `load4_bf16`: 8 bytes of bfloat16)."""

    @cuda.jit(device=True)
    def amax4(x, i):
        a, b, c, d = load(x, i)
        return finite_amax4(a, b, c, d)

    return amax4


@cuda.jit(device=True)
def scale_rule(amax, fmax):
    """`max(amax, EPS) / fmax` in float32: the scale rule of `tutorial.qtensor`, bit for bit."""
    return max(float32(amax), _EPS32) / float32(fmax)


@cuda.jit(device=True)
def pow2_scale_rule(amax, fmax):
    """The smallest power of two s with `max(amax, EPS) / s <= fmax`: a UE8M0 scale (MX formats,
    DeepSeek-V3.1), rounded up so that nothing saturates. Exact: products by powers of two are."""
    a = max(float32(amax), _EPS32)
    s = bits_float32(float32_bits(a / float32(fmax)) & 0x7F800000)  # 2^floor(log2(a / fmax))
    if s * float32(fmax) < a:  # also catches a / fmax rounding down onto a power of two
        s = s * float32(2.0)
    return s


finite_amax_kernel_vec4 = reduction.max_kernel_vec4(finite_amax4_at(load4), finite_abs_at)
finite_amax_kernel = reduction.max_kernel_scalar(finite_abs_at)
finite_amax_kernel_bf16 = reduction.max_kernel_vec4(finite_amax4_at(load4_bf16), finite_abs_bf16_at)


def loader(d):
    """The 4-element load for device array `d`'s dtype: `load4` (float32) or `load4_bf16`."""
    return load4_bf16 if np.dtype(d.dtype) == BF16 else load4


def vec4_ready(d) -> bool:
    """Whether contiguous device array `d` can be read 4 elements at a time (float32 with
    16-byte alignment or bfloat16 with 8-byte, a multiple of 4 elements in its last dimension)."""
    return (d.is_c_contiguous() and d.shape[len(d.shape) - 1] % 4 == 0  # (the simulator has no shape[-1])
            and aligned16(d.reshape(math.prod(d.shape))))


def stride_blocks(n: int) -> int:
    """Blocks for a grid-stride pass over n elements, 4 per thread per trip."""
    return grid_blocks(n, THREADS * 4)


def finite_amax(flat):
    """A one-element device array: the largest finite |x| of contiguous 1-D device array `flat`."""
    partials = cuda.device_array(stride_blocks(flat.size), np.float32)
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


# -- group maxima and scale rules ------------------------------------------------------------------

def scale_rule_of(pow2: bool):
    """The device function turning an amax into a scale: power-of-two (UE8M0) or plain."""
    return pow2_scale_rule if pow2 else scale_rule


def lanes_max(lanes: int):
    """The device function: the maximum of `v` over each aligned group of `lanes` neighbouring
    lanes (a power of two up to 32), to every lane of the group. With `lanes == 32` it is
    chapter 01's `warp_max`; narrower groups take its butterfly's last log2(lanes) steps.
    `lanes` is baked in, so the steps unroll into plain shuffles."""
    if lanes == WARP:
        return warp_max

    @cuda.jit(device=True)
    def group_max(v):
        offset = lanes // 2
        while offset > 0:
            v = max(v, cuda.shfl_xor_sync(FULL_MASK, v, offset))
            offset //= 2
        return v

    return group_max
