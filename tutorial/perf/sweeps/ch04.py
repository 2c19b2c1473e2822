"""Chapter 04: 1x128 and 128x128 block quantization of 32768x4096 against torch.compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import cuda

from ... import fp8, fp8_hardware
from ...quant import blockwise
from .. import plotting, timing
from .common import progress, random_device


def _torch_compiled_blocks(kind, x, bf16=False):
    m, k = x.shape

    def build(torch):
        t = torch.as_tensor(x, device="cuda")
        if bf16:
            t = t.to(torch.bfloat16)

        def groups(v):  # DeepGEMM's per_token_cast_to_fp8
            g = v.view(m, k // 128, 128)
            s = g.abs().amax(dim=-1, keepdim=True).clamp(min=2.0**-40) / 448.0
            return (g / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).view(m, k), s.squeeze(-1)

        def tiles(v):  # DeepGEMM's per_block_cast_to_fp8
            g = v.view(m // 128, 128, k // 128, 128)
            s = g.abs().amax(dim=(1, 3), keepdim=True).clamp(min=2.0**-40) / 448.0
            return (g / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).view(m, k), s.view(m // 128, k // 128)

        fn = torch.compile({"groups": groups, "tiles": tiles}[kind])
        return lambda: fn(t)
    return build


def chapter04_blockwise(repeats: int = 50, out_dir=None) -> Path:
    """1 x 128 and 128 x 128 quantization of 32768x4096 float32 (and bfloat16) to E4M3: scale
    layouts, the fast and the exact encoder (the exact one also in software), against
    torch.compile of DeepGEMM's reference casts.
    Timed: our launch on preallocated outputs. Bytes counted (logical, read + written):
    n * (in + 1) plus 4 bytes per scale: 4 / 128 per element for 1 x 128, 4 / 16384 for 128 x 128."""
    import ml_dtypes

    m, k = 32768, 4096
    n = m * k
    rng = np.random.default_rng(4)
    x = random_device((m, k), rng)
    x_bf16 = cuda.to_device(x.copy_to_host().astype(ml_dtypes.bfloat16).view(np.uint16))
    codes = cuda.device_array((m, k), np.uint8)
    group_scales = cuda.device_array((m, k // 128), np.float32)
    m_major = cuda.device_array((k // 128, m), np.float32)
    tile_scales = cuda.device_array((m // 128, k // 128), np.float32)
    buf = cuda.device_array((m, k // 128 * 132), np.uint8)
    fmt = fp8.E4M3
    groups_bytes = lambda size_in: n * (size_in + 1) + n // 128 * 4  # noqa: E731
    tiles_bytes = lambda size_in: n * (size_in + 1) + n // 16384 * 4  # noqa: E731

    def run(d, bm, out, scales, **kw):
        return lambda: blockwise.blockwise_into(d, bm, 128, out, scales, fmt, **kw)

    cases = []
    for encoder in ("fast", "exact"):  # each row names the encoder it ran (tutorial.quant.encoders)
        tag = f"(ours, {encoder} encoder)"
        cases += [
            (f"1x128 {tag}", run(x, 1, codes, group_scales, encoder=encoder), groups_bytes(4)),
            (f"1x128, M-major scales {tag}", run(x, 1, codes, m_major, layout="m_major", encoder=encoder),
             groups_bytes(4)),
            (f"1x128, interleaved scales {tag}", run(x, 1, buf, group_scales, layout="interleaved", encoder=encoder),
             groups_bytes(4)),
            (f"1x128, power-of-two scales {tag}", run(x, 1, codes, group_scales, pow2=True, encoder=encoder),
             groups_bytes(4)),
            (f"128x128 {tag}", run(x, 128, codes, tile_scales, encoder=encoder), tiles_bytes(4)),
            (f"1x128, bf16 in {tag}", run(x_bf16, 1, codes, group_scales, encoder=encoder), groups_bytes(2)),
            (f"128x128, bf16 in {tag}", run(x_bf16, 128, codes, tile_scales, encoder=encoder), tiles_bytes(2)),
        ]
    if fp8_hardware.hardware_fp8_available():
        cases += [("1x128 (ours, exact encoder in software)", run(x, 1, codes, group_scales, encoder="software"),
                   groups_bytes(4)),
                  ("128x128 (ours, exact encoder in software)", run(x, 128, codes, tile_scales, encoder="software"),
                   tiles_bytes(4))]
    peers = [("torch.compile 1x128", "groups", False, groups_bytes(4)),
             ("torch.compile 128x128", "tiles", False, tiles_bytes(4)),
             ("torch.compile 1x128, bf16 in", "groups", True, groups_bytes(2)),
             ("torch.compile 128x128, bf16 in", "tiles", True, tiles_bytes(2))]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn, nbytes) in enumerate(cases, 1):
        progress(step, total, label)
        rows.append(timing.make_row(label, timing.time_cuda(fn, repeats=repeats), shape=[m, k], nbytes=nbytes))
    for step, (label, kind, bf16, nbytes) in enumerate(peers, len(cases) + 1):
        progress(step, total, label)
        rows.append(timing.bench_peer(label, "torch", _torch_compiled_blocks(kind, x, bf16), shape=[m, k],
                                     nbytes=nbytes, repeats=repeats))
    path = timing.record_results("ch04_blockwise", rows, shapes=[[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path
