"""Chapter 06: Hopper's warpgroup MMA: what promotion buys in accuracy and costs in time.

Error against K, on the tensor cores: the wgmma kernel promoting every 128 of K, the same
kernel without promotion (the tensor cores accumulate all of K), and chapter 05's `mma.sync`
kernel both ways. Then the speed of each at the cubes 2048^3 to 8192^3 and DeepSeek-V3's layer
shapes, with `torch._scaled_mm` in the same run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import cuda

from ... import gemm
from ...qtensor import QTensor
from ...quant import blockwise
from .. import timing
from .ch05 import torch_scaled_mm
from .common import progress, safe_peer

DEPTHS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
KERNELS = {"wgmma, promoted every 128 (ours)": ("wgmma", "promote"),
           "wgmma, not promoted (ours)": ("wgmma", "epilogue"),
           "mma.sync, promoted every 128 (ours)": ("tensor_core", "promote"),
           "mma.sync, not promoted (ours)": ("tensor_core", "epilogue")}


def _operands(rng, m, n, k):
    """Normal values quantized with a scale per row of A and per column of B (constant along K,
    so every kernel above can take them), as QTensors on the device."""
    a = cuda.to_device(rng.standard_normal((m, k)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((k, n)).astype(np.float32))
    return blockwise.quantize_blockwise(a, (1, k)), blockwise.quantize_blockwise(b, (k, 1))


def _errors(qa: QTensor, qb: QTensor, c) -> dict:
    """max |error| / sum_k |a||b| (the accumulation's own scale) and rms error / rms C, against
    the float64 product of the dequantized operands."""
    a, b = qa.dequantize().astype(np.float64), qb.dequantize().astype(np.float64)
    exact = a @ b
    err = np.abs(np.asarray(c, np.float64) - exact)
    return {"max_err_over_abs_sum": float(np.max(err / (np.abs(a) @ np.abs(b)))),
            "rms_err_over_rms": float(np.sqrt(np.mean(err ** 2) / np.mean(exact ** 2)))}


# (M, N, K): cubes, and DeepSeek-V3's layers at 4096 tokens (N, K as its Linears have them)
SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192), (4096, 7168, 2048), (4096, 2112, 7168),
          (4096, 24576, 1536))


def _speed_rows(rng, m, n, k, repeats):
    """Our kernels and the torch peers at (m, n, k): 1x128/128x128 scales for the promoted
    kernels and the peers, per-row/per-column for the unpromoted one (scales constant along K)."""
    flops = 2 * m * n * k
    a = cuda.to_device(rng.standard_normal((m, k)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((k, n)).astype(np.float32))
    c = cuda.device_array((m, n), np.float32)
    blocks = (blockwise.quantize_blockwise(a, (1, 128)), blockwise.quantize_blockwise(b, (128, 128)))
    lines = (blockwise.quantize_blockwise(a, (1, k)), blockwise.quantize_blockwise(b, (k, 1)))
    cases = [("wgmma 1x128/128x128, promoted every 128 (ours)", blocks, "wgmma", "promote"),
             ("wgmma per-row/per-column, promoted every 128 (ours)", lines, "wgmma", "promote"),
             ("wgmma per-row/per-column, not promoted (ours)", lines, "wgmma", "epilogue"),
             ("mma.sync 1x128/128x128, rescaled (ours)", blocks, "tensor_core", "rescale")]
    rows = []
    for label, (qa, qb), kernel, mode in cases:
        run = lambda qa=qa, qb=qb, kernel=kernel, mode=mode: gemm.scaled_matmul(qa, qb, mode, out=c, kernel=kernel)  # noqa: E731
        rows.append(timing.make_row(label, timing.time_cuda(run, repeats=repeats), shape=[m, n, k], flops=flops))
    a_host, b_host = a.copy_to_host(), b.copy_to_host()
    for label, per_block in (("torch._scaled_mm FP8 per-tensor", False), ("torch._scaled_mm FP8 1x128/128x128", True)):
        rows.append(safe_peer(label, torch_scaled_mm(a_host, b_host, per_block), shape=[m, n, k], flops=flops,
                              repeats=repeats))
    return rows


def chapter06_wgmma(repeats: int = 20, out_dir=None) -> Path:
    """Record `ch06_wgmma.json`: error rows (label, K, the two error measures) for 256 x 256 x K,
    then timing rows at each of SHAPES (see `_speed_rows`)."""
    rng = np.random.default_rng(6)
    rows = []
    for step, k in enumerate(DEPTHS, 1):
        progress(step, len(DEPTHS) + len(SHAPES), f"errors at K = {k}")
        qa, qb = _operands(rng, 256, 256, k)
        for label, (kernel, mode) in KERNELS.items():
            c = gemm.scaled_matmul(qa, qb, mode, kernel=kernel).copy_to_host()
            rows.append({"label": label, "shape": [256, 256, k], "peer": None, "k": k, **_errors(qa, qb, c)})
    for step, (m, n, k) in enumerate(SHAPES, len(DEPTHS) + 1):
        progress(step, len(DEPTHS) + len(SHAPES), f"speed at {m} x {n} x {k}")
        rows += _speed_rows(rng, m, n, k, repeats)
    return timing.record_results("ch06_wgmma", rows, shapes=[[256, 256, d] for d in DEPTHS] + [list(s) for s in SHAPES],
                                 out_dir=out_dir)
