"""Measuring quantization error: metrics, synthetic LLM-like inputs, and the INT8 contrast.

Chapters 02 to 04 compare quantizers on the same footing with these helpers. Everything here
is plain numpy on the host (no kernel launches), so it is fast on large inputs and exact:

* [`error_metrics`][] - MAE, max error, relative Frobenius error and SQNR of a
  reconstruction, in float64;
* [`weight_like`][] and [`activation_like`][] - random matrices shaped like what an LLM
  feeds a GEMM: weights with a few heavy-tailed rows, activations with a few outlier
  channels (columns) tens of times larger than the rest (Dettmers et al. 2022, LLM.int8());
* [`int8_absmax`][] - symmetric absmax INT8 quantize + dequantize, for contrast;
* [`fp8_roundtrip`][] - FP8 quantize + dequantize through
  [`tutorial.reference`][tutorial.reference] (bit for bit what the kernels produce);
* [`accuracy_table`][] and [`format_table`][] - the metrics of several methods on one
  input, as rows and as a plain-text table.
"""

from __future__ import annotations

import math

import numpy as np

from . import reference
from .qtensor import EPS

METRICS = ("mae", "max_abs", "rel_fro", "sqnr_db")
_HEADERS = {"mae": "MAE", "max_abs": "max abs", "rel_fro": "rel Frobenius", "sqnr_db": "SQNR dB"}


def error_metrics(x, xhat) -> dict:
    """How far the reconstruction `xhat` is from `x`, over the elements where `x` is finite.

    Non-finite elements of `x` (NaN, +-inf) are left out: their "error" is not a number.
    Computed in float64, with e = x - xhat:

    * `mae`: mean |e|;
    * `max_abs`: max |e|;
    * `rel_fro`: `||e||_F / ||x||_F` (0 when both are 0, inf when only x is 0);
    * `sqnr_db`: `10 log10(sum x^2 / sum e^2)`, signal-to-quantization-noise ratio in dB;
      +inf when the reconstruction is exact. Each bit of precision is worth about 6 dB.
    """
    x = np.asarray(x, np.float64)
    xhat = np.asarray(xhat, np.float64)
    if x.shape != xhat.shape:
        raise ValueError(f"error_metrics: x has shape {x.shape} but xhat has shape {xhat.shape}")
    finite = np.isfinite(x)
    if not finite.any():
        raise ValueError("error_metrics: x has no finite element to measure")
    x, e = x[finite], x[finite] - xhat[finite]
    signal, noise = float(np.sum(x * x)), float(np.sum(e * e))
    rel_fro = 0.0 if noise == 0 else math.sqrt(noise / signal) if signal > 0 else math.inf
    sqnr_db = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return {"mae": float(np.mean(np.abs(e))), "max_abs": float(np.max(np.abs(e))),
            "rel_fro": rel_fro, "sqnr_db": sqnr_db}


def _picked(n: int, count: int, rng) -> np.ndarray:
    """`count` distinct sorted indices below n (at least one), drawn from `rng`."""
    return np.sort(rng.choice(n, size=min(max(count, 1), n), replace=False))


def heavy_rows(shape, seed: int, fraction: float = 0.01) -> np.ndarray:
    """The rows [`weight_like`][] (same shape, seed and fraction) makes heavy-tailed."""
    rows = shape[0]
    return _picked(rows, round(fraction * rows), np.random.default_rng(seed))


def weight_like(shape, seed: int, std: float = 0.02, fraction: float = 0.01) -> np.ndarray:
    """float32 (rows, cols) like an LLM weight: N(0, std^2) values, except that a `fraction`
    of the rows (at least one, listed by [`heavy_rows`][]) draw from std * Student-t
    with 3 degrees of freedom, whose tails reach tens of std. Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    heavy = _picked(rows, round(fraction * rows), rng)  # first draw: heavy_rows repeats it
    w = rng.standard_normal((rows, cols)) * std
    w[heavy] = rng.standard_t(3, size=(heavy.size, cols)) * std
    return w.astype(np.float32)


def outlier_columns(shape, seed: int, outlier_channels: int = 4) -> np.ndarray:
    """The columns (channels) [`activation_like`][] (same shape, seed and count) makes large."""
    return _picked(shape[1], outlier_channels, np.random.default_rng(seed))


def activation_like(shape, seed: int, outlier_channels: int = 4,
                    outlier_scale: tuple[float, float] = (40.0, 60.0)) -> np.ndarray:
    """float32 (tokens, channels) like the input of an LLM linear layer: N(0, 1) values, except
    that `outlier_channels` columns (listed by [`outlier_columns`][]) are multiplied by a
    factor drawn uniformly from `outlier_scale`, one per column, for every token. That is
    the pattern LLM.int8() (Dettmers et al. 2022) found: a few feature dimensions, the same
    across tokens, tens of times larger than the rest. Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    tokens, channels = shape
    columns = _picked(channels, outlier_channels, rng)  # first draw: outlier_columns repeats it
    factors = rng.uniform(*outlier_scale, size=columns.size)
    a = rng.standard_normal((tokens, channels))
    a[:, columns] *= factors
    return a.astype(np.float32)


def int8_absmax(x, axis=None) -> np.ndarray:
    """Symmetric absmax INT8 quantize + dequantize, returned as float32.

    `scale = max(amax, EPS) / 127`, where amax is the largest finite |x| of the group;
    `q = round(x / scale)` (half to even), clipped to [-127, 127]; result `q * scale`.
    Groups as in [`tutorial.quantize_per_channel`][tutorial.quant.per_channel.quantize_per_channel]:
    `axis=None` one scale for the tensor; `axis=0` one per row (2-D x); `axis=1` one per
    column. NaN stays NaN and +-inf saturates to `+-127 * scale`, like the FP8 quantizers.
    """
    x = np.asarray(x, np.float64)
    if axis is not None and (x.ndim != 2 or axis not in (0, 1)):
        raise ValueError(f"int8_absmax: axis must be None, 0 (rows) or 1 (columns) of 2-D x; "
                         f"got axis={axis!r} for shape {x.shape}")
    reduce_over = None if axis is None else 1 - axis  # one scale per row: reduce along the row
    amax = reference.finite_amax(x, axis=reduce_over, keepdims=axis is not None)
    scale = np.maximum(amax, EPS) / 127.0
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint(x / scale), -127, 127)
    return (q * scale).astype(np.float32)


GRANULARITIES = ("tensor", "row", "column")


def fp8_roundtrip(x, granularity: str = "tensor", fmt="e4m3") -> np.ndarray:
    """FP8 quantize + dequantize (float32) with the exact references of
    [`tutorial.reference`][tutorial.reference]: `granularity` "tensor" (one scale), "row" (one
    per row) or "column" (one per column), or a block shape such as `(1, 128)`."""
    if isinstance(granularity, tuple):
        return reference.blockwise_reference(x, granularity, fmt).dequantize()
    if granularity == "tensor":
        return reference.per_tensor_reference(x, fmt).dequantize()
    if granularity in ("row", "column"):
        return reference.per_channel_reference(x, {"row": 0, "column": 1}[granularity], fmt).dequantize()
    raise ValueError(f"fp8_roundtrip: granularity must be one of {GRANULARITIES} or a block shape, "
                     f"got {granularity!r}")


def accuracy_table(x, methods: dict) -> list[dict]:
    """One row per method: `{"method": name, **error_metrics(x, xhat)}`, in the order given."""
    return [{"method": name, **error_metrics(x, xhat)} for name, xhat in methods.items()]


def format_table(rows: list[dict]) -> str:
    """Rows of [`accuracy_table`][] as a plain-text table. Columns that hold text (such as
    "method", or any label added to the rows) come first, then the four metrics."""
    labels = [k for k in rows[0] if k not in METRICS]
    cells = [[str(r[k]) for k in labels]
             + [f"{r['mae']:.3e}", f"{r['max_abs']:.3e}", f"{r['rel_fro']:.3e}", f"{r['sqnr_db']:.2f}"]
             for r in rows]
    header = labels + [_HEADERS[m] for m in METRICS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    n = len(labels)

    def line(values):
        return "  ".join(v.ljust(w) if i < n else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, cells)])



def calc_diff(x, y) -> float:
    """DeepGEMM's GEMM check: `1 - 2 sum(x y) / sum(x^2 + y^2)`, in float64. 0 for identical
    arrays; about the squared relative error for close ones (so 1e-6 is ~0.1% error)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    denominator = np.sum(x * x + y * y)
    return float(1 - 2 * np.sum(x * y) / denominator) if denominator else 0.0


def gemm_errors(c, exact) -> dict:
    """How far a GEMM result `c` is from the unquantized float64 product `exact`: the relative
    Frobenius error and DeepGEMM's `calc_diff`."""
    c, exact = np.asarray(c, np.float64), np.asarray(exact, np.float64)
    norm = np.linalg.norm(exact)
    return {"rel_fro": float(np.linalg.norm(c - exact) / norm) if norm else float(np.linalg.norm(c)),
            "calc_diff": calc_diff(c, exact)}


__all__ = ["accuracy_table", "activation_like", "calc_diff", "error_metrics", "format_table", "fp8_roundtrip",
           "gemm_errors", "heavy_rows", "int8_absmax", "outlier_columns", "weight_like"]
