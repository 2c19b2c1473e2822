"""Host side of TMA: tensor maps, and dynamic shared memory beyond 48 KB (GPU only).

A *tensor map* (`CUtensorMap`, 128 bytes) tells the Tensor Memory Accelerator where a global
tensor is, its shape and strides, the box a copy moves, and how to swizzle the box in shared
memory. The driver encodes it (`cuTensorMapEncodeTiled`, from the cuda-bindings package
that numba-cuda itself uses). A kernel needs it at a global address: CUDA C++ passes it as a
`__grid_constant__` parameter, which Numba cannot spell, so here its bytes are copied to a
small device array, and the kernel acquires them once before the first copy
(`tutorial.runtime.tma_ptx.tensormap_acquire`). Maps are cached per tensor and box, so a
benchmark's repeated calls encode and copy nothing.

Kernels get 48 KB of shared memory unless the function is allowed more
([`allow_dynamic_shared`][]); Hopper allows 227 KB per block.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import cuda

SWIZZLE_128B = 128  # the box's rows of 128 bytes, each 16-byte chunk c of row r at chunk c ^ (r % 8)
_MAPS: dict = {}
_MAPS_KEPT = 64  # tensor maps kept (each a 128-byte device array and the tensor it names)


def _driver():
    from cuda.bindings import driver
    return driver


def _check(result, what: str):
    err, *value = result if isinstance(result, tuple) else (result,)
    if err != _driver().CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")
    return value[0] if len(value) == 1 else value


def tensor_map_2d(array, box_rows: int, box_cols: int):
    """A device copy of the tensor map of a 2-D C-contiguous uint8 device `array` (rows,
    cols), for boxes of `box_rows` x `box_cols` bytes with 128-byte swizzle (box_cols =
    128). Reads past the edges give zeros. TMA needs the base 16-byte aligned and the row
    pitch (cols) a multiple of 16."""
    rows, cols = array.shape
    address = array.__cuda_array_interface__["data"][0]
    if address % 16 or cols % 16:
        raise ValueError(f"tensor_map_2d: TMA needs a 16-byte aligned base and rows of a multiple of 16 bytes, "
                         f"got address {address:#x} and {cols} bytes per row")
    if box_cols != SWIZZLE_128B or not 1 <= box_rows <= 256:
        raise ValueError(f"tensor_map_2d: boxes are 128 bytes wide (the swizzle's span) and 1-256 rows, got "
                         f"{box_rows} x {box_cols}")
    key = (address, rows, cols, box_rows, box_cols)
    if key in _MAPS:
        return _MAPS[key][0]
    d = _driver()
    tensor_map = _check(d.cuTensorMapEncodeTiled(
        d.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, address,
        [d.cuuint64_t(cols), d.cuuint64_t(rows)],  # sizes, innermost first
        [d.cuuint64_t(cols)],  # the stride of the outer dimension, in bytes
        [d.cuuint32_t(box_cols), d.cuuint32_t(box_rows)], [d.cuuint32_t(1), d.cuuint32_t(1)],
        d.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, d.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        d.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        d.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE), "cuTensorMapEncodeTiled")
    raw = np.frombuffer(ctypes.string_at(tensor_map.getPtr(), 128), np.uint8).copy()
    if len(_MAPS) >= _MAPS_KEPT:
        _MAPS.pop(next(iter(_MAPS)))
    # keep the tensor alive with its map: a freed and reused address must not find a stale map
    _MAPS[key] = (cuda.to_device(raw), array)
    return _MAPS[key][0]


def allow_dynamic_shared(dispatcher, argtypes, nbytes: int):
    """Compile `dispatcher` for `argtypes` (numba types) and let that kernel use `nbytes` of
    dynamic shared memory (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)."""
    function = dispatcher.compile(tuple(argtypes))._codelibrary.get_cufunc()
    d = _driver()
    attribute = d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    _check(d.cuKernelSetAttribute(attribute, int(nbytes), function.handle, function.device.id), "cuKernelSetAttribute")


__all__ = ["tensor_map_2d", "allow_dynamic_shared", "SWIZZLE_128B"]
