"""Chapters 02-03: per-tensor and per-channel quantization of 32768x4096 against torch.compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import cuda

from ... import fp8
from ...quant import common, per_channel, per_tensor
from .. import plotting, timing
from .common import progress, random_device


def _torch_compiled(kind, x, scale, bf16=False):
    def build(torch):
        t = torch.as_tensor(x, device="cuda")
        if bf16:
            t = t.to(torch.bfloat16)

        def per_tensor_static(v):  # torch.compile bakes the Python float in as a constant
            return (v / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)

        scale_t = torch.tensor(scale, dtype=torch.float32, device="cuda")

        def per_tensor_static_tensor(v):  # the scale read from device memory, as ours reads it
            return (v / scale_t).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)

        def per_tensor_dynamic(v):
            s = v.abs().amax().clamp(min=2.0**-40) / 448.0
            return (v / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), s

        def per_channel(dim):
            def fn(v):
                s = v.abs().amax(dim=dim, keepdim=True).clamp(min=2.0**-40) / 448.0
                return (v / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), s
            return fn

        fn = torch.compile({"static": per_tensor_static, "static_tensor": per_tensor_static_tensor,
                            "dynamic": per_tensor_dynamic,
                            "rows": per_channel(1), "columns": per_channel(0)}[kind])
        return lambda: fn(t)
    return build


def chapter02_quantize(repeats: int = 50, out_dir=None) -> Path:
    """Per-tensor (static, dynamic) and per-channel (rows, columns) quantization of 32768x4096
    float32 to E4M3, with the fast and the exact encoder, against torch.compile of the same
    computation. What is timed: our launches on preallocated outputs. Bytes counted: logical
    4 + 1 per element; the rows that read x twice (dynamic per-tensor, per-column) also give
    the bytes actually moved (4 + 4 + 1); bfloat16 input: 2 + 1."""
    m, k = 32768, 4096
    n = m * k
    rng = np.random.default_rng(2)
    x = random_device((m, k), rng)
    flat = x.reshape(n)
    codes = cuda.device_array(n, np.uint8)
    codes2d = cuda.device_array((m, k), np.uint8)
    scale_arr = cuda.to_device(np.array([0.05], np.float32))
    scales1 = cuda.device_array(1, np.float32)
    partials = cuda.device_array(common.stride_blocks(n), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    amax = cuda.device_array(1, np.float32)
    row_scales = cuda.device_array((m, 1), np.float32)
    col_scales = cuda.device_array((1, k), np.float32)
    amax_bits = cuda.device_array(k, np.int32)
    fmt = fp8.E4M3

    def dynamic(encoder):
        def run():
            common.finite_amax_into(flat, partials, counter, amax)
            per_tensor.per_tensor_into(flat, amax, codes, scales1, fmt, True, encoder)
        return run

    import ml_dtypes

    x_bf16 = cuda.to_device(x.copy_to_host().astype(ml_dtypes.bfloat16).view(np.uint16))  # its bits

    def static(d, encoder):
        return lambda: per_tensor.per_tensor_into(d.reshape(n), scale_arr, codes, scales1, fmt, False, encoder)

    def per_row(d, encoder):
        return lambda: per_channel.per_channel_into(d, 0, codes2d, row_scales, amax_bits, fmt, encoder)

    def columns(encoder):  # three launches: zero the column maxima, find them, encode
        return lambda: per_channel.per_channel_into(x, 1, codes2d, col_scales, amax_bits, fmt, encoder)

    cases = []
    for encoder in ("fast", "exact"):  # each row names the encoder it ran (tutorial.quant.encoders)
        tag = f"(ours, {encoder} encoder)"
        cases += [
            (f"static per-tensor {tag}", static(x, encoder), n * 5),
            (f"dynamic per-tensor {tag}, logical bytes", dynamic(encoder), n * 5),
            (f"dynamic per-tensor {tag}, bytes moved", dynamic(encoder), n * 9),
            (f"per-channel rows {tag}", per_row(x, encoder), n * 5),
            (f"per-channel columns {tag}, logical bytes", columns(encoder), n * 5),
            (f"per-channel columns {tag}, bytes moved", columns(encoder), n * 9),
            (f"static per-tensor, bf16 in {tag}", static(x_bf16, encoder), n * 3),
            (f"per-channel rows, bf16 in {tag}", per_row(x_bf16, encoder), n * 3),
        ]
    peers = [("torch.compile static per-tensor", "static", False),
             ("torch.compile static per-tensor, scale as a tensor", "static_tensor", False),
             ("torch.compile dynamic per-tensor", "dynamic", False),
             ("torch.compile per-channel rows", "rows", False), ("torch.compile per-channel columns", "columns", False),
             ("torch.compile static per-tensor, bf16 in", "static", True),
             ("torch.compile per-channel rows, bf16 in", "rows", True)]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn, nbytes) in enumerate(cases, 1):
        progress(step, total, label)
        rows.append(timing.make_row(label, timing.time_cuda(fn, repeats=repeats), shape=[m, k], nbytes=nbytes))
    for step, (label, kind, bf16) in enumerate(peers, len(cases) + 1):
        progress(step, total, label)
        rows.append(timing.bench_peer(label, "torch", _torch_compiled(kind, x, 0.05, bf16), shape=[m, k],
                                     nbytes=n * (3 if bf16 else 5), repeats=repeats))
    path = timing.record_results("ch02_quantize", rows, shapes=[[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path
