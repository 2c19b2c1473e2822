"""Chapter 02: per-tensor FP8 quantization, static and dynamic.

One scale for the whole tensor. Static quantization is given its scale (from calibration,
[`calibrate`][]) and is one launch: the fused scale-and-encode pass. Dynamic quantization
computes the scale from the tensor itself: chapter 01's one-launch reduction finds the finite
amax, then the same encode pass turns the amax into the scale on the device (no copy back to
the host in between) and encodes. Both match
[`tutorial.reference.per_tensor_reference`][tutorial.reference.per_tensor_reference] bit for
bit, codes and scales.

The encode pass is memory-bound: per element it reads 4 bytes and writes 1. So it reads four
floats with one 16-byte load (chapter 01's `load4`) and writes their four codes with one
32-bit store ([`pack4`][]): a store of one byte per thread would use a quarter of each
memory transaction. Each thread issues the loads of several words before its first store
(`per_trip`). The library takes one step more, [`per_tensor_kernel_x8`][]: 8 neighbouring
values per thread and one 8-byte store. Two encoders (`encoder=`): the exact one, the
default, and the fast one of torch and DeepGEMM (`tutorial.quant.encoders`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, uint32, uint64

from .. import fp8, fp8_hardware
from ..qtensor import QTensor
from ..reduction import THREADS
from ..runtime.launch import as_device, grid_blocks, launch_covering
from ..runtime.loads import BF16, aligned, aligned16, load4, load8_f32, load8_of, widen_bf16
from .common import finite_amax, loader, scale_rule, stride_blocks
from .encoders import check_encoder, factor_rule, quotient_encoder


@cuda.jit(device=True)
def pack4(c0, c1, c2, c3):
    """Four uint8 codes in one 32-bit word, c0 in the low byte: stored to a uint32 view of the
    codes array, they land in memory as c0, c1, c2, c3 (the GPU is little-endian)."""
    # BEGIN SOLUTION: widen each code to uint32, shift it to its byte, OR them together
    # widen before shifting: a uint8 shifted left by 8 would overflow in numpy's typing rules
    return uint32(c0) | (uint32(c1) << uint32(8)) | (uint32(c2) << uint32(16)) | (uint32(c3) << uint32(24))
    # END SOLUTION


MIN_SCALE, MAX_SCALE = 2.0**-126, 2.0**126  # the static scales the encoders take (see quantize_per_tensor)


@functools.cache
def word_encoder(encode):
    """The device function `encode4(a, b, c, d, scale)`: the uint32 word of the codes of a, b,
    c, d (a in the low byte), each encoded with `encode(x, scale)`. The hardware encoders have a
    version that converts two values per `cvt` instruction (`tutorial.fp8_hardware`); any
    other encoder is applied four times and packed with [`pack4`][]. Same codes either way."""
    paired = fp8_hardware.WORD_ENCODERS.get(encode)
    if paired is not None:
        return paired

    @cuda.jit(device=True)
    def encode4(a, b, c, d, scale):
        return pack4(encode(a, scale), encode(b, scale), encode(c, scale), encode(d, scale))

    return encode4


@functools.cache
def scale_and_factor(fmt, dynamic: bool, encoder: str = "exact"):
    """The device function `(scale, factor) = rule(amax_or_scale)`: the scale from a dynamic
    amax (or the static scale itself) and the encoder's operand for it."""
    factor_of = factor_rule(fmt, encoder, from_scale=not dynamic)
    fmax = float32(fmt.max)

    @cuda.jit(device=True)
    def rule(amax_or_scale):
        scale = scale_rule(amax_or_scale, fmax) if dynamic else amax_or_scale
        return scale, factor_of(amax_or_scale, scale)

    return rule


@functools.cache
def per_tensor_kernel(fmt, dynamic: bool, encoder: str = "exact"):
    """`codes[i] = encode(x[i] / scale)` over 1-D x, one element per thread per trip.

    The general version, for any dtype, size and alignment. `amax_or_scale` is a one-element
    device array: the amax (dynamic: the scale is computed here, by every thread, the same
    float32 division) or the scale itself (static). `scales[0]` receives the scale used.
    `encoder`: "exact" or "fast" (see `tutorial.quant.encoders`).
    """
    encode = quotient_encoder(fmt, encoder)
    scale_of = scale_and_factor(fmt, dynamic, encoder)

    @cuda.jit
    def kernel(x, amax_or_scale, codes, scales):
        scale, factor = scale_of(amax_or_scale[0])
        if cuda.grid(1) == 0:
            scales[0] = scale
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            codes[i] = encode(x[i], factor)

    return kernel


# 16-byte float32 loads / 8-byte bfloat16 loads a thread issues before its first store. One
# is not enough on the H200: 4.8 TB/s needs more bytes in flight than one load per thread of a
# full SM holds (static per-tensor, float32: 1 load 3.25 TB/s, 2 loads 4.18; bfloat16 with
# 8-byte loads: 2 of them 3.08, 4 3.69).
PER_TRIP = {np.dtype(np.float32): 2, BF16: 4}
# Units of 8 values a thread of per_tensor_kernel_x8 loads per trip: float32 1 (two 16-byte
# loads), bfloat16 2 (one 16-byte load each; 1 of them: 8 bytes in flight per thread, too few).
PER_TRIP_X8 = {np.dtype(np.float32): 1, BF16: 2}


@functools.cache
def per_tensor_kernel_vec4(fmt, dynamic: bool, load=load4, encoder: str = "exact", per_trip: int = 1):
    """The same 4 elements at a time: thread t handles words t, t + gridsize, ..., `per_trip`
    of them per trip of its grid-stride loop, all their loads issued before the first store.

    The kernel's arguments:

    * `x`: 1-D, `x.size % 4 == 0`, read with `load`: `load4` (float32, 16-byte aligned: one
      16-byte load) or `load4_bf16` (bfloat16 bits, 8-byte aligned: one 8-byte load).
    * `amax_or_scale`: float32[1], as in [`per_tensor_kernel`][].
    * `words`: the codes array viewed as uint32 (`codes.view(np.uint32)`): word g holds the
      codes of `x[4g : 4g + 4]`.
    * `scales`: float32[1], receives the scale.

    `encode4(a, b, c, d, factor)` takes the encoder's operand, `factor_of(amax_or_scale[0],
    scale)`: the scale itself for the exact encoder, a reciprocal for the fast one.

    Why several words per trip: a thread's next load waits for nothing but its issue slot,
    while its store waits for its load. Loading `per_trip` words before encoding any keeps
    that many 16-byte requests in flight per thread instead of one: memory latency is paid
    once per trip, not once per word.
    """
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    factor_of = factor_rule(fmt, encoder, from_scale=not dynamic)
    fmax = float32(fmt.max)

    @cuda.jit
    def kernel(x, amax_or_scale, words, scales):
        vals = cuda.local.array((per_trip, 4), float32)  # the words of one trip, loaded
        # BEGIN SOLUTION: a grid-stride loop (a while loop) whose trip covers words g + u * stride, u < per_trip: thread 0 first stores the scale (from the amax with scale_rule if dynamic, else as given) in scales[0]; in each trip, first load the 4 values of each word (those < words.size) into vals[u]; then compute the scale and the encoder's factor_of(amax_or_scale[0], scale); then store each word's encode4 (given the factor)
        stride = cuda.gridsize(1)
        g = cuda.grid(1)
        if g == 0:  # (before the loop: an empty x gets its scale too)
            scales[0] = scale_rule(amax_or_scale[0], fmax) if dynamic else amax_or_scale[0]
        while g < words.size:  # (a while loop: `range` would divide to count its trips)
            for u in range(per_trip):  # every load of the trip first ...
                if g + u * stride < words.size:
                    vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3] = load(x, 4 * (g + u * stride))
            # ... then the scale: read after the loads, its latency overlaps theirs
            scale = scale_rule(amax_or_scale[0], fmax) if dynamic else amax_or_scale[0]
            factor = factor_of(amax_or_scale[0], scale)
            for u in range(per_trip):  # ... then the stores
                if g + u * stride < words.size:
                    words[g + u * stride] = encode4(vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3], factor)
            g += stride * per_trip
        # END SOLUTION

    return kernel


@functools.cache
def per_tensor_kernel_x8(fmt, dynamic: bool, load8=load8_f32, encoder: str = "exact", per_trip: int = 1):
    """The step after [`per_tensor_kernel_vec4`][]: a thread owns 8 neighbouring values (a
    unit), `per_trip` units a grid apart, and writes each unit's 8 codes with one 8-byte store.
    It takes one trip, without a loop: launch it with
    [`launch_covering`][tutorial.runtime.launch.launch_covering], whose `first` (the grid's
    first unit) is its last argument.

    `load8` reads a unit: [`load8_f32`][tutorial.runtime.loads.load8_f32] (two 16-byte loads)
    or [`load8_bf16`][tutorial.runtime.loads.load8_bf16] (one). `dwords` is the codes array
    viewed as uint64 (8-byte aligned): dword p holds the codes of `x[8p : 8p + 8]`. The other
    arguments are [`per_tensor_kernel_vec4`][]'s.

    Why (H200, 32768 x 4096, fast encoder, against torch.compile in the same runs):

    * float32: with the two words of a thread a grid apart (the exercise's layout) the kernel
      ran at 0.994-0.996x torch.compile; with them side by side, one 8-byte store, at
      0.997-0.999x. torch.compile's kernel has the same shape: 8 values per thread.
    * bfloat16: an element is 2 bytes, so at the same bytes per second it needs 1.5x the
      elements per second of float32; 8-byte loads of 4 values ran out of load instructions
      first (3.69 TB/s, torch.compile 3.81); 16-byte loads of 8 values, 2 per trip, 3.95;
      the same with 8-byte stores and one trip, 4.10 (torch.compile 3.75 in that run).
    """
    encode4 = word_encoder(quotient_encoder(fmt, encoder))
    scale_of = scale_and_factor(fmt, dynamic, encoder)

    @cuda.jit
    def kernel(x, amax_or_scale, dwords, scales, first):
        # One trip, no loop (launch with launch_covering): the grid's units are first + p +
        # u * gridsize, u < per_trip
        stride = cuda.gridsize(1)
        p = first + cuda.grid(1)
        vals = cuda.local.array((per_trip, 8), float32)
        if p == 0:  # (an empty x gets its scale too)
            scales[0] = scale_of(amax_or_scale[0])[0]
        for u in range(per_trip):  # every load first ...
            if p + u * stride < dwords.size:
                (vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3],
                 vals[u, 4], vals[u, 5], vals[u, 6], vals[u, 7]) = load8(x, 8 * (p + u * stride))
        factor = scale_of(amax_or_scale[0])[1]  # (read after the loads: its latency overlaps theirs)
        for u in range(per_trip):  # ... then one 8-byte store per unit
            q = p + u * stride
            if q < dwords.size:
                lo = encode4(vals[u, 0], vals[u, 1], vals[u, 2], vals[u, 3], factor)
                hi = encode4(vals[u, 4], vals[u, 5], vals[u, 6], vals[u, 7], factor)
                dwords[q] = uint64(lo) | (uint64(hi) << uint64(32))

    return kernel


def per_tensor_into(flat, given, codes, scales, fmt, dynamic: bool, encoder: str = "exact"):
    """The encode launch of [`quantize_per_tensor`][] on preallocated device arrays: `given`
    holds the amax (dynamic) or the scale (static); `scales[0]` receives the scale used."""
    fmt = fp8.as_format(fmt)
    load8 = load8_of(flat)
    # float32 with the exact encoder (the default) stays on the exercise's kernel, so that what
    # quantize_per_tensor runs, and grades, is the learner's per_tensor_kernel_vec4.
    wide = np.dtype(flat.dtype) == BF16 or encoder == "fast"
    if wide and load8 is not None and flat.size % 8 == 0 and aligned(codes, 8):
        per_trip = PER_TRIP_X8[np.dtype(flat.dtype)]
        kernel = per_tensor_kernel_x8(fmt, dynamic, load8, encoder, per_trip)
        dwords = codes.view(np.uint64)
        launch_covering(kernel, dwords.size, THREADS * per_trip, THREADS, flat, given, dwords, scales)
    elif aligned16(flat) and flat.size % 4 == 0:
        words = codes.view(np.uint32)
        per_trip = PER_TRIP[np.dtype(flat.dtype)]
        kernel = per_tensor_kernel_vec4(fmt, dynamic, loader(flat), encoder, per_trip)
        # As many blocks as cover the words in one trip, not a few per SM: on the H200, 2 per
        # trip with a grid capped at 16 blocks per SM ran at 4.00 TB/s, uncapped 4.18.
        kernel[grid_blocks(words.size, THREADS * per_trip, per_sm=None), THREADS](flat, given, words, scales)
    else:
        if np.dtype(flat.dtype) == BF16:
            flat = widen_bf16(flat)
        per_tensor_kernel(fmt, dynamic, encoder)[stride_blocks(flat.size), THREADS](flat, given, codes, scales)


def static_scale(scale, caller: str) -> np.float32:
    """A static scale, checked: a real number (Python, numpy, or a 0-d array), positive,
    finite, and within [2^-126, 2^126] once rounded to float32."""
    if isinstance(scale, (bool, np.bool_)) or not (isinstance(scale, (int, float, np.integer, np.floating))
                                                   or (isinstance(scale, np.ndarray) and scale.ndim == 0
                                                       and scale.dtype.kind in "iuf")):
        raise TypeError(f"{caller}: scale must be a positive number (or None for a dynamic scale), got {scale!r}")
    value = np.float32(scale)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{caller}: scale must be a positive finite number, got {scale!r}")
    if not MIN_SCALE <= value <= MAX_SCALE:
        # The hardware encoder divides by multiplying with 1 / scale, which float32 holds only
        # for scales in this range; no finite input needs a scale outside it.
        raise ValueError(f"{caller}: scale must be between 2^-126 and 2^126 (a float32 whose reciprocal is a "
                         f"normal float32), got {scale!r}")
    return value


def quantize_per_tensor(x, fmt="e4m3", scale=None, *, encoder="exact") -> QTensor:
    """One scale for the whole tensor (any rank, 0-d included). `scale=None`: dynamic, from the
    finite amax of `x`; a positive number: static. Returns a QTensor on the host for numpy
    input, on the device for device input. float64 input is rounded to float32 first (the
    codes are those of `x.astype(np.float32)`); a finite float64 value beyond float32's range
    is an error. `encoder`: "exact" (the correctly rounded codes of x / scale) or "fast" (of
    x * (fmax / amax), or x * (1 / scale) for a static scale, as torch computes them)."""
    fmt = fp8.as_format(fmt, "quantize_per_tensor")
    encoder = check_encoder(encoder, "quantize_per_tensor")
    scale = None if scale is None else static_scale(scale, "quantize_per_tensor")
    d, from_host = as_device(x, "quantize_per_tensor")
    if not d.is_c_contiguous():
        raise ValueError(f"quantize_per_tensor: x must be contiguous, got strides {d.strides}")
    flat = d.reshape(math.prod(d.shape))
    given = cuda.to_device(np.array([scale], np.float32)) if scale is not None else finite_amax(flat)
    codes = cuda.device_array(flat.size, np.uint8)
    scales = cuda.device_array(1, np.float32)
    per_tensor_into(flat, given, codes, scales, fmt, dynamic=scale is None, encoder=encoder)
    if from_host:  # (a 0-d result keeps its shape: numpy reshapes to (), device arrays do not)
        return QTensor(codes.copy_to_host().reshape(d.shape), scales.copy_to_host().reshape((1,) * len(d.shape)),
                       fmt, tuple(d.shape))
    return QTensor(codes.reshape(d.shape), scales.reshape((1,) * len(d.shape)), fmt, tuple(d.shape))


def calibrate(batches, percentile: float = 99.9) -> float:
    """A static per-tensor scale's amax, from calibration data: the given percentile of the
    per-batch finite amax values. Use it when a tensor's range is stable across inputs
    (weights; activations of a trained model on representative data) and the cost or the
    latency of a dynamic amax pass matters; the percentile keeps one freak batch from
    setting the range. Pass the result to
    [`scale_from_amax`][tutorial.qtensor.scale_from_amax] (`tutorial.qtensor`) to get the
    static scale. Batches beyond the calibrated range saturate. Each batch is checked as
    [`quantize_per_tensor`][] checks `x` (a float64 value beyond float32's range is an
    error)."""
    if isinstance(percentile, (bool, np.bool_)) or not isinstance(percentile, (int, float, np.integer, np.floating)) \
            or not 0 < percentile <= 100:
        raise ValueError(f"calibrate: percentile must be a number in (0, 100], got {percentile!r}")
    if isinstance(batches, (np.ndarray, str)) or hasattr(batches, "copy_to_host") or not hasattr(batches, "__iter__"):
        raise TypeError("calibrate: batches must be a list (or any iterable) of arrays, one per batch, got "
                        f"{type(batches).__name__}")
    maxima = []
    for k, batch in enumerate(batches):
        d, _ = as_device(batch, f"calibrate (batch {k})")
        if not d.is_c_contiguous():
            raise ValueError(f"calibrate: batch {k} must be contiguous")
        maxima.append(float(finite_amax(d.reshape(math.prod(d.shape))).copy_to_host()[0]))
    if not maxima:
        raise ValueError("calibrate: no batches given")
    return float(np.percentile(maxima, percentile))


__all__ = ["quantize_per_tensor", "calibrate", "pack4", "word_encoder", "per_tensor_into", "per_tensor_kernel",
           "per_tensor_kernel_vec4", "per_tensor_kernel_x8"]
