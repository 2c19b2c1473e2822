"""The quantizers' encoders: the FP8 code of a quotient x / scale, rounded once.

Quantizing stores the FP8 code of x / scale. Computing q = x / scale in float32 rounds once,
and encoding q rounds again: when q lands exactly on a midpoint between two FP8 values,
ties-to-even may pick the wrong neighbour for the exact quotient (double rounding). The
remainder x - q * scale, exact with a fused multiply-add, says on which side of q the exact
quotient lies, and [`round_bits_to_fp8`][tutorial.fp8.round_bits_to_fp8] uses that to break
the false tie. The result is the correctly rounded code of the exact quotient: what a float64
reference computes. On compute capability >= 8.9 the hardware conversion does the same with
identical codes ([`tutorial.fp8_hardware`][tutorial.fp8_hardware]); [`quotient_encoder`][]
picks one.

Two encoders, chosen with `encoder=` on every quantizer:

* `"exact"` (the default): the correctly rounded code of the exact quotient `x / scale`, as
  above. The codes depend only on x and the scale.
* `"fast"`: the code of `float32(x * inv)`, one multiply and one saturating conversion, with
  `inv = fmax / max(amax, EPS)` in float32 for a scale computed from an amax and
  `inv = 1 / scale` for a given one (static, or a power of two). That is what DeepGEMM's
  `per_token_cast_to_fp8` and torch's `(x * (448 / amax)).to(float8_e4m3fn)` compute, bit for
  bit. It rounds twice (the product, then the code), and `inv` is not exactly `1 / scale`:
  some codes differ by one step from the exact ones (chapter 02's notebook counts them).

The kernels ask the encoder for its per-scale operand once per scale ([`factor_rule`][]: the
scale itself for "exact", `inv` for "fast") and pass it to every `encode(x, factor)` call.
"""

from __future__ import annotations

import functools

import numba
from numba import cuda

from .. import fp8, fp8_hardware
from ..qtensor import EPS
from ..runtime.bitcast import float32_bits
from ..runtime.device import ON_SIMULATOR

ENCODERS = ("exact", "fast", "software", "hardware")  # the last two: "exact" on one implementation
_EPS32 = numba.float32(EPS)

if ON_SIMULATOR:

    def quotient_remainder(x, q, scale):
        """`x - q * scale`, exactly (float64 holds it: q * scale has 48 bits, and nearly cancels
        x)."""
        return float(x) - float(q) * float(scale)

else:

    @cuda.jit(device=True)
    def quotient_remainder(x, q, scale):
        """`x - q * scale`, exactly: one fused multiply-add rounds only the (exact) result."""
        return cuda.fma(-q, scale, x)


@cuda.jit(device=True)
def quotient_sticky(x, q, scale):
    """+1 if |x / scale| lies above |q| (q = x / scale rounded to float32), -1 below, 0 exact."""
    r = quotient_remainder(x, q, scale)
    if r == 0 or q == 0:
        return 0
    return 1 if (r > 0) == (q > 0) else -1


def _quotient_encoder(mbits, bias, max_bits, max_code):
    @cuda.jit(device=True)
    def encode(x, scale):
        q = numba.float32(x) / numba.float32(scale)
        sticky = quotient_sticky(numba.float32(x), q, numba.float32(scale))
        return numba.uint8(fp8.round_bits_device(float32_bits(q), 23, 8, mbits, bias, max_bits, max_code, 0x7F, sticky))

    return encode


encode_e4m3_quotient = _quotient_encoder(3, 7, fp8.E4M3.max_bits, 0x7E)
encode_e4m3_quotient.__doc__ = "E4M3 code of x / scale (scale > 0), correctly rounded from the exact quotient."
encode_e5m2_quotient = _quotient_encoder(2, 15, fp8.E5M2.max_bits, 0x7B)
encode_e5m2_quotient.__doc__ = "E5M2 code of x / scale (scale > 0), correctly rounded from the exact quotient."


def _product_encoder(encode):
    @cuda.jit(device=True)
    def encode_product(x, inv):
        return encode(numba.float32(x) * numba.float32(inv))

    return encode_product


encode_e4m3_product = _product_encoder(fp8.encode_e4m3)
encode_e4m3_product.__doc__ = "E4M3 code of float32(x * inv): the fast encoder, in integer arithmetic."
encode_e5m2_product = _product_encoder(fp8.encode_e5m2)
encode_e5m2_product.__doc__ = "E5M2 code of float32(x * inv): the fast encoder, in integer arithmetic."


def check_encoder(encoder, caller: str) -> str:
    """`encoder`, checked: one of ENCODERS (a hardware one only where the GPU has FP8 conversion)."""
    if not isinstance(encoder, str) or encoder not in ENCODERS:
        raise ValueError(f"{caller}: encoder must be one of {ENCODERS} (\"exact\": the correctly rounded code of "
                         f"x / scale; \"fast\": the code of x * (fmax / amax), as torch and DeepGEMM), got {encoder!r}")
    if encoder == "hardware" and not fp8_hardware.hardware_fp8_available():
        raise ValueError(f"{caller}: encoder='hardware' needs a GPU of compute capability >= 8.9")
    return encoder


def quotient_encoder(fmt, encoder: str = "exact", caller: str = "quotient_encoder"):
    """The device function `code = encode(x, factor)` of `encoder` for `fmt`, where `factor` is
    what [`factor_rule`][] gives. "exact": the code of x / factor (factor = the scale), on the
    GPU's conversion instruction where it has one; "software" and "hardware" the same codes on
    one implementation. "fast": the code of float32(x * factor) (factor = the reciprocal).
    `caller` names the public function in error messages."""
    fmt = fp8.as_format(fmt)
    encoder = check_encoder(encoder, caller)
    hardware = encoder == "hardware" or (encoder in ("exact", "fast") and fp8_hardware.hardware_fp8_available())
    if encoder == "fast":
        if hardware:
            return {"e4m3": fp8_hardware.encode_e4m3_product_hw, "e5m2": fp8_hardware.encode_e5m2_product_hw}[fmt.name]
        return {"e4m3": encode_e4m3_product, "e5m2": encode_e5m2_product}[fmt.name]
    if hardware:
        return {"e4m3": fp8_hardware.encode_e4m3_quotient_hw, "e5m2": fp8_hardware.encode_e5m2_quotient_hw}[fmt.name]
    return {"e4m3": encode_e4m3_quotient, "e5m2": encode_e5m2_quotient}[fmt.name]


@cuda.jit(device=True)
def _the_scale(amax, scale):
    return numba.float32(scale)


@cuda.jit(device=True)
def _reciprocal_of_scale(amax, scale):
    return numba.float32(1.0) / numba.float32(scale)  # IEEE division, correctly rounded, as torch's


@functools.cache
def factor_rule(fmt, encoder: str = "exact", from_scale: bool = False):
    """The device function `factor = rule(amax, scale)`: the operand the encoder's `encode(x,
    factor)` takes, computed once per scale. The exact encoders take the scale itself. The fast
    one takes a reciprocal: `fmax / max(amax, EPS)` (DeepGEMM's `448 / amax`), or
    `1 / scale` where `from_scale` (a static scale; power-of-two scales, whose reciprocal is
    exact, as DeepGEMM's UE8M0 casts use it), with `amax` then unused."""
    if encoder != "fast":
        return _the_scale
    if from_scale:
        return _reciprocal_of_scale
    fmax = numba.float32(fp8.as_format(fmt).max)

    @cuda.jit(device=True)
    def reciprocal_of_amax(amax, scale):
        return fmax / max(numba.float32(amax), _EPS32)

    return reciprocal_of_amax
