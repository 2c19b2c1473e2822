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
from ...gemm import warpgroup
from ...quant import blockwise
from .. import plotting, timing
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


def _k_major(q: QTensor) -> QTensor:
    """B's QTensor with its codes stored K-major ((N, K) in memory, a (K, N) view), the layout
    `torch._scaled_mm` also takes B in: the TMA kernel reads it in place, untransposed."""
    return QTensor(warpgroup.transposed_view(warpgroup.transposed_codes(q.codes)), q.scales, q.fmt, q.block)


def _speed_rows(rng, m, n, k, repeats, steps: bool):
    """Our kernels and the torch peers at (m, n, k): 1x128/128x128 scales for the promoted
    kernels and the peers, per-row/per-column for the unpromoted one (scales constant along K).
    B is stored K-major for every wgmma kernel (untimed, as torch's column-major B). `steps`:
    also each step of the chapter's worklog. Timed: one launch; counted: 2 M N K FLOPs."""
    flops = 2 * m * n * k
    a = cuda.to_device(rng.standard_normal((m, k)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((k, n)).astype(np.float32))
    c = cuda.device_array((m, n), np.float32)
    c16 = cuda.device_array((m, n), np.uint16)
    qa, qb = blockwise.quantize_blockwise(a, (1, 128)), blockwise.quantize_blockwise(b, (128, 128))
    blocks = (qa, _k_major(qb))
    lines = (blockwise.quantize_blockwise(a, (1, k)), _k_major(blockwise.quantize_blockwise(b, (k, 1))))
    tensor = (blockwise.quantize_blockwise(a, (m, k)), _k_major(blockwise.quantize_blockwise(b, (k, n))))
    matmul = gemm.scaled_matmul
    cases = [(f"{FAST} 1x128/128x128, promoted (ours)", lambda: matmul(*blocks, out=c, kernel="wgmma")),
             (f"{FAST} 1x128/128x128, promoted, bf16 out (ours)",
              lambda: matmul(*blocks, out=c16, kernel="wgmma", out_dtype="bfloat16")),
             (f"{FAST} per-tensor, promoted (ours)", lambda: matmul(*tensor, out=c, kernel="wgmma")),
             (f"{FAST} per-tensor, not promoted (ours)",
              lambda: matmul(*tensor, "epilogue", out=c, kernel="wgmma")),
             (f"{FAST} per-row/per-column, promoted (ours)", lambda: matmul(*lines, out=c, kernel="wgmma")),
             (f"{FAST} per-row/per-column, not promoted (ours)",
              lambda: matmul(*lines, "epilogue", out=c, kernel="wgmma"))]
    if steps:
        cases += _step_cases(qa, qb, c)
    rows = [timing.make_row(label, timing.time_cuda(run, repeats=repeats), shape=[m, n, k], flops=flops)
            for label, run in cases]
    a_host, b_host = a.copy_to_host(), b.copy_to_host()
    for label, per_block in (("torch._scaled_mm FP8 per-tensor", False), ("torch._scaled_mm FP8 1x128/128x128", True)):
        rows.append(safe_peer(label, torch_scaled_mm(a_host, b_host, per_block), shape=[m, n, k], flops=flops,
                              repeats=repeats))
    return rows


# the worklog's steps, each one idea on top of the one before (docs/pages/performance.md, "Chapter 06")
STEP_LABELS = {"mma.sync": "step 0: mma.sync, rescaled (chapter 05)",
               "plain": "step 1: wgmma, one warpgroup, 64 x 64 tiles staged by its threads",
               "cp.async": "step 2: + a ring of 4 cp.async stages",
               "tma": "step 3: TMA into a 5-stage mbarrier ring, 128-byte swizzle, a producer warpgroup, "
                      "two consumer warpgroups on 128 x 128 tiles",
               "setmaxnreg": "step 4: + setmaxnreg (40 producer / 232 consumer registers)",
               "specialized": "step 5: + two partial sums, promotion overlapping the next K-block's MMAs"}
FAST = "TMA + warp-specialized wgmma"  # the library's kernel, step 5: its rows at every shape


def _step_cases(qa, qb, c):
    """The worklog's steps on 1x128/128x128 scales, promoted (B transposed once, untimed)."""
    from ...gemm import specialized

    a_codes, bt = qa.codes, warpgroup.transposed_codes(qb.codes)
    sa, sb = qa.scales, qb.scales

    def fast(**kw):
        return lambda: specialized.launch_specialized(a_codes, bt, sa, sb, qa.block, qb.block, c, qa.fmt, qb.fmt, **kw)

    def plain(pipelined):  # (B given K-major, as a view: launch_warpgroup does not transpose it)
        return lambda: warpgroup.launch_warpgroup(a_codes, warpgroup.transposed_view(bt), sa, sb, qa.block, qb.block, c, qa.fmt, qb.fmt,
                                                  pipelined=pipelined)

    return [(STEP_LABELS["mma.sync"] + " (ours)", lambda: gemm.scaled_matmul(qa, qb, "rescale", out=c,
                                                                           kernel="tensor_core")),
            (STEP_LABELS["plain"] + " (ours)", plain(False)),
            (STEP_LABELS["cp.async"] + " (ours)", plain(True)),
            (STEP_LABELS["tma"] + " (ours)", fast(overlap=False, max_registers=False)),
            (STEP_LABELS["setmaxnreg"] + " (ours)", fast(overlap=False))]


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
        rows += _speed_rows(rng, m, n, k, repeats, steps=(m, n, k) == (4096, 4096, 4096))
    path = timing.record_results("ch06_wgmma", rows, shapes=[[256, 256, d] for d in DEPTHS] + [list(s) for s in SHAPES],
                                 out_dir=out_dir)
    plotting.redraw(path)
    return path
