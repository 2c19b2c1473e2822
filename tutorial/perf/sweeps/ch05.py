"""Chapter 05: the GEMM progression at 4096^3 against cuBLAS SGEMM and torch._scaled_mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import cuda

from ... import gemm
from ...quant import blockwise
from .. import plotting, timing
from .common import progress, safe_peer


def _torch_sgemm(a, b):
    def build(torch):
        torch.backends.cuda.matmul.allow_tf32 = False  # true float32 SGEMM, as in ANCHORS.md
        ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
        return lambda: torch.matmul(ta, tb)
    return build


def torch_scaled_mm(a, b, blockwise: bool):
    """torch._scaled_mm on E4M3 operands: per-tensor scales, or 1x128 (a) / 128x128 (b)."""
    def build(torch):
        m, k = a.shape
        n = b.shape[1]
        ta = torch.as_tensor(a, device="cuda").to(torch.float8_e4m3fn)
        tb = torch.as_tensor(b, device="cuda").t().contiguous().to(torch.float8_e4m3fn).t()  # column-major
        if blockwise:  # the layouts torch 2.11 accepts: a's scales M-major, b's (N/128, K/128) transposed
            scale_a = torch.ones(k // 128, m, device="cuda").t()
            scale_b = torch.ones(n // 128, k // 128, device="cuda").t()
        else:
            scale_a = scale_b = torch.ones((), device="cuda")
        fn = lambda: torch._scaled_mm(ta, tb, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)  # noqa: E731
        fn()  # fails here, not in the timing loop, if this torch lacks the recipe
        return fn
    return build


def chapter05_gemm(repeats: int = 20, out_dir=None, size: int = 4096) -> Path:
    """C = A @ B at size^3: the progression (naive, shared-memory tiles, register blocking) on
    float32, then the register-blocked kernel on FP8 codes with 1x128 / 128x128 scales applied
    three ways, then our tensor-core kernel (mma.sync) with and without scaling in its loop,
    against cuBLAS SGEMM (torch, TF32 off) and torch._scaled_mm on tensor cores.
    Timed: one launch on preallocated operands; counted: 2 * M * N * K FLOPs."""
    m = n = k = size
    flops = 2 * m * n * k
    rng = np.random.default_rng(5)
    a = cuda.to_device(rng.standard_normal((m, k)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((k, n)).astype(np.float32))
    c = cuda.device_array((m, n), np.float32)
    qa = blockwise.quantize_blockwise(a, (1, 128))
    qb = blockwise.quantize_blockwise(b, (128, 128))
    rows_a = blockwise.quantize_blockwise(a, (1, k))  # per-row / per-column: scales constant along K
    cols_b = blockwise.quantize_blockwise(b, (k, 1))
    cases = [(f"{name} float32 (ours)", lambda name=name: gemm.launch_float32(name, a, b, c))
             for name in ("naive", "tiled", "blocked")]
    cuda_cores = dict(out=c, kernel="cuda_core")
    cases += [("FP8 1x128/128x128, promote per K-block (ours)", lambda: gemm.scaled_matmul(qa, qb, "promote", **cuda_cores)),
              ("FP8 1x128/128x128, dequantize on load (ours)", lambda: gemm.scaled_matmul(qa, qb, "dequant", **cuda_cores)),
              ("FP8 per-row/per-column, epilogue scales: no scaling in the loop (ours)",
               lambda: gemm.scaled_matmul(rows_a, cols_b, "epilogue", **cuda_cores))]
    if gemm.tensor_cores_available():
        tensor_cores = dict(out=c, kernel="tensor_core")
        cases += [("FP8 1x128/128x128 on tensor cores (mma.sync), promote per K-block (ours)",
                   lambda: gemm.scaled_matmul(qa, qb, "promote", **tensor_cores)),
                  ("FP8 1x128/128x128 on tensor cores (mma.sync), rescale accumulators per K-block (ours)",
                   lambda: gemm.scaled_matmul(qa, qb, "rescale", **tensor_cores)),
                  ("FP8 per-row/per-column on tensor cores (mma.sync), epilogue scales: no scaling in the loop (ours)",
                   lambda: gemm.scaled_matmul(rows_a, cols_b, "epilogue", **tensor_cores))]
    a_host, b_host = a.copy_to_host(), b.copy_to_host()
    peers = [("cuBLAS SGEMM (torch, TF32 off)", _torch_sgemm(a, b)),
             ("torch._scaled_mm FP8 per-tensor", torch_scaled_mm(a_host, b_host, False)),
             ("torch._scaled_mm FP8 1x128/128x128", torch_scaled_mm(a_host, b_host, True))]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn) in enumerate(cases, 1):
        progress(step, total, label)
        rows.append(timing.make_row(label, timing.time_cuda(fn, repeats=repeats), shape=[m, n, k], flops=flops))
    for step, (label, build) in enumerate(peers, len(cases) + 1):
        progress(step, total, label)
        rows.append(safe_peer(label, build, shape=[m, n, k], flops=flops, repeats=repeats))
    path = timing.record_results("ch05_gemm", rows, shapes=[[m, n, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path
