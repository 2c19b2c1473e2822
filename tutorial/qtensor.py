"""The result of every quantizer in the course, and the rule that turns a maximum into a scale.

A [`QTensor`][tutorial.qtensor.QTensor] holds FP8 codes and float32 scales with one fixed
meaning, whatever the granularity:

```text
x[i, j] ~= decode(codes[i, j]) * scales[i // block[0], j // block[1]]
```

(and likewise on any rank: per-tensor is the case `block == x.shape`, one scale). Per-channel
scaling along rows is block `(1, N)`; along columns `(M, 1)`; 1x128 groups `(1, 128)`; 128x128
tiles `(128, 128)`. Edge blocks that do not fill a whole `block` still get their own scale.

Scale rule: `scale = max(amax, EPS) / fmt.max`, rounded once to float32, where amax is
the largest *finite* magnitude in the block. So the block's largest value maps onto the
format's largest value, and nothing saturates. Non-finite values do not take part:

* NaN encodes to the NaN code and dequantizes to NaN; the rest of its block is unaffected.
* +-inf saturates to `+-fmt.max`, so it dequantizes to `+-fmt.max * scale` (= the block's
  largest finite magnitude, or EPS-sized when there is none).
* A block of zeros gets scale `EPS / fmt.max`; its codes are zeros and dequantize to exact 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fp8
from .runtime.launch import as_block

EPS = 2.0**-40  # the smallest amax a scale is taken from (~9e-13; a power of two, exact in float32)


def scale_from_amax(amax, fmt) -> np.ndarray:
    """float32 scales from float32 maxima: `max(amax, EPS) / fmt.max`, rounded once.

    The quotient is computed in float64 and rounded to float32. That equals float32 division
    bit for bit here: `fmt.max` is 7 * 2^k, and a / 7 is never close enough to a float32
    midpoint for the float64 rounding to matter.
    """
    fmt = fp8.as_format(fmt)
    amax = np.asarray(amax, np.float32).astype(np.float64)
    return (np.maximum(amax, EPS) / fmt.max).astype(np.float32)


@dataclass(frozen=True)
class QTensor:
    """FP8 codes and float32 scales; see the module docstring for the meaning.

    Checked at construction, so that a QTensor that exists is valid: `codes` a uint8 array
    (numpy or device) of any rank, `fmt` a [`Format`][tutorial.fp8.Format] or a name such as
    "e4m3" (stored as the Format), `block` one positive integer per dimension of `codes`
    (stored as a tuple of ints), `scales` float32 of shape `ceil(codes.shape / block)`.
    """

    codes: object  # uint8 FP8 bit patterns, the input's shape (numpy or device array)
    scales: object  # float32, shape ceil(codes.shape / block)
    fmt: fp8.Format
    block: tuple

    def __post_init__(self):
        for name in ("codes", "scales"):
            value = getattr(self, name)
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise TypeError(f"QTensor: {name} must be an array (numpy or device), got {type(value).__name__}")
        shape = tuple(self.codes.shape)
        if np.dtype(self.codes.dtype) != np.uint8:
            raise TypeError(f"QTensor: codes must be uint8 FP8 bit patterns, got dtype {self.codes.dtype}")
        if np.dtype(self.scales.dtype) != np.float32:
            raise TypeError(f"QTensor: scales must be float32, got dtype {self.scales.dtype}")
        object.__setattr__(self, "fmt", fp8.as_format(self.fmt, "QTensor"))
        object.__setattr__(self, "block", as_block(self.block, "QTensor", len(shape)))
        expected = tuple(-(-n // b) for n, b in zip(shape, self.block))
        if tuple(self.scales.shape) != expected:
            raise ValueError(f"QTensor: scales have shape {tuple(self.scales.shape)}, expected {expected} "
                             f"for codes {shape} in blocks {self.block}")

    @property
    def shape(self) -> tuple:
        return tuple(self.codes.shape)

    def to_host(self) -> "QTensor":
        """The same `QTensor` with numpy arrays (copies device arrays to the host)."""
        host = [a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a) for a in (self.codes, self.scales)]
        return QTensor(host[0], host[1], self.fmt, self.block)

    def scale_per_element(self) -> np.ndarray:
        """The scale that applies to each element, as a float32 array of the codes' shape (its
        memory follows the codes, whatever the block)."""
        scales = self.to_host().scales
        index = np.ix_(*(np.arange(n) // b for n, b in zip(self.shape, self.block)))
        return scales[index] if self.shape else scales.copy()

    def dequantize(self) -> np.ndarray:
        """`decode(codes) * scale`, in float32, on the host."""
        q = self.to_host()
        return fp8.decode(q.codes, self.fmt) * self.scale_per_element()
