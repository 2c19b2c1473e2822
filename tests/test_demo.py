"""`fp8-tutorial demo` (the README's main job) and `fp8-tutorial bench` behave as documented."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tutorial
from tutorial.course import demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_checks_every_chapter_and_writes_its_figures(tmp_path, capsys):
    assert demo.run(tmp_path / "figures") == 0
    printed = capsys.readouterr().out
    assert "[FAILED]" not in printed and "all checks passed" in printed
    assert "fp8.E4M3" in printed and "max rel. error" in printed
    assert "per-row on" in printed and "SQNR dB" in printed
    assert "quantize_blockwise (1, 128) on" in printed and "interleaved codes" in printed
    assert "epilogue (wrong here)" in printed and "within float32" in printed
    assert (tmp_path / "figures" / "ch00_roundtrip_error.png").stat().st_size > 10_000


def test_demo_on_the_simulator_shows_recorded_throughput_labelled_as_recorded(tmp_path, monkeypatch):
    if not tutorial.ON_SIMULATOR:
        pytest.skip("on a GPU the demo measures instead")
    if not list((ROOT / "results").glob("*/ch00_encode.json")):
        pytest.skip("no recorded chapter 00 benchmark yet")
    monkeypatch.chdir(ROOT)
    result = demo.chapter00(tmp_path)
    assert any(p.name == "ch00_encode_recorded.png" for p in result.figures)


def test_bench_refuses_the_simulator_with_a_reason():
    if not tutorial.ON_SIMULATOR:
        pytest.skip("simulator behaviour")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "tutorial", "bench", "00"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2
    assert "simulated timings mean nothing" in proc.stderr and "Traceback" not in proc.stderr
