"""Each chapter's benchmark sweep, run by ``fp8-tutorial bench [chapter]`` on a GPU.

A sweep times its kernels (and the peers, when installed) over sizes, writes
``results/<device>/<name>.json`` and a PNG plot beside it, and prints progress as it goes. The
plot is drawn from the JSON alone (`tutorial.plotting.redraw`), so a recorded file's
figure can be drawn again anywhere, without a GPU.

Chapter 00: encoding float32 to E4M3 codes, software encoder vs the hardware conversion vs
torch's cast, one element per thread. Counted bytes: 4 read + 1 written per element.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from numba import cuda

from . import bench, fp8, plotting

THREADS = 256  # a multiple of the warp size; the kernels are one element per thread


@cuda.jit
def encode_e4m3_software(x, codes):
    i = cuda.grid(1)
    if i < x.size:
        codes[i] = fp8.encode_e4m3(x[i])


@cuda.jit
def encode_e4m3_hardware(x, codes):
    i = cuda.grid(1)
    if i < x.size:
        codes[i] = fp8.encode_e4m3_hw(x[i])


def _progress(step: int, total: int, text: str) -> None:
    width = 24
    filled = width * step // total
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {text:<50}", end="", file=sys.stderr, flush=True)
    if step == total:
        print(file=sys.stderr)


def _torch_cast(n: int):
    def build(torch):
        x = torch.randn(n, device="cuda", dtype=torch.float32) * 100
        return lambda: x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn)  # saturate, as ours does
    return build


def chapter00_encode(sizes=None, repeats: int = 50, out_dir=None) -> Path:
    """Throughput of float32 -> E4M3 encoding over sizes (elements); returns the JSON path."""
    sizes = sizes or [1 << k for k in range(20, 29, 2)]
    rng = np.random.default_rng(0)
    kernels = [("software encoder", encode_e4m3_software)]
    if fp8.hardware_fp8_available():
        kernels.append(("hardware cvt.rn.satfinite", encode_e4m3_hardware))
    rows, total, step = [], len(sizes) * (len(kernels) + 1), 0
    for n in sizes:
        x = cuda.to_device((rng.standard_normal(n) * 100).astype(np.float32))
        codes = cuda.device_array(n, np.uint8)
        blocks = math.ceil(n / THREADS)
        nbytes = bench.quant_bytes(n, 4)
        for label, kernel in kernels:
            step += 1
            _progress(step, total, f"{label}, {n} elements")
            timing = bench.time_cuda(lambda: kernel[blocks, THREADS](x, codes), repeats=repeats)
            rows.append(bench.make_row(label, timing, shape=[n], nbytes=nbytes))
        step += 1
        _progress(step, total, f"torch cast, {n} elements")
        rows.append(bench.bench_peer("torch .to(float8_e4m3fn)", "torch", _torch_cast(n), shape=[n],
                                     nbytes=nbytes, repeats=repeats))
        rows.append(bench.skipped_row("cupy", shape=[n], peer="cupy", reason="cupy has no FP8 dtype"))
    path = bench.record_results("ch00_encode", rows, shapes=[[n] for n in sizes], out_dir=out_dir)
    plotting.redraw(path)
    return path


def _random_device(shape, rng):
    return cuda.to_device((rng.standard_normal(shape) * 10).astype(np.float32))


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
    from . import reduction

    sizes = sizes or [1 << k for k in range(18, 29, 2)]
    rng = np.random.default_rng(1)
    rows, total, step = [], len(sizes) * 3 + 3, 0  # progress counts our launches and the peers
    for n in sizes:
        x = _random_device(n, rng)
        partials = cuda.device_array(reduction._grid_blocks(n, reduction.THREADS * reduction.UNROLL * 4), np.float32)
        counter = cuda.to_device(np.zeros(1, np.int32))
        out = cuda.device_array(1, np.float32)
        nbytes = bench.absmax_bytes(n, 4)
        step += 1
        _progress(step, total, f"absmax, {n} elements")
        timing = bench.time_cuda(lambda: reduction.absmax_into(x, partials, counter, out), repeats=repeats)
        rows.append(bench.make_row("absmax (ours)", timing, shape=[n], nbytes=nbytes))
        assert out.copy_to_host()[0] == np.max(np.abs(x.copy_to_host()))  # timed the right thing
        step += 1
        _progress(step, total, f"torch vector_norm(inf), {n} elements")
        rows.append(bench.bench_peer("torch.linalg.vector_norm(x, inf)", "torch", _torch_inf_norm(x),
                                     shape=[n], nbytes=nbytes, repeats=repeats))
        step += 1
        _progress(step, total, f"cupy abs().max(), {n} elements")
        rows.append(bench.bench_peer("cupy.abs(x).max()", "cupy", _cupy_absmax(x),
                                     shape=[n], nbytes=nbytes, repeats=repeats))
    m, k = 32768, 4096
    x = _random_device((m, k), rng)
    for bm, bn in [(1, 128), (128, 128), (1, k)]:
        step += 1
        label = "absmax_rows" if bn == k else f"absmax_blocks ({bm}, {bn})"
        _progress(step, total, f"{label}, {m}x{k}")
        out = cuda.device_array((-(-m // bm), -(-k // bn)), np.float32)
        timing = bench.time_cuda(lambda: reduction.absmax_blocks_into(x, bm, bn, out), repeats=repeats)
        rows.append(bench.make_row(label, timing, shape=[m, k], nbytes=m * k * 4 + out.size * 4))
        if (bm, bn) == (1, 128):
            rows.append(bench.bench_peer("torch view(M, N/128, 128).abs().amax(-1)", "torch", _torch_group_amax(x, bn),
                                         shape=[m, k], nbytes=m * k * 4 + out.size * 4, repeats=repeats))
    path = bench.record_results("ch01_absmax", rows, shapes=[[n] for n in sizes] + [[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path


def _torch_compiled(kind, x, scale, bf16=False):
    def build(torch):
        t = torch.as_tensor(x, device="cuda")
        if bf16:
            t = t.to(torch.bfloat16)

        def per_tensor_static(v):
            return (v / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)

        def per_tensor_dynamic(v):
            s = v.abs().amax().clamp(min=2.0**-40) / 448.0
            return (v / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), s

        def per_channel(dim):
            def fn(v):
                s = v.abs().amax(dim=dim, keepdim=True).clamp(min=2.0**-40) / 448.0
                return (v / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), s
            return fn

        fn = torch.compile({"static": per_tensor_static, "dynamic": per_tensor_dynamic,
                            "rows": per_channel(1), "columns": per_channel(0)}[kind])
        return lambda: fn(t)
    return build


def chapter02_quantize(repeats: int = 50, out_dir=None) -> Path:
    """Per-tensor (static, dynamic) and per-channel (rows, columns) quantization of 32768x4096
    float32 to E4M3, against torch.compile of the same computation. What is timed: our
    launches on preallocated outputs. Bytes counted: logical 4 + 1 per element; the rows that
    read x twice (dynamic per-tensor, per-column) also give the bytes actually moved (4 + 4 + 1);
    bfloat16 input: 2 + 1."""
    from . import per_channel, per_tensor, scaling

    m, k = 32768, 4096
    n = m * k
    rng = np.random.default_rng(2)
    x = _random_device((m, k), rng)
    flat = x.reshape(n)
    codes = cuda.device_array(n, np.uint8)
    codes2d = cuda.device_array((m, k), np.uint8)
    scale_arr = cuda.to_device(np.array([0.05], np.float32))
    scales1 = cuda.device_array(1, np.float32)
    partials = cuda.device_array(scaling.grid_blocks(n), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    amax = cuda.device_array(1, np.float32)
    row_scales = cuda.device_array((m, 1), np.float32)
    col_scales = cuda.device_array((1, k), np.float32)
    amax_bits = cuda.device_array(k, np.int32)
    fmt = fp8.E4M3

    def dynamic():
        scaling.finite_amax_into(flat, partials, counter, amax)
        per_tensor.per_tensor_into(flat, amax, codes, scales1, fmt, dynamic=True)

    import ml_dtypes

    x_bf16 = cuda.to_device(x.copy_to_host().astype(ml_dtypes.bfloat16).view(np.uint16))  # its bits

    def static_bf16():
        per_tensor.per_tensor_into(x_bf16.reshape(n), scale_arr, codes, scales1, fmt, False)

    def per_row_bf16():
        per_channel.per_channel_into(x_bf16, 0, codes2d, row_scales, amax_bits, fmt)

    def columns():  # three launches: zero the column maxima, find them, encode
        per_channel.per_channel_into(x, 1, codes2d, col_scales, amax_bits, fmt)

    def static():
        per_tensor.per_tensor_into(flat, scale_arr, codes, scales1, fmt, False)

    def per_row():
        per_channel.per_channel_into(x, 0, codes2d, row_scales, amax_bits, fmt)

    cases = [
        ("static per-tensor (ours)", static, n * 5),
        ("dynamic per-tensor (ours), logical bytes", dynamic, n * 5),
        ("dynamic per-tensor (ours), bytes moved", dynamic, n * 9),
        ("per-channel rows (ours)", per_row, n * 5),
        ("per-channel columns (ours), logical bytes", columns, n * 5),
        ("per-channel columns (ours), bytes moved", columns, n * 9),
        ("static per-tensor, bf16 in (ours)", static_bf16, n * 3),
        ("per-channel rows, bf16 in (ours)", per_row_bf16, n * 3),
    ]
    peers = [("torch.compile static per-tensor", "static", False),
             ("torch.compile dynamic per-tensor", "dynamic", False),
             ("torch.compile per-channel rows", "rows", False), ("torch.compile per-channel columns", "columns", False),
             ("torch.compile static per-tensor, bf16 in", "static", True),
             ("torch.compile per-channel rows, bf16 in", "rows", True)]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn, nbytes) in enumerate(cases, 1):
        _progress(step, total, label)
        rows.append(bench.make_row(label, bench.time_cuda(fn, repeats=repeats), shape=[m, k], nbytes=nbytes))
    for step, (label, kind, bf16) in enumerate(peers, len(cases) + 1):
        _progress(step, total, label)
        rows.append(bench.bench_peer(label, "torch", _torch_compiled(kind, x, 0.05, bf16), shape=[m, k],
                                     nbytes=n * (3 if bf16 else 5), repeats=repeats))
    path = bench.record_results("ch02_quantize", rows, shapes=[[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path


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
    layouts, software vs hardware encoder, against torch.compile of DeepGEMM's reference casts.
    Timed: our launch on preallocated outputs. Bytes counted (logical, read + written):
    n * (in + 1) plus 4 bytes per scale: 4 / 128 per element for 1 x 128, 4 / 16384 for 128 x 128."""
    import ml_dtypes

    from . import blockwise

    m, k = 32768, 4096
    n = m * k
    rng = np.random.default_rng(4)
    x = _random_device((m, k), rng)
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

    cases = [
        ("1x128 (ours)", run(x, 1, codes, group_scales), groups_bytes(4)),
        ("1x128, M-major scales (ours)", run(x, 1, codes, m_major, layout="m_major"), groups_bytes(4)),
        ("1x128, interleaved scales (ours)", run(x, 1, buf, group_scales, layout="interleaved"), groups_bytes(4)),
        ("1x128, power-of-two scales (ours)", run(x, 1, codes, group_scales, pow2=True), groups_bytes(4)),
        ("128x128 (ours)", run(x, 128, codes, tile_scales), tiles_bytes(4)),
        ("1x128, bf16 in (ours)", run(x_bf16, 1, codes, group_scales), groups_bytes(2)),
        ("128x128, bf16 in (ours)", run(x_bf16, 128, codes, tile_scales), tiles_bytes(2)),
    ]
    if fp8.hardware_fp8_available():
        cases += [("1x128, software encoder (ours)", run(x, 1, codes, group_scales, encoder="software"),
                   groups_bytes(4)),
                  ("128x128, software encoder (ours)", run(x, 128, codes, tile_scales, encoder="software"),
                   tiles_bytes(4))]
    peers = [("torch.compile 1x128", "groups", False, groups_bytes(4)),
             ("torch.compile 128x128", "tiles", False, tiles_bytes(4)),
             ("torch.compile 1x128, bf16 in", "groups", True, groups_bytes(2)),
             ("torch.compile 128x128, bf16 in", "tiles", True, tiles_bytes(2))]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn, nbytes) in enumerate(cases, 1):
        _progress(step, total, label)
        rows.append(bench.make_row(label, bench.time_cuda(fn, repeats=repeats), shape=[m, k], nbytes=nbytes))
    for step, (label, kind, bf16, nbytes) in enumerate(peers, len(cases) + 1):
        _progress(step, total, label)
        rows.append(bench.bench_peer(label, "torch", _torch_compiled_blocks(kind, x, bf16), shape=[m, k],
                                     nbytes=nbytes, repeats=repeats))
    path = bench.record_results("ch04_blockwise", rows, shapes=[[m, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path


def _safe_peer(label, build, **kw):
    """A peer row, or a skipped row saying why the peer could not run (an API it lacks)."""
    try:
        return bench.bench_peer(label, "torch", build, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure of a peer is reported, not fatal
        return bench.skipped_row(label, shape=kw["shape"], reason=f"{type(exc).__name__}: {exc}"[:160], peer="torch")


def _torch_sgemm(a, b):
    def build(torch):
        torch.backends.cuda.matmul.allow_tf32 = False  # true float32 SGEMM, as in ANCHORS.md
        ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
        return lambda: torch.matmul(ta, tb)
    return build


def _torch_scaled_mm(a, b, blockwise: bool):
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
    from . import blockwise, gemm

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
             ("torch._scaled_mm FP8 per-tensor", _torch_scaled_mm(a_host, b_host, False)),
             ("torch._scaled_mm FP8 1x128/128x128", _torch_scaled_mm(a_host, b_host, True))]
    rows, total = [], len(cases) + len(peers)
    for step, (label, fn) in enumerate(cases, 1):
        _progress(step, total, label)
        rows.append(bench.make_row(label, bench.time_cuda(fn, repeats=repeats), shape=[m, n, k], flops=flops))
    for step, (label, build) in enumerate(peers, len(cases) + 1):
        _progress(step, total, label)
        rows.append(_safe_peer(label, build, shape=[m, n, k], flops=flops, repeats=repeats))
    path = bench.record_results("ch05_gemm", rows, shapes=[[m, n, k]], out_dir=out_dir)
    plotting.redraw(path)
    return path


SWEEPS = {"00": chapter00_encode, "01": chapter01_absmax, "02": chapter02_quantize, "03": chapter02_quantize,
          "04": chapter04_blockwise, "05": chapter05_gemm}


def run(chapter: str | None = None) -> list[Path]:
    """Run one chapter's sweep, or every chapter's."""
    bench.refuse_on_simulator("bench")
    keys = [chapter.zfill(2)] if chapter else list(SWEEPS)
    unknown = [k for k in keys if k not in SWEEPS]
    if unknown:
        raise ValueError(f"no benchmark for chapter {unknown[0]}; chapters with one: {', '.join(SWEEPS)}")
    return [SWEEPS[k]() for k in keys]
