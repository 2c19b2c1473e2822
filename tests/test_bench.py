"""The benchmark harness: refusals on the simulator, byte/FLOP accounting, results files, figures."""

import importlib.util
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tutorial  # noqa: E402,F401  (chooses the device mode before numba.cuda loads)
from tutorial.perf import plotting, timing as bench  # noqa: E402

on_sim = pytest.mark.skipif(not tutorial.ON_SIMULATOR, reason="simulator behaviour")

H100 = "NVIDIA H100 80GB HBM3"


# -- refusal on the simulator ---------------------------------------------------------------------


@on_sim
@pytest.mark.parametrize("call", [
    lambda: bench.time_cuda(lambda: None),
    lambda: bench.time_cuda(lambda a: None, rotate=[(1,), (2,)], repeats=20),
    lambda: bench.launch_overhead_us(),
    lambda: bench.copy_bandwidth_tbps(1 << 20),
    lambda: bench.time_peer("torch", lambda torch: (lambda: None)),
    lambda: bench.bench_peer("torch eager", "torch", lambda torch: (lambda: None), shape=(4, 4)),
    lambda: bench.record_results("x", [], shapes=[]),  # would have to measure the copy figure
], ids=["time_cuda", "time_cuda_rotate", "launch_overhead", "copy", "time_peer", "bench_peer",
        "record_unmeasured"])
def test_timing_functions_refuse_on_the_simulator(call):
    with pytest.raises(bench.SimulatorTimingError, match="simulator") as info:
        call()
    assert "mean nothing" in str(info.value)


@on_sim
def test_time_cuda_never_calls_fn_on_the_simulator():
    calls = []
    with pytest.raises(bench.SimulatorTimingError):
        bench.time_cuda(lambda: calls.append(1))
    assert calls == []


@pytest.mark.parametrize("repeats", [0, 1, 19])
def test_time_cuda_rejects_fewer_than_20_repeats(repeats):
    # Validation comes before the simulator check, so this runs the same on GPU and simulator.
    with pytest.raises(ValueError, match="at least 20"):
        bench.time_cuda(lambda: None, repeats=repeats)


def test_time_cuda_rejects_empty_rotation():
    with pytest.raises(ValueError, match="rotate"):
        bench.time_cuda(lambda: None, rotate=[])


# -- accounting (figures from ANCHORS.md "How to count") -------------------------------------------


def test_quant_bytes_1x128_of_32768x4096_float32():
    n = 32768 * 4096
    assert bench.quant_bytes(n, 4, 4 / 128) == n * (4 + 1 + 4 / 128)
    assert bench.quant_bytes(n, 4, 4 / 128) == 675_282_944  # 134217728 elements * 5.03125 bytes


def test_quant_bytes_per_tensor_and_128x128():
    n = 4096 * 4096
    assert bench.quant_bytes(n, 4) == 5 * n  # per-tensor fp32 -> e4m3: 5 B/element
    assert bench.quant_bytes(n, 2) == 3 * n  # bf16 input
    assert bench.quant_bytes(n, 4, 4 / 16384) == n * 5 + 4 * 1024  # 1024 block scales of 4 B


def test_absmax_gemm_and_copy_counts():
    assert bench.absmax_bytes(4096 * 4096, 4) == 64 * 2**20  # read only
    assert bench.gemm_flops(4096, 4096, 4096) == 137_438_953_472
    assert bench.gemm_flops(2, 3, 5) == 60
    assert bench.copy_bytes(1 << 30) == 2 << 30  # read + write


def test_timing_bandwidth_and_tflops_use_the_median():
    t = bench.Timing(median_ms=2.0, min_ms=1.0, max_ms=9.0, repeats=50)
    assert t.bandwidth_tbps(6e9) == pytest.approx(3.0)  # 6 GB in 2 ms
    assert t.tflops(2e12) == pytest.approx(1000.0)  # 2e12 FLOP in 2 ms
    # ANCHORS: 1 GiB copy at 2.94 TB/s takes 2 GiB / 2.94e12 s
    copy = bench.Timing(2 * 2**30 / 2.94e12 * 1e3, 0.7, 0.8, 50)
    assert copy.bandwidth_tbps(bench.copy_bytes(1 << 30)) == pytest.approx(2.94)
    with pytest.raises(AttributeError):
        t.median_ms = 1.0  # frozen


def test_make_row_counts_bandwidth_or_flops():
    t = bench.Timing(1.0, 0.9, 1.2, 50)
    bw = bench.make_row("numba 1x128", t, shape=(32768, 4096), nbytes=3e9)
    assert bw["tbps"] == pytest.approx(3.0) and bw["tflops"] is None and bw["shape"] == [32768, 4096]
    mm = bench.make_row("sgemm", t, shape=(1, 2, 3), flops=5e12, peer="torch")
    assert mm["tflops"] == pytest.approx(5000.0) and mm["tbps"] is None and mm["peer"] == "torch"


# -- peers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["torch", "cupy"])
def test_missing_peer_is_reported_by_name(name):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    assert bench.peer_available(name) is False
    assert bench.peer_missing_reason(name) == f"{name} not installed"
    row = bench.skipped_row(f"{name} eager", shape=(8, 8), reason=bench.peer_missing_reason(name),
                            peer=name)
    assert row["skipped"] == f"{name} not installed" and "median_ms" not in row


def test_unknown_peer_is_an_error():
    with pytest.raises(ValueError, match="unknown peer"):
        bench.peer_available("jax")


# -- results files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, slug", [
    (H100, "nvidia-h100-80gb-hbm3"),
    ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
    ("  Tesla V100-SXM2-16GB ", "tesla-v100-sxm2-16gb"),
    (None, "cuda-simulator"),
])
def test_device_slug(name, slug):
    assert bench.device_slug(name) == slug


def _report(gpu=H100):
    return {"mode": "gpu", "gpu": gpu, "compute_capability": "9.0", "driver_cuda": "13.0",
            "packages": {"numba-cuda": "0.30.4", "numpy": "2.4.6"}}


def test_record_results_writes_the_schema(tmp_path):
    t = bench.Timing(1.0, 0.9, 1.5, 50)
    rows = [bench.make_row("numba", t, shape=np.array([1024, 1024]), nbytes=np.int64(1_500_000_000)),
            bench.skipped_row("torch eager", shape=(1024, 1024), reason="torch not installed",
                              peer="torch")]
    path = bench.record_results("quant", rows, shapes=[(1024, 1024)], out_dir=tmp_path,
                                copy_tbps=3.0, launch_overhead_us=4.5, report=_report())
    assert path == tmp_path / "nvidia-h100-80gb-hbm3" / "quant.json"
    record = json.loads(path.read_text())
    assert set(bench.REQUIRED_KEYS) <= set(record)
    assert record["device"]["gpu"] == H100 and record["device"]["compute_capability"] == "9.0"
    assert record["copy_tbps"] == 3.0 and record["launch_overhead_us"] == 4.5
    assert record["shapes"] == [[1024, 1024]] and record["date"][:2] == "20"
    numba_row, torch_row = record["rows"]
    assert numba_row["tbps"] == pytest.approx(1.5)
    assert numba_row["fraction_of_copy"] == pytest.approx(0.5)
    assert {"label", "shape", "median_ms", "min_ms", "max_ms"} <= set(numba_row)
    assert torch_row["skipped"] == "torch not installed"
    assert rows[0]["fraction_of_copy"] is None  # the caller's rows are not modified
    assert bench.load_results(path) == record


def test_record_results_uses_device_report_by_default(tmp_path):
    path = bench.record_results("r", [], shapes=[], out_dir=tmp_path, copy_tbps=1.0,
                                launch_overhead_us=1.0)
    record = bench.load_results(path)
    assert {"gpu", "compute_capability", "driver_cuda", "packages"} <= set(record["device"])
    assert record["device"]["packages"]["numba-cuda"]
    assert path.parent.name == bench.device_slug(record["device"]["gpu"])


def test_load_results_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"check": "something else"}))
    with pytest.raises(ValueError, match="missing"):
        bench.load_results(path)


# -- figures ------------------------------------------------------------------------------------


def _results():
    t = lambda ms: bench.Timing(ms, ms, ms, 50)  # noqa: E731
    rows = []
    for n in (1 << 20, 1 << 24, 1 << 27):
        rows.append(bench.make_row("numba 1x128", t(n / 1e9), shape=(n,), nbytes=2 * n))
        rows.append(bench.make_row("torch.compile 1x128", t(n / 0.5e9), shape=(n,), nbytes=2 * n,
                                   peer="torch"))
    rows.append(bench.skipped_row("cupy", shape=(1,), reason="cupy not installed", peer="cupy"))
    return {"name": "quant", "date": "2026-11-25T10:00:00+00:00", "device": _report(),
            "shapes": [[1 << 20]], "launch_overhead_us": 5.0, "copy_tbps": 2.94, "rows": rows}


def _all_text(fig):
    return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_throughput_plot_lines_roofline_peers_and_provenance(tmp_path):
    fig = plotting.throughput_plot(_results())
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.get_lines()) == 3 and len(labels) == 3
    assert labels[:2] == ["numba 1x128", "torch.compile 1x128"] and "copy roofline" in labels[2]
    numba, torch_line, roof = ax.get_lines()
    assert numba.get_linestyle() == "-" and torch_line.get_linestyle() == "--"
    assert list(roof.get_ydata()) == [2.94, 2.94]
    assert list(numba.get_xdata()) == [2 << 20, 2 << 24, 2 << 27]
    text = _all_text(fig)
    assert H100 in text and "2026-11-25" in text and "recorded on" not in text
    assert "cupy not installed" in text
    out = plotting.save(fig, tmp_path / "figs" / "quant.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_throughput_plot_says_when_a_run_was_recorded_elsewhere():
    text = _all_text(plotting.throughput_plot(_results(), recorded=True))
    assert f"recorded on {H100}, 2026-11-25" in text


def test_throughput_plot_fraction_of_copy_has_no_roofline(tmp_path):
    results = _results()
    path = bench.record_results("quant", results["rows"], shapes=results["shapes"], out_dir=tmp_path,
                                copy_tbps=2.0, launch_overhead_us=5.0, report=_report())
    fig = plotting.throughput_plot(bench.load_results(path), y="fraction_of_copy")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), 1.0)  # 2n bytes in n/1e9 ms = 2 TB/s = the copy figure
    assert np.allclose(lines[1].get_ydata(), 0.5)
    with pytest.raises(ValueError):
        plotting.throughput_plot(results, y="speed")


def test_throughput_bars_one_bar_per_timed_row_peers_hatched_values_written():
    results = _results()
    results["rows"] = [r for r in results["rows"] if r.get("shape") in ([1 << 27], (1 << 27,)) or "skipped" in r]
    fig = plotting.throughput_bars(results, recorded=True)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 2  # the skipped row has no bar
    assert [b.get_width() for b in bars] == pytest.approx([2.0, 1.0])  # 2n bytes in n/1e9 ms; the peer half
    assert bars[0].get_hatch() is None and bars[1].get_hatch() == "//"
    text = _all_text(fig)
    assert "2.00" in text and "1.00" in text and f"recorded on {H100}" in text and "copy roofline" in text


def test_bars_turn_logarithmic_when_values_span_decades_so_every_bar_shows():
    """1 TFLOPS beside 1300: on a linear axis the small bar would have no width."""
    t = lambda ms: bench.Timing(ms, ms, ms, 50)  # noqa: E731
    flops = 2 * 4096**3
    rows = [bench.make_row(label, t(flops / tflops / 1e9), shape=(4096, 4096, 4096), flops=flops)
            for label, tflops in [("naive (ours)", 1.37), ("tensor cores (ours)", 91.2), ("cuBLAS", 1300.0)]]
    results = {"name": "gemm", "date": "2026-11-29T10:00:00+00:00", "device": _report(), "shapes": [],
               "launch_overhead_us": 5.0, "copy_tbps": None, "rows": rows}
    fig = plotting.throughput_bars(results, y="tflops")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] <= 1.37 and ax.get_xlim()[1] >= 1300
    assert "log scale" in ax.get_xlabel()
    results["rows"] = rows[1:]  # 91 and 1300: within two decades, linear is fine
    assert plotting.throughput_bars(results, y="tflops").axes[0].get_xscale() == "linear"


def test_a_label_skipped_at_every_size_is_noted_once():
    results = _results()
    results["rows"] += [bench.skipped_row("cupy", shape=(n,), reason="cupy not installed", peer="cupy")
                        for n in (2, 3, 4)]
    text = _all_text(plotting.throughput_plot(results))
    assert text.count("cupy not installed") == 1 and "skipped at 4 sizes" in text


def test_saved_figures_keep_a_long_title_whole(tmp_path):
    """A title wider than the figure is wrapped, and the PNG is cropped to what is drawn."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    fig.subplots().set_title("a title much longer than a three inch wide figure could ever hold on one line")
    path = plotting.save(fig, tmp_path / "wide.png")
    width = int.from_bytes(path.read_bytes()[16:20], "big")  # the PNG header's width
    assert width > 3 * 120  # grown past 3 in at 120 dpi to hold the whole title


def test_redraw_draws_the_png_of_a_recorded_file_from_the_file_alone(tmp_path):
    results = _results()
    path = bench.record_results("quant", results["rows"], shapes=results["shapes"], out_dir=tmp_path,
                                copy_tbps=2.0, launch_overhead_us=5.0, report=_report())
    png = plotting.redraw(path)
    assert png == path.with_suffix(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plotting.results_figure(bench.load_results(path))
    assert len(fig.axes[0].get_lines()) == 3  # several sizes: a line per label, and the roofline


def test_every_recorded_png_is_what_its_json_draws(tmp_path):
    """The committed figures were drawn by the current plotting code from their files."""
    import shutil

    from matplotlib.image import imread

    root = Path(__file__).resolve().parents[1] / "results"
    for path in sorted(root.glob("*/*.json")):
        if not path.with_suffix(".png").exists():
            continue
        copy = tmp_path / path.parent.name / path.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(path, copy)
        ours, theirs = imread(plotting.redraw(copy)), imread(path.with_suffix(".png"))
        # the same size, give or take a font's rendering: a figure drawn by older code differs more
        assert np.allclose(ours.shape[:2], theirs.shape[:2], rtol=0.02), \
            f"{path}: {theirs.shape[:2]} pixels, redrawn {ours.shape[:2]}: redraw it with tutorial.perf.plotting.redraw"


def test_table_shows_as_html_with_numbers_right_aligned_and_as_aligned_text():
    table = plotting.Table([{"method": "per-tensor", "SQNR dB": "31.3"}, {"method": "1x128 <a>", "SQNR dB": "43.5"}])
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and "1x128 &lt;a&gt;" in html  # escaped
    assert 'text-align: right; white-space: nowrap">43.5</td>' in html
    assert 'text-align: left">per-tensor</td>' in html
    assert str(table).splitlines() == ["method      SQNR dB", "----------  -------", "per-tensor     31.3",
                                       "1x128 <a>      43.5"]
    with pytest.raises(ValueError, match="no rows"):
        plotting.Table([])


def test_error_histogram_one_series_per_method_with_zero_counts(tmp_path):
    rng = np.random.default_rng(0)
    errors = {"per-tensor": np.abs(rng.normal(size=1000)) * 1e-2,
              "1x128": np.concatenate([np.zeros(10), np.abs(rng.normal(size=990)) * 1e-3])}
    fig = plotting.error_histogram(errors, title="e4m3 error")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.get_lines()) == 2
    assert labels == ["per-tensor (0 of 1000 exactly zero)", "1x128 (10 of 1000 exactly zero)"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_title() == "e4m3 error"
    # The binned counts account for every positive error.
    assert ax.get_lines()[1].get_ydata()[:-1].sum() == 990
    plotting.save(fig, tmp_path / "hist.png")
    assert (tmp_path / "hist.png").stat().st_size > 1000


def test_error_histogram_all_zero_errors_still_lists_the_method():
    fig = plotting.error_histogram({"exact": np.zeros(5)}, title="t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["exact (5 of 5 exactly zero)"]


# -- the GPU code path, run against a stand-in for numba.cuda's event API ------------------------


class _FakeCuda:
    """Events stamped from a clock that advances only when the timed function runs."""

    def __init__(self, log):
        self.log, self.clock = log, 0.0

    def event(self):
        fake = self

        class Event:
            def record(self, stream=0):
                self.t = fake.clock
                fake.log.append("record")

        return Event()

    def event_elapsed_time(self, start, end):
        return end.t - start.t

    def synchronize(self):
        self.log.append("sync")


@pytest.fixture
def fake_gpu(monkeypatch):
    log = []
    fake = _FakeCuda(log)
    monkeypatch.setattr(bench.device, "ON_SIMULATOR", False)
    monkeypatch.setattr(bench, "cuda", fake)
    monkeypatch.setattr(bench, "_flush_l2", lambda: log.append("flush"))
    monkeypatch.setattr(bench, "_head_start", lambda: log.append("head start"))
    return fake


def test_time_cuda_brackets_each_call_and_flushes_outside_the_events(fake_gpu):
    # 3 warm-ups, then 1..20 ms and one 1000 ms outlier that the median must ignore
    durations = iter([100.0] * 3 + list(range(1, 21)) + [1000.0])

    def fn():
        fake_gpu.log.append("fn")
        fake_gpu.clock += next(durations)

    t = bench.time_cuda(fn, warmup=3, repeats=21)
    assert t == bench.Timing(median_ms=11, min_ms=1, max_ms=1000, repeats=21)
    log = fake_gpu.log
    assert log[:3] == ["fn"] * 3
    assert log[3:-1] == ["flush", "head start", "record", "fn", "record"] * 21
    assert log[-1] == "sync"


def test_time_cuda_rotates_inputs_without_flushing(fake_gpu):
    seen = []
    t = bench.time_cuda(lambda a, b: seen.append((a, b)), warmup=2, repeats=20,
                        rotate=[(1, "x"), (2, "y"), (3, "z")])
    assert t.repeats == 20
    assert seen[:5] == [(1, "x"), (2, "y"), (3, "z"), (1, "x"), (2, "y")]
    assert len(seen) == 22 and "flush" not in fake_gpu.log


def test_time_cuda_without_flush(fake_gpu):
    bench.time_cuda(lambda: None, warmup=0, repeats=20, flush_l2=False)
    assert fake_gpu.log == ["head start", "record", "record"] * 20 + ["sync"]


def test_launch_overhead_synchronizes_each_batch(fake_gpu):
    us = bench.launch_overhead_us(repeats=5, batches=3)
    assert us > 0 and fake_gpu.log.count("sync") == 1 + 3  # after warm-up, then once per batch
