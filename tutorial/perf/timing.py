"""Timing GPU work honestly: CUDA events, L2 flushing, byte/FLOP accounting, recorded results.

Every timing function refuses to run on Numba's CUDA simulator ([`SimulatorTimingError`][]):
the simulator runs one Python thread per CUDA thread, so its timings say nothing about a GPU.
The accounting helpers, [`record_results`][] (given the measured numbers) and
[`load_results`][] are plain Python and work anywhere.

How a measurement is taken ([`time_cuda`][]):

* `warmup` untimed calls first (compilation, caches, clocks), then `repeats` >= 20 timed ones.
* Each timed call is bracketed by its own pair of CUDA events recorded on the default stream
  (stream 0); the host synchronizes once, after the last call, so launches queue back to back.
* Before each timed call, outside the event pair, L2 is flushed by writing a 256 MiB device
  buffer (H100 L2: 50 MB) - unless `rotate` is given, in which case the calls cycle through
  several input sets instead (make their total larger than L2) and nothing is flushed.
* Then, also outside the pair, a one-thread kernel sleeps for about `HEAD_START_US`: the host
  records the start event and launches the timed call (Python argument checks, Numba's
  dispatch: tens of microseconds, and more for a host function that does some work) while
  the GPU still sleeps, so the call is queued before the GPU reaches the start event, and the
  host's overhead is not counted. Without it, a 110 us kernel behind a Python host function
  timed at 110 us on some calls and 130 us on others (H200, chapter 04, bfloat16 1 x 128).
* The median is the headline figure; min and max are kept to show the spread.

Peers (torch, cupy) are timed with the same [`time_cuda`][], i.e. Numba's events on the
default stream. Torch and CuPy issue work on the legacy default stream unless told otherwise
and share the device's primary context with Numba, so one event pair brackets their kernels
as it does ours. [`bench_peer`][] checks the peer really is on the default stream. To hand
their tensors to a Numba kernel, wrap them with `cuda.as_cuda_array(t)` (zero-copy).

Results file schema (`results/<device-slug>/<name>.json`, written by [`record_results`][]):

```text
    {
      "name": str,                      # the benchmark, also the file name
      "date": str,                      # ISO 8601, local time with offset
      "device": {...},                  # tutorial.runtime.report.device_report(): gpu, compute_capability,
                                        #   driver_cuda, packages{...}, mode, ...
      "shapes": [...],                  # the shapes this benchmark swept, as given
      "launch_overhead_us": float,      # host cost of one empty kernel launch, same run
      "copy_tbps": float,               # device-to-device copy bandwidth, same run (read+write)
      "rows": [                         # one per (label, shape)
        {"label": str, "shape": [...], "peer": null | "torch" | "cupy",
         "median_ms": float, "min_ms": float, "max_ms": float, "repeats": int,
         "nbytes": int | null, "tbps": float | null,       # bandwidth rows
         "flops": int | null, "tflops": float | null,      # compute rows
         "fraction_of_copy": float | null},                # tbps / copy_tbps
        {"label": str, "shape": [...], "peer": "torch", "skipped": "torch not installed"}
      ]
    }
```
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from numba import cuda  # `tutorial` (our package) is imported first, so its mode is chosen

from ..runtime import device
from ..runtime.report import device_report

MIN_REPEATS = 20
L2_FLUSH_BYTES = 256 << 20  # several times the largest L2 in use (H100: 50 MB)
PEERS = ("torch", "cupy")
REQUIRED_KEYS = ("name", "date", "device", "shapes", "launch_overhead_us", "copy_tbps", "rows")


class SimulatorTimingError(RuntimeError):
    """A timing function was called on Numba's CUDA simulator."""


def refuse_on_simulator(what: str) -> None:
    # Read at call time (not import time) so the check follows the mode actually in force.
    if device.ON_SIMULATOR:
        raise SimulatorTimingError(
            f"{what}: refusing to time on Numba's CUDA simulator - it runs one Python thread per "
            "CUDA thread, so simulated timings mean nothing. Run on a GPU (TUTORIAL_DEVICE=gpu).")


# -- accounting (pure functions; the course's ANCHORS.md, "How to count") ------------------


def quant_bytes(n_elements: int, in_bytes: float, scale_bytes_per_element: float = 0.0) -> float:
    """Logical bytes of an FP8 quantization: read the input, write 1-byte codes and the scales.

    1x128 group scales in float32 cost 4/128 bytes per element; 128x128 blocks 4/16384.
    """
    return n_elements * (in_bytes + 1 + scale_bytes_per_element)


def absmax_bytes(n_elements: int, in_bytes: float) -> float:
    """An absmax reduction only reads its input."""
    return n_elements * in_bytes


def gemm_flops(m: int, n: int, k: int) -> int:
    """One multiply and one add per (m, n, k) triple."""
    return 2 * m * n * k


def copy_bytes(nbytes: int) -> int:
    """A copy reads and writes every byte."""
    return 2 * nbytes


# -- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over ``repeats`` event-timed calls."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    def bandwidth_tbps(self, nbytes: float) -> float:
        """Bytes moved per median call, in TB/s (10^12 bytes per second)."""
        return nbytes / (self.median_ms * 1e-3) / 1e12

    def tflops(self, flops: float) -> float:
        """Floating-point operations per median call, in TFLOPS (10^12 per second)."""
        return flops / (self.median_ms * 1e-3) / 1e12


@cuda.jit
def _fill(buf, value):
    i = cuda.grid(1)
    if i < buf.size:
        buf[i] = value


@cuda.jit
def _empty():
    pass


HEAD_START_US = 300  # the GPU's sleep before each timed call (see the module docstring)


@cuda.jit
def _sleep(microseconds):
    for _ in range(microseconds):
        cuda.nanosleep(1000)


def _head_start() -> None:
    """Keep the GPU busy for about HEAD_START_US (queued on stream 0, not waited for)."""
    _sleep[1, 1](HEAD_START_US)


_flush_buffers: dict = {}  # nbytes -> device array; allocated once, reused by every call


def _flush_l2(nbytes: int = L2_FLUSH_BYTES) -> None:
    """Evict L2 by writing a buffer larger than it (queued on stream 0, not waited for)."""
    buf = _flush_buffers.get(nbytes)
    if buf is None:
        buf = _flush_buffers[nbytes] = cuda.device_array(nbytes // 4, dtype=np.int32)
    _fill[(buf.size + 255) // 256, 256](buf, 0)


def time_cuda(fn: Callable, *, warmup: int = 5, repeats: int = 50,
              rotate: Sequence[tuple] | None = None, flush_l2: bool = True) -> Timing:
    """Time ``fn()`` (or ``fn(*rotate[i % len(rotate)])``) with CUDA events; see module docstring.

    ``fn`` must take device arrays: host arrays would add transfers to every call.
    """
    # Validate first, so a bad call is reported as such wherever it runs.
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats={repeats}: use at least {MIN_REPEATS} for a stable median")
    if rotate is not None and len(rotate) == 0:
        raise ValueError("rotate must hold at least one argument tuple")
    refuse_on_simulator("time_cuda")
    args = (lambda i: rotate[i % len(rotate)]) if rotate else (lambda i: ())
    flush = flush_l2 and not rotate  # rotating inputs already defeats the cache
    for i in range(warmup):
        fn(*args(i))
    events = [(cuda.event(), cuda.event()) for _ in range(repeats)]
    for i, (start, end) in enumerate(events):
        if flush:
            _flush_l2()  # before `start`, so its time is not counted
        _head_start()  # also before `start`: the host's head start (module docstring)
        start.record()
        fn(*args(warmup + i))
        end.record()
    cuda.synchronize()  # once, at the end: syncing per call would leave the GPU idle between calls
    ms = [cuda.event_elapsed_time(start, end) for start, end in events]
    return Timing(statistics.median(ms), min(ms), max(ms), repeats)


def launch_overhead_us(repeats: int = 200, batches: int = 7) -> float:
    """Host-side microseconds to launch one empty kernel (median over ``batches`` batches)."""
    refuse_on_simulator("launch_overhead_us")
    for _ in range(10):  # compile and settle
        _empty[1, 1]()
    cuda.synchronize()
    per_launch = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(repeats):
            _empty[1, 1]()
        cuda.synchronize()  # so the batch ends when the GPU has taken every launch
        per_launch.append((time.perf_counter() - t0) / repeats * 1e6)
    return statistics.median(per_launch)


_measure_launch_overhead = launch_overhead_us  # record_results has a keyword of the same name


def copy_bandwidth_tbps(nbytes: int = 1 << 30, *, repeats: int = 50) -> float:
    """Device-to-device copy bandwidth (bytes read + written), the roofline for memory-bound work."""
    refuse_on_simulator("copy_bandwidth_tbps")
    src = cuda.device_array(nbytes, dtype=np.uint8)
    dst = cuda.device_array(nbytes, dtype=np.uint8)
    # A copy of 1 GiB or more leaves nothing useful in L2; flush only for smaller ones.
    timing = time_cuda(lambda: dst.copy_to_device(src), repeats=repeats, flush_l2=nbytes < 1 << 30)
    return timing.bandwidth_tbps(copy_bytes(nbytes))


# -- peers (torch, cupy) ------------------------------------------------------------------------


def peer_missing_reason(name: str) -> str | None:
    """Why peer ``name`` cannot be timed here, or None when it can. Imports it only if installed."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")
    if importlib.util.find_spec(name) is None:
        return f"{name} not installed"
    module = importlib.import_module(name)
    try:
        if name == "torch":
            ok = module.cuda.is_available()
        else:
            ok = module.cuda.runtime.getDeviceCount() > 0
    except Exception as exc:  # cupy raises when it finds no driver/device
        return f"{name} cannot use the GPU: {type(exc).__name__}: {exc}"
    return None if ok else f"{name} installed but sees no CUDA device"


def peer_available(name: str) -> bool:
    """True if ``name`` ("torch" or "cupy") is installed and can use the GPU."""
    return peer_missing_reason(name) is None


def _peer_on_default_stream(name: str, module) -> bool:
    if name == "torch":
        return module.cuda.current_stream().cuda_stream == 0
    return module.cuda.get_current_stream().ptr == 0


def time_peer(name: str, build: Callable, **time_kw) -> Timing:
    """Time a peer's callable with [`time_cuda`][].

    ``build(module)`` receives the imported peer (torch or cupy), allocates its inputs and
    returns the zero-argument callable to time - so nothing peer-specific runs unless it exists.
    """
    refuse_on_simulator(f"time_peer({name!r})")
    reason = peer_missing_reason(name)
    if reason:
        raise RuntimeError(reason)
    module = importlib.import_module(name)
    if not _peer_on_default_stream(name, module):
        # Numba's events are recorded on stream 0; work elsewhere would escape them.
        raise RuntimeError(f"{name}'s current stream is not the default stream; events cannot bracket it")
    return time_cuda(build(module), **time_kw)


# -- result rows and files ----------------------------------------------------------------------


def make_row(label: str, timing: Timing, *, shape, nbytes: float | None = None,
             flops: float | None = None, peer: str | None = None) -> dict:
    """One result row; give ``nbytes`` for bandwidth-bound work, ``flops`` for compute-bound."""
    return {"label": label, "shape": list(shape), "peer": peer,
            "median_ms": timing.median_ms, "min_ms": timing.min_ms, "max_ms": timing.max_ms,
            "repeats": timing.repeats,
            "nbytes": nbytes, "tbps": timing.bandwidth_tbps(nbytes) if nbytes else None,
            "flops": flops, "tflops": timing.tflops(flops) if flops else None,
            "fraction_of_copy": None}  # filled by record_results from the same run's copy figure


def skipped_row(label: str, *, shape, reason: str, peer: str | None = None) -> dict:
    """A row for something that could not be measured: says why instead of giving a number."""
    return {"label": label, "shape": list(shape), "peer": peer, "skipped": reason}


def bench_peer(label: str, name: str, build: Callable, *, shape, nbytes=None, flops=None,
               **time_kw) -> dict:
    """Time a peer into a row, or return a skipped row when the peer is not usable here."""
    refuse_on_simulator(f"bench_peer({name!r})")
    reason = peer_missing_reason(name)
    if reason:
        return skipped_row(label, shape=shape, reason=reason, peer=name)
    timing = time_peer(name, build, **time_kw)
    return make_row(label, timing, shape=shape, nbytes=nbytes, flops=flops, peer=name)


def device_slug(name: str | None) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; no GPU -> 'cuda-simulator'."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug or "cuda-simulator"


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in results JSON")


def record_results(name: str, rows: list[dict], *, shapes, out_dir: Path | str | None = None,
                   copy_tbps: float | None = None, launch_overhead_us: float | None = None,
                   report: dict | None = None) -> Path:
    """Write ``<out_dir or results/>/<device-slug>/<name>.json`` (schema: module docstring).

    ``copy_tbps`` and ``launch_overhead_us`` are measured now when not given (GPU only), so a
    file always pairs rows with the copy roofline of the same run.
    """
    if copy_tbps is None:
        copy_tbps = copy_bandwidth_tbps()
    if launch_overhead_us is None:
        launch_overhead_us = _measure_launch_overhead()
    report = device_report() if report is None else report
    rows = [dict(r) for r in rows]  # the caller's rows stay as they were
    for r in rows:
        if r.get("tbps") is not None:
            r["fraction_of_copy"] = r["tbps"] / copy_tbps
    record = {"name": name, "date": datetime.now().astimezone().isoformat(timespec="seconds"),
              "device": report, "shapes": shapes, "launch_overhead_us": launch_overhead_us,
              "copy_tbps": copy_tbps, "rows": rows}
    path = Path(out_dir or results_root()) / device_slug(report.get("gpu")) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


def results_root(start: Path | str | None = None) -> Path:
    """`results/` of the course checkout we are in: the nearest folder at or above `start` (the
    current folder) that holds one; else `results/` of the current folder."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir():
            return folder / "results"
    return Path.cwd() / "results"


def find_recorded(name: str, gpu: str | None = None, start: Path | str | None = None) -> Path | None:
    """The recorded results file `name` (such as "ch02_quantize") of `gpu` (a folder of
    `results/`, such as "nvidia-h200"), or with no `gpu` the latest recorded run of any GPU by
    its date; None if there is none."""
    root = results_root(start)
    if gpu is not None:
        path = root / gpu / f"{name}.json"
        return path if path.exists() else None
    runs = [(json.loads(path.read_text()).get("date", ""), path) for path in root.glob(f"*/{name}.json")]
    return max(runs)[1] if runs else None


def load_results(path: Path | str) -> dict:
    """Read a results file back, checking it has the keys [`record_results`][] writes."""
    record = json.loads(Path(path).read_text())
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"{path}: not a results file, missing {missing}")
    return record
