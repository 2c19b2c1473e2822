"""An oracle for the library, written again from the definitions (issue 16).

It shares no code with the library (not even `tutorial.reference`): FP8 values come from
ml_dtypes, rounding is done on exact rationals (`fractions.Fraction`), and the loops are plain
Python over tiles and elements, like DeepGEMM's `per_token_cast_to_fp8`. Slow, so tests give
it a few hundred elements at a time.

The definitions:

* Input: float16, bfloat16, float32 or float64, rounded once to float32 (exact but for
  float64); a finite float64 beyond float32's range is an error.
* A block's scale: `max(amax, 2**-40) / fmt.max`, computed in float64 and rounded once to
  float32, where amax is the block's largest finite |x| (0 if none). A power-of-two scale:
  the smallest 2**k with `max(amax, 2**-40) / 2**k <= fmt.max`.
* A code: the FP8 value nearest to the exact quotient x / scale, ties to the even code,
  saturating to +-max (inf too), NaN to 0x7f, the sign of x kept (also on zero).
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction

import ml_dtypes
import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4028234663852886e38
EPS = 2.0**-40  # the smallest amax a scale is taken from
U = Fraction(1, 2**24)  # float32's unit roundoff
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64))


class Format:
    """An FP8 format as ml_dtypes defines it: `grid[c]` is the exact value of code c >= 0."""

    def __init__(self, name, ml_dtype, max_code):
        self.name, self.ml_dtype, self.max_code = name, ml_dtype, max_code
        values = np.arange(max_code + 1, dtype=np.uint8).view(ml_dtype).astype(np.float64)
        self.grid = [Fraction(float(v)) for v in values]  # increasing: codes 0 .. max_code
        self.max = float(values[-1])


NAN_CODE = 0x7F  # every NaN, whatever its sign, in both formats
FORMATS = {"e4m3": Format("e4m3", ml_dtypes.float8_e4m3fn, 0x7E), "e5m2": Format("e5m2", ml_dtypes.float8_e5m2, 0x7B)}


def fmt_of(fmt) -> Format:
    """The oracle's format for "e4m3" / "e5m2" or anything with that `.name` (the library's)."""
    return FORMATS[str(getattr(fmt, "name", fmt)).lower()]


# -- rounding -----------------------------------------------------------------------------


def code_of(value: Fraction, negative: bool, fmt) -> int:
    """The FP8 code of the exact rational `value` >= 0 with the given sign: round to nearest,
    ties to the even code (codes of one sign increase with the value, so the even code is
    the one with an even mantissa), saturating beyond the largest value."""
    fmt = fmt_of(fmt)
    grid, sign = fmt.grid, 0x80 if negative else 0
    if value >= grid[-1]:
        return sign | fmt.max_code
    hi = bisect.bisect_right(grid, value)  # grid[hi - 1] <= value < grid[hi]
    lo = hi - 1
    below, above = value - grid[lo], grid[hi] - value
    code = lo if below < above or (below == above and lo % 2 == 0) else hi
    return sign | code


def code_of_quotient(v: float, scale: Fraction, fmt) -> int:
    """The FP8 code of v / scale (scale > 0), the quotient exact: NaN -> 0x7f, +-inf saturates."""
    if math.isnan(v):
        return NAN_CODE
    negative = math.copysign(1.0, v) < 0  # -0.0 too: the sign of zero is kept
    if math.isinf(v):
        return (0x80 if negative else 0) | fmt_of(fmt).max_code
    return code_of(abs(Fraction(v)) / scale, negative, fmt)


def encode_quotient(x, scale, fmt) -> np.ndarray:
    """uint8 codes of `x / scale` (x float32, scale a positive float32 scalar), element by element."""
    x, s = np.asarray(x, np.float32), Fraction(float(np.float32(scale)))
    codes = np.empty(x.shape, np.uint8)
    for i, v in np.ndenumerate(x):
        codes[i] = code_of_quotient(float(v), s, fmt)
    return codes


def encode(x, fmt) -> np.ndarray:
    """fp8.encode: the code of each value of float16/32/64 or bfloat16 `x` itself, rounded once
    from its own dtype (each is exact in float64, hence as a Fraction)."""
    wide = np.asarray(x).astype(np.float64)
    codes = np.empty(wide.shape, np.uint8)
    for i, v in np.ndenumerate(wide):
        codes[i] = code_of_quotient(float(v), Fraction(1), fmt)
    return codes


def decode(codes, fmt) -> np.ndarray:
    """float64 values of uint8 codes (NaN codes give NaN), by ml_dtypes."""
    return np.asarray(codes, np.uint8).view(fmt_of(fmt).ml_dtype).astype(np.float64)


# -- input and scales -----------------------------------------------------------------------


def as_float32(x) -> np.ndarray:
    """`x` rounded once to float32 (round to nearest even), after the library's input rules."""
    x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"oracle: x has dtype {x.dtype}")
    wide = x.astype(np.float64)
    if np.any(np.abs(wide[np.isfinite(wide)]) > FLOAT32_MAX):
        raise ValueError("oracle: x holds finite values beyond float32's range")
    return x.astype(np.float32)


def finite_amax(x) -> float:
    """The largest finite |x| (0.0 when there is none)."""
    x = np.asarray(x, np.float64).reshape(-1)
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 0.0


def scale_of(amax: float, fmt, pow2=False) -> np.float32:
    """The scale rule. Plain: the float64 quotient rounded once to float32, as the spec
    defines it. pow2: the smallest power of two s with max(amax, EPS) / s <= fmt.max, found
    by exact comparison of rationals (2**k for k from -60 up: amax >= EPS keeps s >= 2**-49)."""
    a = max(float(amax), EPS)
    fmax = fmt_of(fmt).max
    if not pow2:
        return np.float32(np.float64(a) / np.float64(fmax))
    k = math.frexp(a / fmax)[1] - 2  # a / fmax < 2**(k + 2): start at most two powers too low
    while Fraction(a) / Fraction(2) ** k > Fraction(fmax):
        k += 1
    return np.float32(2.0**k)


# -- quantizers and reductions ---------------------------------------------------------------


def tiles(shape, block):
    """(index into the scales, slices into x) of every `block` tile of `shape`; edge tiles smaller."""
    grid = tuple(-(-n // b) for n, b in zip(shape, block))
    for idx in np.ndindex(*grid):
        yield idx, tuple(slice(i * b, (i + 1) * b) for i, b in zip(idx, block))


def quantize_blocks(x, block, fmt="e4m3", pow2=False):
    """(codes, scales) with one scale per `block` tile of `x` (any rank; block == x.shape is
    per-tensor, (1, N) per row, (M, 1) per column)."""
    x = as_float32(x)
    grid = tuple(-(-n // b) for n, b in zip(x.shape, block))
    codes, scales = np.empty(x.shape, np.uint8), np.empty(grid, np.float32)
    for idx, tile in tiles(x.shape, block):
        scales[idx] = scale_of(finite_amax(x[tile]), fmt, pow2)
        codes[tile] = encode_quotient(x[tile], scales[idx], fmt)
    return codes, scales


def quantize_static(x, scale, fmt="e4m3"):
    """(codes, scales) of a per-tensor quantization with the given scale, rounded to float32."""
    x = as_float32(x)
    scale = np.float32(scale)
    return encode_quotient(x, scale, fmt), np.full((1,) * x.ndim, scale, np.float32)


def absmax(x) -> float:
    """max |float32(x)|, NaN propagating, -0.0 as +0.0 (numpy's semantics)."""
    return float(np.max(np.abs(as_float32(x))))


def absmax_blocks(x, block) -> np.ndarray:
    """float32 max |x| over each `block` tile of 2-D `x` (NaN propagating)."""
    x = as_float32(x)
    grid = tuple(-(-n // b) for n, b in zip(x.shape, block))
    out = np.empty(grid, np.float32)
    for idx, tile in tiles(x.shape, block):
        out[idx] = np.max(np.abs(x[tile]))
    return out


def interleave(codes, scales, group) -> np.ndarray:
    """The interleaved buffer of (1, group) codes and scales: per row, each group's codes, then
    the 4 little-endian bytes of its float32 scale."""
    rows = codes.shape[0]
    scale_bytes = np.ascontiguousarray(scales, "<f4").view(np.uint8).reshape(rows, -1, 4)
    return np.concatenate([codes.reshape(rows, -1, group), scale_bytes], axis=2).reshape(rows, -1)


def calibrate(batches, percentile) -> float:
    """The percentile (numpy's linear interpolation) of the batches' finite amax values."""
    return float(np.percentile([finite_amax(as_float32(b)) for b in batches], percentile))


def tiling_constraints(kind: str, bm, bn, bk, t1, t2) -> list:
    """The constraints a Tiling (t1, t2 = tm, tn) or MmaTiling (t1, t2 = wm, wn) of positive
    integers breaks, for its kernel to compute the whole of C (empty: none broken)."""
    broken = []
    if kind == "Tiling":
        broken += ["bm % tm"] * (bm % t1 != 0) + ["bn % tn"] * (bn % t2 != 0)
        broken += ["threads"] * ((bm // t1) * (bn // t2) > 1024)
    else:
        broken += ["bm % wm"] * (bm % t1 != 0 or (bm // t1) % 16 != 0)
        broken += ["bn % wn"] * (bn % t2 != 0 or (bn // t2) % 8 != 0)
        broken += ["bk % 32"] * (bk % 32 != 0) + ["threads"] * (t1 * t2 * 32 > 1024)
    return broken


# -- matrix products -------------------------------------------------------------------------


def dequantized(codes, scales, block, fmt) -> np.ndarray:
    """The exact values decode(code) * scale, as an object array of Fractions."""
    values = decode(codes, fmt)
    out = np.empty(values.shape, object)
    for idx, tile in tiles(values.shape, block):
        s = Fraction(float(scales[idx]))
        for i, v in np.ndenumerate(values[tile]):
            out[tuple(t.start + k for t, k in zip(tile, i))] = Fraction(float(v)) * s
    return out


def exact(x) -> np.ndarray:
    """A float array's values as an object array of Fractions (exact)."""
    x = np.asarray(x, np.float64)
    out = np.empty(x.shape, object)
    for i, v in np.ndenumerate(x):
        out[i] = Fraction(float(v))
    return out


def gamma(n: int) -> Fraction:
    """gamma_n = n u / (1 - n u), u = 2**-24: the bound on n float32 roundings in a row."""
    return n * U / (1 - n * U)


def matmul_violations(c, a, b, roundings: int, relative: float = 0.0) -> list:
    """Where float32 `c` is not within `(gamma(roundings) + relative) * (|a| @ |b|)` of the
    exact `a @ b` (a, b object arrays of Fractions): a list of (i, j, got, exact, bound), empty
    if none. `relative`: an accumulation with fewer bits than float32's (the tensor cores')."""
    c = np.asarray(c, np.float32)
    if a.shape[1] == 0:
        products, magnitudes = np.zeros((a.shape[0], b.shape[1]), object), np.zeros((a.shape[0], b.shape[1]), object)
    else:
        products, magnitudes = a @ b, np.abs(a) @ np.abs(b)
    g, bad = gamma(roundings) + Fraction(relative), []
    for (i, j), got in np.ndenumerate(c):
        want, bound = Fraction(products[i, j]), g * Fraction(magnitudes[i, j])
        if not math.isfinite(float(got)) or abs(Fraction(float(got)) - want) > bound:
            bad.append((i, j, float(got), float(want), float(bound)))
    return bad
