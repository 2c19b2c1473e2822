"""Chapter 01: absmax over 1 MiB .. 1 GiB, and absmax_blocks / absmax_rows on 32768x4096."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import cuda

from ... import reduction, reduction_tiles
from ...runtime.launch import grid_blocks
from .. import plotting, timing
from .common import progress, random_device


def _torch_inf_norm(x):
    def build(torch):
        t = torch.as_tensor(x, device="cuda")  # zero-copy, through __cuda_array_interface__
        return lambda: torch.linalg.vector_norm(t, float("inf"))
    return build


def _torch_group_amax(x, group):
    def build(torch):
        t = torch.as_tensor(x, device="cuda")
        return lambda: t.view(t.shape[0], t.shape[1] // group, group).abs().amax(-1)
    return build


def _cupy_absmax(x):
    def build(cupy):
        a = cupy.asarray(x)  # zero-copy
        return lambda: cupy.abs(a).max()
    return build


def chapter01_absmax(sizes=None, repeats: int = 50, out_dir=None) -> Path:
    """absmax over 1 MiB .. 1 GiB of float32 (4 bytes read per element), then absmax_blocks
    (1, 128) and (128, 128) and absmax_rows on 32768x4096; torch and cupy as peers. What is
    timed: our one launch, inputs and outputs already on the device (no allocation, no copy)."""
    sizes = sizes or [1 << k for k in range(18, 29, 2)]
    rng = np.random.default_rng(1)
    rows, total, step = [], len(sizes) * 3 + 3, 0  # progress counts our launches and the peers
    for n in sizes:
        x = random_device(n, rng)
        partials = cuda.device_array(grid_blocks(n, reduction.THREADS * reduction.UNROLL * 4), np.float32)
        counter = cuda.to_device(np.zeros(1, np.int32))
        out = cuda.device_array(1, np.float32)
        nbytes = timing.absmax_bytes(n, 4)
        step += 1
        progress(step, total, f"absmax, {n} elements")
        measured = timing.time_cuda(lambda: reduction.absmax_into(x, partials, counter, out), repeats=repeats)
        rows.append(timing.make_row("absmax (ours)", measured, shape=[n], nbytes=nbytes))
        assert out.copy_to_host()[0] == np.max(np.abs(x.copy_to_host()))  # timed the right thing
        step += 1
        progress(step, total, f"torch vector_norm(inf), {n} elements")
        rows.append(timing.bench_peer("torch.linalg.vector_norm(x, inf)", "torch", _torch_inf_norm(x),
                                     shape=[n], nbytes=nbytes, repeats=repeats))
        step += 1
        progress(step, total, f"cupy abs().max(), {n} elements")
        rows.append(timing.bench_peer("cupy.abs(x).max()", "cupy", _cupy_absmax(x),
                                     shape=[n], nbytes=nbytes, repeats=repeats))
    m, k = 32768, 4096
    x = random_device((m, k), rng)
    for bm, bn in [(1, 128), (128, 128), (1, k)]:
        step += 1
        label = "absmax_rows" if bn == k else f"absmax_blocks ({bm}, {bn})"
        progress(step, total, f"{label}, {m}x{k}")
        out = cuda.device_array((-(-m // bm), -(-k // bn)), np.float32)
        measured = timing.time_cuda(lambda: reduction_tiles.absmax_blocks_into(x, bm, bn, out), repeats=repeats)
        rows.append(timing.make_row(label, measured, shape=[m, k], nbytes=m * k * 4 + out.size * 4))
        if (bm, bn) == (1, 128):
            rows.append(timing.bench_peer("torch view(M, N/128, 128).abs().amax(-1)", "torch", _torch_group_amax(x, bn),
                                         shape=[m, k], nbytes=m * k * 4 + out.size * 4, repeats=repeats))
    path = timing.record_results("ch01_absmax", rows, shapes=[[n] for n in sizes] + [[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path
