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
from ..runtime.launch import grid_blocks
from ..runtime.loads import float32_to_bf16

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


@cuda.jit
def _bf16_kernel(src, dst):
    """dst[i] = the bits of the bfloat16 nearest to src[i] (1-D, grid-stride)."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = float32_to_bf16(src[i])


def bfloat16_bits(c, out):
    """Round the float32 device array `c` to bfloat16, nearest even, into the uint16 device
    array `out` of the same shape (its bits): for kernels that write float32 only."""
    if c.size:
        _bf16_kernel[grid_blocks(c.size, 256), 256](c.reshape(c.size), out.reshape(out.size))
    return out
