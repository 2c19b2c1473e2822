"""What the sweeps share: a progress bar, device inputs, and a peer that may fail."""

from __future__ import annotations

import sys

import numpy as np
from numba import cuda

from .. import timing


def progress(step: int, total: int, text: str) -> None:
    width = 24
    filled = width * step // total
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {text:<50}", end="", file=sys.stderr, flush=True)
    if step == total:
        print(file=sys.stderr)


def random_device(shape, rng):
    """Normal float32 values times 10, on the device."""
    return cuda.to_device((rng.standard_normal(shape) * 10).astype(np.float32))


def safe_peer(label, build, **kw):
    """A torch peer row, or a skipped row saying why the peer could not run (an API it lacks)."""
    try:
        return timing.bench_peer(label, "torch", build, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure of a peer is reported, not fatal
        return timing.skipped_row(label, shape=kw["shape"], reason=f"{type(exc).__name__}: {exc}"[:160], peer="torch")
