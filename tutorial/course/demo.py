"""`fp8-tutorial demo`: run every chapter that exists, check each kernel against its
reference, print a summary, and write the figures into one folder.

On the simulator the kernels run at small sizes and no time is measured; throughput figures
come from the recorded GPU results, labelled as recorded. On a GPU the demo also times the
kernels (a short sweep; `fp8-tutorial bench` runs the full one).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import accuracy, fp8, gemm, reduction, reduction_tiles, reference
from ..perf import plotting, timing
from ..qtensor import QTensor
from ..perf.sweeps import SWEEPS
from ..quant import blockwise, interleaved
from ..quant.per_channel import quantize_per_channel
from ..quant.per_tensor import quantize_per_tensor
from ..runtime.device import ON_SIMULATOR, SELECTION, hardware_fp8_available, warpgroup_mma_available


@dataclass
class ChapterResult:
    chapter: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (what, passed, detail)
    table: list[dict] = field(default_factory=list)  # rows of the chapter's summary table
    figures: list[Path] = field(default_factory=list)


def _sample(n: int, rng) -> np.ndarray:
    """Magnitudes spread log-uniformly over 2^-20 .. 2^10, random signs: every regime of E4M3."""
    mags = 2.0 ** rng.uniform(-20, 10, n)
    return (mags * rng.choice([-1.0, 1.0], n)).astype(np.float32)


def chapter00(out: Path) -> ChapterResult:
    result = ChapterResult("00 FP8 formats")
    rng = np.random.default_rng(0)
    n = 4096 if ON_SIMULATOR else 1 << 22
    x = _sample(n, rng)
    outs = [np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(n, np.float32), np.zeros(n, np.float32)]
    launch = (2, 64) if ON_SIMULATOR else (1024, 256)
    for k, (encode, decode) in enumerate([(fp8.encode_e4m3, fp8.decode_e4m3), (fp8.encode_e5m2, fp8.decode_e5m2)]):
        fp8.encode_kernel(encode)[launch](x, outs[k])
        fp8.decode_kernel(decode)[launch](outs[k], outs[k + 2])
    for k, fmt in enumerate((fp8.E4M3, fp8.E5M2)):
        same = np.array_equal(outs[k], fp8.encode(x, fmt)) and np.array_equal(outs[k + 2], fp8.decode(outs[k], fmt))
        result.checks.append((f"encode/decode_{fmt.name} kernel == host codec ({n} values)", same, ""))
    errors = {}
    for k, fmt in enumerate((fp8.E4M3, fp8.E5M2)):
        back = outs[k + 2].astype(np.float64)
        normal = (np.abs(x) >= fmt.min_normal) & (np.abs(x) <= fmt.max)
        rel = np.abs(back - x) / np.abs(x)
        errors[str(fmt)] = rel[normal]
        result.table.append({
            "format": str(fmt),
            "normal range": f"{fmt.min_normal:.3g} .. {fmt.max:g}",
            "max rel. error (normals)": f"{rel[normal].max():.4f}",
            "mean rel. error (normals)": f"{rel[normal].mean():.4f}",
            "inputs flushed to 0": f"{np.mean(back == 0):.1%}",
        })
    fig = plotting.error_histogram(errors, title="FP8 round trip: relative error of values in the normal range",
                                   xlabel="relative error |decode(encode(x)) - x| / |x|")
    result.figures.append(plotting.save(fig, out / "ch00_roundtrip_error.png"))
    result.figures += _recorded_or_measured(out, "ch00_encode", "00")
    return result


def chapter01(out: Path) -> ChapterResult:
    result = ChapterResult("01 warp reduction")
    rng = np.random.default_rng(1)
    n, (m, k) = (5000, (12, 512)) if ON_SIMULATOR else (1 << 26, (8192, 4096))
    x = rng.standard_normal(n).astype(np.float32)
    x[-1] = -1e30  # the extreme value in the very last element
    result.checks.append((f"absmax, {n} float32, largest last", reduction.absmax(x) == np.float32(1e30), ""))
    x[n // 3] = np.nan
    result.checks.append(("absmax with one NaN is NaN", bool(np.isnan(reduction.absmax(x))), ""))
    a = rng.standard_normal((m, k)).astype(np.float32)
    for block in [(1, 128), (128, 128) if not ON_SIMULATOR else (4, 128)]:
        got = reduction_tiles.absmax_blocks(a, block)
        want = np.abs(a).reshape(m // block[0], block[0], k // block[1], block[1]).max(axis=(1, 3))
        result.checks.append((f"absmax_blocks {block} on {m}x{k}", np.array_equal(got, want), ""))
    result.figures += _recorded_or_measured(out, "ch01_absmax", "01")
    return result


def chapter02_03(out: Path) -> ChapterResult:
    result = ChapterResult("02-03 per-tensor and per-channel quantization")
    m, k = (24, 256) if ON_SIMULATOR else (4096, 4096)
    x = accuracy.activation_like((m, k), seed=3)
    x[1, 2], x[2, 3] = np.nan, -np.inf  # they must not set a scale
    checks = [("per-tensor dynamic", quantize_per_tensor(x), reference.per_tensor_reference(x)),
              ("per-tensor static, scale 0.01", quantize_per_tensor(x, scale=0.01),
               reference.per_tensor_reference(x, scale=0.01)),
              ("per-row", quantize_per_channel(x, 0), reference.per_channel_reference(x, 0)),
              ("per-column", quantize_per_channel(x, 1), reference.per_channel_reference(x, 1))]
    for what, got, want in checks:
        same = np.array_equal(got.codes, want.codes) and np.array_equal(got.scales, want.scales)
        result.checks.append((f"{what} on {m}x{k} == numpy reference, bit for bit", same, ""))
    # The accuracy study on a larger matrix, through the references (the kernels' codes, bit for bit)
    a = accuracy.activation_like((1024, 1024), seed=4)
    methods = {f"{g} {f.upper()}": accuracy.fp8_roundtrip(a, g, f) for g in ("tensor", "row", "column")
               for f in ("e4m3", "e5m2")}
    methods.update({"tensor INT8": accuracy.int8_absmax(a), "column INT8": accuracy.int8_absmax(a, axis=1)})
    for row in accuracy.accuracy_table(a, methods):
        result.table.append({"activation-like 1024x1024": row["method"], "SQNR dB": f"{row['sqnr_db']:.1f}",
                             "rel. Frobenius": f"{row['rel_fro']:.4f}", "max abs error": f"{row['max_abs']:.3g}"})
    errors = {name: methods[name] - a for name in ("tensor E4M3", "column E4M3", "tensor INT8", "column INT8")}
    fig = plotting.error_histogram(errors, title="activation-like 1024x1024: quantization error")
    result.figures.append(plotting.save(fig, out / "ch02_03_error.png"))
    result.figures += _recorded_or_measured(out, "ch02_quantize", "02")
    return result


def chapter04(out: Path) -> ChapterResult:
    result = ChapterResult("04 fine-grained (block) quantization")
    m, k = (40, 384) if ON_SIMULATOR else (4096, 4096)
    square = (16, 128) if ON_SIMULATOR else (128, 128)  # a simulated 128 x 128 tile takes seconds
    x = accuracy.activation_like((m, k), seed=5)
    x[3, 7], x[4, 9] = np.nan, np.inf
    for block, kw in [((1, 128), {}), ((1, 128), {"pow2_scales": True}), (square, {})]:
        got = blockwise.quantize_blockwise(x, block, **kw)
        want = reference.blockwise_reference(x, block, pow2_scales=kw.get("pow2_scales", False))
        same = np.array_equal(got.codes, want.codes) and np.array_equal(got.scales, want.scales)
        what = f"quantize_blockwise {block}{' pow2 scales' if kw else ''} on {m}x{k} == numpy reference, bit for bit"
        result.checks.append((what, same, ""))
    mm = blockwise.quantize_blockwise(x, (1, 128), scales_m_major=True)
    result.checks.append(("M-major scales: the same scales, stored transposed",
                          np.array_equal(mm.scales, reference.per_token_group_reference(x).scales), ""))
    buf = interleaved.quantize_groups_interleaved(x, 128)
    result.checks.append(("interleaved codes + scales == reference layout",
                          np.array_equal(buf, reference.interleaved_reference(reference.per_token_group_reference(x))), ""))
    # Where blocks pay: outlier channels large enough to push ordinary values towards E4M3's subnormals
    a = accuracy.activation_like((1024, 1024), seed=6, outlier_scale=(3e3, 1e4))
    methods = {"per-tensor": accuracy.fp8_roundtrip(a, "tensor"), "per-row": accuracy.fp8_roundtrip(a, "row"),
               "1x128": accuracy.fp8_roundtrip(a, (1, 128)), "128x128": accuracy.fp8_roundtrip(a, (128, 128))}
    for row in accuracy.accuracy_table(a, methods):
        result.table.append({"E4M3, outliers 3e3-1e4x": row["method"], "SQNR dB": f"{row['sqnr_db']:.1f}",
                             "rel. Frobenius": f"{row['rel_fro']:.2e}", "max abs error": f"{row['max_abs']:.3g}"})
    result.figures += _recorded_or_measured(out, "ch04_blockwise", "04")
    return result


def chapter05(out: Path) -> ChapterResult:
    result = ChapterResult("05 scaled GEMM")
    m, k, n = (48, 256, 40) if ON_SIMULATOR else (1024, 1024, 1024)
    rng = np.random.default_rng(7)
    a = accuracy.activation_like((m, k), seed=7)
    b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    exact = a.astype(np.float64) @ b
    u = 2.0 ** -24
    for block_a, block_b, mode in [((1, 128), (128, 128), "promote"), ((1, 128), (128, 128), "dequant"),
                                   ((1, k), (k, 1), "epilogue")]:
        qa, qb = reference.blockwise_reference(a, block_a), reference.blockwise_reference(b, block_b)
        c = gemm.scaled_matmul(qa, qb, mode, kernel=_chapter05_kernel(mode))
        deq = [fp8.decode(q.codes, q.fmt).astype(np.float64) * q.scale_per_element() for q in (qa, qb)]
        bound = (k + 3) * u / (1 - (k + 3) * u) * (np.abs(deq[0]) @ np.abs(deq[1]))
        ok = bool((np.abs(c - reference.scaled_matmul_reference(qa, qb)) <= bound).all())
        result.checks.append((f"scaled_matmul {block_a} x {block_b}, {mode}, {m}x{k}x{n}: within float32's bound", ok, ""))
        errors = accuracy.gemm_errors(c, exact)
        result.table.append({"A x B scales": f"{block_a} x {block_b}", "mode": mode,
                             "rel. Frobenius vs float64": f"{errors['rel_fro']:.2e}",
                             "calc_diff": f"{errors['calc_diff']:.2e}"})
    qa, qb = reference.blockwise_reference(a, (1, 128)), reference.blockwise_reference(b, (128, 128))
    with warnings.catch_warnings():  # wrong on purpose, and labelled so in the table
        warnings.simplefilter("ignore", UserWarning)
        wrong = accuracy.gemm_errors(gemm.scaled_matmul(qa, qb, "epilogue", kernel=_chapter05_kernel("epilogue")), exact)
    result.table.append({"A x B scales": "(1, 128) x (128, 128)", "mode": "epilogue (wrong here)",
                         "rel. Frobenius vs float64": f"{wrong['rel_fro']:.2e}", "calc_diff": f"{wrong['calc_diff']:.2e}"})
    result.figures += _recorded_or_measured(out, "ch05_gemm", "05")
    return result


def _chapter05_kernel(mode: str) -> str:
    """Chapter 05's kernels, not "auto" (which picks chapter 06's wgmma on Hopper): mma.sync
    on a GPU with FP8 tensor cores where the mode allows, else the CUDA cores."""
    return "tensor_core" if hardware_fp8_available() and mode != "dequant" else "cuda_core"


def chapter06(out: Path) -> ChapterResult:
    """Hopper's warpgroup MMA: exact on small-integer codes (emulated on the simulator), and on
    an H100 / H200 the TMA kernel within float32's bound plus the tensor cores' own
    accumulation error, promoted and not."""
    result = ChapterResult("06 warpgroup MMA (wgmma) and TMA")
    rng = np.random.default_rng(6)
    values = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4], np.float32)  # exact in E4M3, and so are their sums
    m, k, n = 64, 256, 32
    qa = QTensor(fp8.encode(rng.choice(values, (m, k)), "e4m3"), np.full((m, 2), 0.5, np.float32), "e4m3", (1, 128))
    qb = QTensor(fp8.encode(rng.choice(values, (k, n)), "e4m3"), np.full((2, 1), 0.25, np.float32), "e4m3",
                 (128, 128))
    got = gemm.scaled_matmul(qa, qb, kernel="wgmma") if ON_SIMULATOR or warpgroup_mma_available() else None
    if got is not None:
        ok = bool(np.array_equal(got, reference.scaled_matmul_reference(qa, qb).astype(np.float32)))
        where = "emulated" if ON_SIMULATOR else "the tensor cores"
        result.checks.append((f"wgmma GEMM on small-integer codes, {m}x{k}x{n} ({where}) == float64 product", ok, ""))
    if ON_SIMULATOR or not warpgroup_mma_available():
        result.figures += _recorded_or_measured(out, "ch06_wgmma", "06") if ON_SIMULATOR else []
        return result
    m = k = n = 1024
    a = accuracy.activation_like((m, k), seed=6)
    b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    exact = a.astype(np.float64) @ b
    for block_a, block_b, mode in [((1, 128), (128, 128), "promote"), ((1, k), (k, 1), "promote"),
                                   ((1, k), (k, 1), "epilogue")]:
        qa, qb = reference.blockwise_reference(a, block_a), reference.blockwise_reference(b, block_b)
        c = gemm.scaled_matmul(qa, qb, mode, kernel="wgmma")
        deq = [fp8.decode(q.codes, q.fmt).astype(np.float64) * q.scale_per_element() for q in (qa, qb)]
        magnitude = np.abs(deq[0]) @ np.abs(deq[1])
        error = np.abs(c - reference.scaled_matmul_reference(qa, qb))
        if mode == "promote":
            ok = bool((error <= (gemm.wgmma.ACCUMULATION_BOUND + (k + 3) * 2.0**-24) * magnitude).all())
            result.checks.append((f"wgmma {block_a} x {block_b}, promoted, {m}x{k}x{n}: within the tensor cores' "
                                  "bound", ok, ""))
        errors = accuracy.gemm_errors(c, exact)
        result.table.append({"A x B scales": f"{block_a} x {block_b}", "mode": mode,
                             "max err / sum|a||b|": f"{float(np.max(error / magnitude)):.2e}",
                             "rel. Frobenius vs float64": f"{errors['rel_fro']:.2e}"})
    result.figures += _recorded_or_measured(out, "ch06_wgmma", "06")
    return result


def _recorded_or_measured(out: Path, name: str, chapter: str) -> list[Path]:
    """On a GPU: the chapter's sweep, measured now, into `out`. On the simulator: the
    recorded results, labelled as recorded."""
    if not ON_SIMULATOR:
        path = SWEEPS[chapter](repeats=20, out_dir=out)
        return [path.with_suffix(".png")]
    recorded = timing.find_recorded(name)
    if recorded is None:
        return []
    fig = plotting.results_figure(timing.load_results(recorded), recorded=True)  # as the sweep draws it
    return [plotting.save(fig, out / f"{name}_recorded.png")]


CHAPTER_DEMOS = [chapter00, chapter01, chapter02_03, chapter04, chapter05, chapter06]


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  " + "  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  " + "  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)))


def run(out: Path) -> int:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    where = "GPU" if not ON_SIMULATOR else "CUDA simulator (small sizes, no timings)"
    print(f"fp8-tutorial demo on the {where}: {SELECTION.reason}\n")
    failures = 0
    for demo in CHAPTER_DEMOS:
        start = time.time()
        result = demo(out)
        print(f"== {result.chapter} ({time.time() - start:.1f} s)")
        for what, ok, detail in result.checks:
            failures += not ok
            print(f"  [{'ok' if ok else 'FAILED'}] {what}{': ' + detail if detail else ''}")
        _print_table(result.table)
        for path in result.figures:
            print(f"  figure: {path.relative_to(out)}")
        print()
    print(f"figures written to {out}")
    print("all checks passed" if failures == 0 else f"{failures} check(s) FAILED")
    return 0 if failures == 0 else 1
