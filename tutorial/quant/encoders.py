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
"""

from __future__ import annotations

import numba
from numba import cuda

from .. import fp8, fp8_hardware
from ..runtime.bitcast import float32_bits
from ..runtime.device import ON_SIMULATOR

ENCODERS = ("auto", "software", "hardware")

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


def quotient_encoder(fmt, encoder: str = "auto", caller: str = "quotient_encoder"):
    """The device function `code = encode(x, scale)` (the code of x / scale) for `fmt`:
    "hardware" the one on the GPU's conversion instruction, "software" the one in integer
    arithmetic, "auto" the hardware one where the GPU has it. Identical codes either way.
    `caller` names the public function in error messages."""
    fmt = fp8.as_format(fmt)
    if encoder not in ENCODERS:
        raise ValueError(f"{caller}: encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder == "hardware" and not fp8_hardware.hardware_fp8_available():
        raise ValueError(f"{caller}: encoder='hardware' needs a GPU of compute capability >= 8.9")
    if encoder == "hardware" or (encoder == "auto" and fp8_hardware.hardware_fp8_available()):
        return {"e4m3": fp8_hardware.encode_e4m3_quotient_hw, "e5m2": fp8_hardware.encode_e5m2_quotient_hw}[fmt.name]
    return {"e4m3": encode_e4m3_quotient, "e5m2": encode_e5m2_quotient}[fmt.name]
