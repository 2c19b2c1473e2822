"""Getting a GEMM's operands onto the device, once: codes as words, scales, block shapes, decode
tables, and buffers reused between calls.

A GEMM launch that copied a decode table or a block shape to the device on every call would
add a synchronising copy to every GEMM; these small arrays are made once and kept.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import fp8
from ..qtensor import QTensor

_CONSTANTS: dict = {}


def device_array(x):
    """`x` on the device (a device array stays where it is)."""
    return x if hasattr(x, "copy_to_host") else cuda.to_device(np.ascontiguousarray(x))


def constant(key, make):
    """A small device array made once, by `make()`, and kept under `key`."""
    if key not in _CONSTANTS:
        _CONSTANTS[key] = cuda.to_device(np.asarray(make()))
    return _CONSTANTS[key]


def buffer(shape, dtype):
    """A device buffer kept per shape: every launch that uses one writes all of it first, and
    launches on one stream run in order."""
    return constant(("buffer", shape, np.dtype(dtype).name), lambda: np.zeros(shape, dtype))


def code_words(codes):
    """(R, C) uint8 codes as a (R, ceil(C / 4)) uint32 device array, 4 codes to a word; C is
    padded with zero codes to a multiple of 4 (on the host: only odd shapes pay that copy)."""
    rows, cols = codes.shape
    if cols % 4 == 0 and (not hasattr(codes, "copy_to_host") or codes.is_c_contiguous()):
        return device_array(codes).view(np.uint32)
    host = codes.copy_to_host() if hasattr(codes, "copy_to_host") else np.asarray(codes)
    padded = np.zeros((rows, -(-cols // 4) * 4), np.uint8)
    padded[:, :cols] = host
    return cuda.to_device(padded).view(np.uint32)


def scales_and_blocks(a: QTensor, b: QTensor):
    """Both operands' scales (float32, on the device) and block shapes (int64[2], kept)."""
    scales = [q.scales if hasattr(q.scales, "copy_to_host") else device_array(np.asarray(q.scales, np.float32))
              for q in (a, b)]
    blocks = [constant(("block", q.block), lambda q=q: np.asarray(q.block, np.int64)) for q in (a, b)]
    return scales, blocks


def decode_table(fmt):
    """The decoded value of every code of `fmt`: 256 float32, on the device."""
    fmt = fp8.as_format(fmt)
    return constant(("lut", fmt.name), lambda: fp8.decode(np.arange(256, dtype=np.uint8), fmt))


def placeholders():
    """Unused scale arguments (scales, block, decode table) for the float32 kernel: one kernel
    signature for every mode."""
    return (constant(("placeholder", "scales"), lambda: np.ones((1, 1), np.float32)),
            constant(("placeholder", "block"), lambda: np.ones(2, np.int64)),
            constant(("placeholder", "lut"), lambda: np.zeros(256, np.float32)))
