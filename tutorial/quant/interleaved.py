"""Chapter 04's interleaved layout: each 1 x `group` group's codes followed by the 4 bytes of its
float32 scale, in one buffer, so that a reader of a group finds its scale in the same cache
lines. [`quantize_groups_interleaved`][] writes it (with
[`row_group_kernel`][tutorial.quant.blockwise.row_group_kernel]'s "interleaved" layout);
[`split_interleaved`][] reads it back as a QTensor.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import fp8
from ..qtensor import QTensor
from ..runtime.launch import as_device, as_size
from ..runtime.loads import as_float32
from .blockwise import blockwise_into
from .common import vec4_ready
from .encoders import check_encoder


def quantize_groups_interleaved(x, group=128, fmt="e4m3", pow2_scales=False, *, encoder="exact"):
    """1 x `group` quantization into one buffer: each group's `group` codes followed by the 4
    bytes of its float32 scale, uint8 of shape (M, N / group * (group + 4)). A reader of one
    group then finds its scale in the same 128-byte lines. [`split_interleaved`][] turns it
    back into a QTensor. Input as for
    [`quantize_blockwise`][tutorial.quant.blockwise.quantize_blockwise], `encoder` too."""
    fmt = fp8.as_format(fmt, "quantize_groups_interleaved")
    encoder = check_encoder(encoder, "quantize_groups_interleaved")
    bn = as_size(group, "quantize_groups_interleaved", "group")
    if not (bn % 128 == 0 or bn in (16, 32, 64)):
        raise ValueError(f"quantize_groups_interleaved: group must be 16, 32, 64 or a multiple of 128 (a group is "
                         f"whole 16-byte loads of a warp), got {bn}")
    d, from_host = as_device(x, "quantize_groups_interleaved", ndim=2)
    d = as_float32(d) if not vec4_ready(d) else d  # the layout's kernel reads 4 values per load
    rows, cols = d.shape
    if cols % bn:
        raise ValueError(f"quantize_groups_interleaved: N = {cols} must be a multiple of group = {bn}")
    buf = cuda.device_array((rows, cols // bn * (bn + 4)), np.uint8)
    blockwise_into(d, 1, bn, buf, cuda.device_array(1, np.float32), fmt, layout="interleaved", pow2=pow2_scales,
                   encoder=encoder)
    return buf.copy_to_host() if from_host else buf


def split_interleaved(buf, group, fmt="e4m3", *, cols=None) -> QTensor:
    """The QTensor (codes, scales) held in an interleaved buffer of
    [`quantize_groups_interleaved`][]: `group` as it was made with, and `cols` the quantized
    matrix's N. Both are needed: the buffer alone cannot tell its group size (a buffer of
    groups of 128 has rows that split into groups of 62 too, with a wrong meaning), so its
    shape is checked against them."""
    name = "split_interleaved"
    group = as_size(group, name, "group")
    if cols is None:
        raise TypeError(f"{name}: cols (the quantized matrix's N) is required: the buffer alone cannot tell its "
                        "group size")
    cols = as_size(cols, name, "cols")
    buf = np.asarray(buf.copy_to_host() if hasattr(buf, "copy_to_host") else buf)
    if buf.dtype != np.uint8 or buf.ndim != 2:
        raise TypeError(f"{name}: buf must be a 2-D uint8 buffer of quantize_groups_interleaved, got "
                        f"{buf.ndim}-D {buf.dtype}")
    if cols % group or buf.shape[1] != cols // group * (group + 4):
        raise ValueError(f"{name}: a buffer of {cols} columns in groups of {group} has "
                         f"{cols // group * (group + 4) if cols % group == 0 else 'no'} bytes per row "
                         f"(cols a multiple of group); this one has {buf.shape[1]}: group or cols is not the one "
                         "it was made with")
    rows = buf.shape[0]
    per_group = buf.reshape(rows, -1, group + 4)
    codes = np.ascontiguousarray(per_group[:, :, :group]).reshape(rows, -1)
    scales = np.ascontiguousarray(per_group[:, :, group:]).view(np.float32).reshape(rows, -1)
    return QTensor(codes, scales, fp8.as_format(fmt, name), (1, group))


__all__ = ["quantize_groups_interleaved", "split_interleaved"]
