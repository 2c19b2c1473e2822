"""FP8 encoders on the hardware's conversion instruction (compute capability >= 8.9).

`cvt.rn.satfinite.e4m3x2.f32` converts two float32 to two E4M3 codes in one instruction,
rounding to nearest even and saturating, exactly as [`tutorial.fp8`][tutorial.fp8]'s software
encoders do (checked on all 2^32 float32 inputs). The quantizers of chapters 02-04 encode a
quotient x / scale; to give the correctly rounded code of the exact quotient through an
instruction that rounds a float32, they hand it the quotient *rounded to odd*
([`quotient_rounded_to_odd`][]). The fast encoders (`encoder="fast"`) hand it the product
`x * inv` as float32 rounds it, as torch and DeepGEMM do. On the simulator, which has no such
instruction, every function here raises.
"""

from __future__ import annotations

import numba

from .runtime.bitcast import bits_float32, float32_bits
from .runtime.device import ON_SIMULATOR, hardware_fp8_available  # noqa: F401  (re-exported)

from numba import cuda  # noqa: E402

if not ON_SIMULATOR:
    from .runtime.ptx import cvt_e4m3x2, cvt_e5m2x2, rcp_approx_ftz

    @cuda.jit(device=True)
    def encode_e4m3_hw(x):
        """float32 -> E4M3 code with the hardware's `cvt.rn.satfinite` (needs CC >= 8.9)."""
        return numba.uint8(cvt_e4m3x2(numba.float32(0.0), numba.float32(x)))

    @cuda.jit(device=True)
    def encode_e5m2_hw(x):
        """float32 -> E5M2 code with the hardware's `cvt.rn.satfinite` (needs CC >= 8.9)."""
        return numba.uint8(cvt_e5m2x2(numba.float32(0.0), numba.float32(x)))

    # The quotient encoders on the hardware conversion, without a branch and without a
    # division. cvt rounds a float32 to nearest, so handing it q = x / scale (rounded once
    # already) would round twice. Instead it gets the quotient rounded *to odd*: the exact
    # quotient truncated to float32, with its last bit set if anything was cut off. A value
    # rounded to odd with at least two more bits than the target rounds to nearest exactly as
    # the exact value would (the odd last bit stands for "a little more", so no false tie can
    # appear), and float32's 24 bits are far more than FP8's 4.
    #
    # No IEEE division either (a dozen instructions with a slow path): q = x * (1 / scale)
    # from the hardware's approximate reciprocal is within about 2 ulps, one Newton step
    # q + (x - q * scale) / scale, with the remainder from an FMA, brings it within half an
    # ulp (plus ~2^-45 relative), and a second remainder's sign, exact from an FMA, says on
    # which side of q the exact quotient lies. The reciprocal depends only on the scale, so a
    # kernel that encodes many values with one scale computes it once (the compiler hoists it).

    @cuda.jit(device=True)
    def quotient_rounded_to_odd(x, scale, inv):
        """`x / scale` rounded to odd in float32, for scale > 0 a normal float32 and `inv` within a
        few ulps of `1 / scale`. inf and NaN quotients come out as they are."""
        x = numba.float32(x)
        q = x * inv
        # The Newton step q - (q * scale - x) / scale, written so that q = -0 stays -0 (the
        # other sign of the residual would turn -0 + 0 into +0, and -0.0 must encode to 0x80).
        refined = cuda.fma(-cuda.fma(q, scale, -x), inv, q)
        if refined == refined:  # not NaN: x = +-inf gives inf - inf in the step; q is right then
            q = refined
        r = cuda.fma(-q, scale, x)  # its sign is exact: the side of q the quotient lies on
        bits = float32_bits(q)
        # |r| > 0 is false for an exact q and for NaN r (x = +-inf: q = inf is right). Then, if
        # |exact| > |q|, q is the truncation, else the float32 just below |q| (bits - 1 in
        # sign-magnitude); and the odd bit. q = +-0 needs no exception: r has q's sign then.
        if abs(r) > numba.float32(0.0):
            bits = (bits + ((float32_bits(r) ^ bits) >> 31)) | 1
        return bits_float32(bits)

    def _hardware_quotient_encoders(cvt2):
        @cuda.jit(device=True)
        def encode(x, scale):
            scale = numba.float32(scale)
            q = quotient_rounded_to_odd(x, scale, rcp_approx_ftz(scale))
            return numba.uint8(cvt2(numba.float32(0.0), q))

        @cuda.jit(device=True)
        def encode4(a, b, c, d, scale):
            """The codes of a, b, c, d (low byte first) in one uint32: two per `cvt`."""
            scale = numba.float32(scale)
            inv = rcp_approx_ftz(scale)
            low = cvt2(quotient_rounded_to_odd(b, scale, inv), quotient_rounded_to_odd(a, scale, inv))
            high = cvt2(quotient_rounded_to_odd(d, scale, inv), quotient_rounded_to_odd(c, scale, inv))
            return low | (high << numba.uint32(16))

        return encode, encode4

    def _hardware_product_encoders(cvt2):
        # The fast encoders: the code of float32(x * inv), one multiply and half a cvt per value.
        @cuda.jit(device=True)
        def encode(x, inv):
            return numba.uint8(cvt2(numba.float32(0.0), numba.float32(x) * numba.float32(inv)))

        @cuda.jit(device=True)
        def encode4(a, b, c, d, inv):
            """The codes of a * inv, ..., d * inv (low byte first) in one uint32: two per `cvt`."""
            inv = numba.float32(inv)
            low = cvt2(numba.float32(b) * inv, numba.float32(a) * inv)
            high = cvt2(numba.float32(d) * inv, numba.float32(c) * inv)
            return low | (high << numba.uint32(16))

        return encode, encode4

    encode_e4m3_quotient_hw, encode4_e4m3_quotient_hw = _hardware_quotient_encoders(cvt_e4m3x2)
    encode_e4m3_quotient_hw.__doc__ = "encode_e4m3_quotient, identical codes, through the hardware cvt."
    encode_e5m2_quotient_hw, encode4_e5m2_quotient_hw = _hardware_quotient_encoders(cvt_e5m2x2)
    encode_e5m2_quotient_hw.__doc__ = "encode_e5m2_quotient, identical codes, through the hardware cvt."
    encode_e4m3_product_hw, encode4_e4m3_product_hw = _hardware_product_encoders(cvt_e4m3x2)
    encode_e4m3_product_hw.__doc__ = "E4M3 code of float32(x * inv), through the hardware cvt."
    encode_e5m2_product_hw, encode4_e5m2_product_hw = _hardware_product_encoders(cvt_e5m2x2)
    encode_e5m2_product_hw.__doc__ = "E5M2 code of float32(x * inv), through the hardware cvt."
    # The 4-codes-per-word form of each encoder that has one (see quant.per_tensor.word_encoder).
    WORD_ENCODERS = {encode_e4m3_quotient_hw: encode4_e4m3_quotient_hw,
                     encode_e5m2_quotient_hw: encode4_e5m2_quotient_hw,
                     encode_e4m3_product_hw: encode4_e4m3_product_hw,
                     encode_e5m2_product_hw: encode4_e5m2_product_hw}

else:

    def _no_hardware(*args):
        raise RuntimeError("the hardware FP8 conversion needs a GPU of compute capability >= 8.9; "
                           "the simulator has none: use tutorial.fp8.encode_e4m3 / encode_e5m2")

    encode_e4m3_hw = encode_e5m2_hw = encode_e4m3_quotient_hw = encode_e5m2_quotient_hw = _no_hardware
    encode4_e4m3_quotient_hw = encode4_e5m2_quotient_hw = quotient_rounded_to_odd = _no_hardware
    encode_e4m3_product_hw = encode_e5m2_product_hw = encode4_e4m3_product_hw = encode4_e5m2_product_hw = _no_hardware
    WORD_ENCODERS = {}
