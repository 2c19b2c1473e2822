"""Chapter 00: encoding float32 to E4M3 codes, the software encoder against the hardware conversion
and torch's cast, one element per thread. Counted bytes: 4 read + 1 written per element."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import cuda

from ... import fp8, fp8_hardware
from .. import plotting, timing
from .common import progress

THREADS = 256  # one element per thread


def _torch_cast(n: int):
    def build(torch):
        x = torch.randn(n, device="cuda", dtype=torch.float32) * 100
        return lambda: x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn)  # saturate, as ours does
    return build


def chapter00_encode(sizes=None, repeats: int = 50, out_dir=None) -> Path:
    """Throughput of float32 -> E4M3 encoding over sizes (elements); returns the JSON path."""
    sizes = sizes or [1 << k for k in range(20, 29, 2)]
    rng = np.random.default_rng(0)
    kernels = [("software encoder", fp8.encode_kernel(fp8.encode_e4m3))]
    if fp8_hardware.hardware_fp8_available():
        kernels.append(("hardware cvt.rn.satfinite", fp8.encode_kernel(fp8_hardware.encode_e4m3_hw)))
    rows, total, step = [], len(sizes) * (len(kernels) + 1), 0
    for n in sizes:
        x = cuda.to_device((rng.standard_normal(n) * 100).astype(np.float32))
        codes = cuda.device_array(n, np.uint8)
        blocks = math.ceil(n / THREADS)
        nbytes = timing.quant_bytes(n, 4)
        for label, kernel in kernels:
            step += 1
            progress(step, total, f"{label}, {n} elements")
            measured = timing.time_cuda(lambda: kernel[blocks, THREADS](x, codes), repeats=repeats)
            rows.append(timing.make_row(label, measured, shape=[n], nbytes=nbytes))
        step += 1
        progress(step, total, f"torch cast, {n} elements")
        rows.append(timing.bench_peer("torch .to(float8_e4m3fn)", "torch", _torch_cast(n), shape=[n],
                                     nbytes=nbytes, repeats=repeats))
        rows.append(timing.skipped_row("cupy", shape=[n], peer="cupy", reason="cupy has no FP8 dtype"))
    path = timing.record_results("ch00_encode", rows, shapes=[[n] for n in sizes], out_dir=out_dir)
    plotting.redraw(path)
    return path
