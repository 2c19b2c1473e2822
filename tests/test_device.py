"""Choosing GPU or simulator happens before numba.cuda is imported, from every entry point.

Each case runs in a fresh interpreter, since numba.cuda can be imported only once.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tutorial
from tutorial.runtime.device import probe_gpus

ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = probe_gpus()[0] > 0
needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="behaviour of a machine without a GPU")
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")

REPORT_MODE = (
    "import tutorial, numba.cuda; "
    "print('mode', tutorial.MODE, 'numba', 'sim' if numba.cuda.jit.__module__.startswith('numba.cuda.simulator') else 'gpu')"
)


def run_python(code, device=None, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TUTORIAL_DEVICE", "NUMBA_ENABLE_CUDASIM")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if device is not None:
        env["TUTORIAL_DEVICE"] = device
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_forced_simulator_even_if_numba_was_imported_first():
    result = run_python("import numba; " + REPORT_MODE, device="sim")
    assert result.returncode == 0, result.stderr
    assert "mode sim numba sim" in result.stdout


def test_simulator_gets_warp_shuffles():
    result = run_python("import tutorial; from numba import cuda; print(cuda.shfl_down_sync.__module__)", device="sim")
    assert result.stdout.strip() == "tutorial.runtime.simulator", result.stderr


@needs_no_gpu
def test_without_a_gpu_the_simulator_is_chosen_automatically():
    result = run_python(REPORT_MODE)
    assert "mode sim numba sim" in result.stdout, result.stderr


@needs_gpu
def test_with_a_gpu_the_gpu_is_chosen_automatically():
    result = run_python(REPORT_MODE)
    assert "mode gpu numba gpu" in result.stdout, result.stderr


@needs_no_gpu
def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error():
    result = run_python("import tutorial", device="gpu")
    assert result.returncode != 0
    assert "TUTORIAL_DEVICE=gpu, but no GPU can be used" in result.stderr


def test_an_unknown_device_name_is_an_error():
    result = run_python("import tutorial", device="tpu")
    assert result.returncode != 0 and "expected 'gpu', 'sim' or 'auto'" in result.stderr


@needs_no_gpu
def test_numba_cuda_imported_first_without_a_gpu_is_explained():
    result = run_python("import numba.cuda; import tutorial")
    assert result.returncode != 0
    assert "import tutorial first" in result.stderr


def test_numba_cuda_imported_first_in_the_other_mode_is_an_error():
    other = "gpu" if tutorial.ON_SIMULATOR else "sim"
    env = {"NUMBA_ENABLE_CUDASIM": "1" if tutorial.ON_SIMULATOR else "0"}
    result = run_python("import numba.cuda; import tutorial", device=other, extra_env=env)
    assert result.returncode != 0 and "already imported" in result.stderr


def test_numba_cuda_imported_first_in_simulator_mode_is_adopted():
    result = run_python("import numba.cuda; " + REPORT_MODE + "; print(tutorial.SELECTION.reason)",
                        extra_env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert "mode sim numba sim" in result.stdout and "already imported" in result.stdout, result.stderr


def test_python_dash_m_tutorial_doctor_reports_the_mode():
    result = run_python("import runpy, sys; sys.argv = ['tutorial', 'doctor']; "
                        "runpy.run_module('tutorial', run_name='__main__')", device="sim")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode:               CUDA simulator" in result.stdout
    assert "why:                TUTORIAL_DEVICE=sim" in result.stdout
    assert "self-test:          ok" in result.stdout


def test_module_entry_point_reports_a_missing_gpu_without_a_traceback():
    if HAS_GPU:
        pytest.skip("behaviour of a machine without a GPU")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(TUTORIAL_DEVICE="gpu", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "tutorial", "doctor"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("fp8-tutorial: TUTORIAL_DEVICE=gpu") and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("fp8-tutorial") is None, reason="the package is not installed")
def test_console_script_doctor_json():
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("TUTORIAL_DEVICE",)}
    result = subprocess.run(["fp8-tutorial", "doctor", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == ("gpu" if HAS_GPU else "sim")
    assert report["packages"]["numba-cuda"].startswith("0.30")


def test_doctor_warns_about_numpy_2_5_on_a_gpu():
    from tutorial.runtime.report import known_problems

    report = {"mode": "gpu", "reason": "", "gpus_seen_by_driver": 1,
              "packages": {"numpy": "2.5.0", "numba-cuda": "0.30.4", "cuda-bindings": "13.0"}}
    assert any("np.row_stack" in w for w in known_problems(report))
    report["packages"]["numpy"] = "2.4.6"
    assert known_problems(report) == []
    report["mode"] = "sim"
    report["packages"]["numpy"] = "2.5.0"  # the simulator never reaches np.row_stack
    assert not any("np.row_stack" in w for w in known_problems(report))
