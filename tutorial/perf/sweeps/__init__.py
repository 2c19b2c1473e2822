"""Each chapter's benchmark sweep, run by `fp8-tutorial bench [chapter]` on a GPU: one module
per chapter.

A sweep times its kernels (and the peers, when installed) over sizes, writes
`results/<device>/<name>.json` and a PNG plot beside it, and prints progress as it goes. The
plot is drawn from the JSON alone ([`redraw`][tutorial.perf.plotting.redraw]), so a recorded
file's figure can be drawn again anywhere, without a GPU.
"""

from __future__ import annotations

from pathlib import Path

from .. import timing
from .ch00 import chapter00_encode
from .ch01 import chapter01_absmax
from .ch02 import chapter02_quantize
from .ch04 import chapter04_blockwise
from .ch05 import chapter05_gemm
from .ch06 import chapter06_wgmma
from .ch07 import chapter07_minilm

SWEEPS = {"00": chapter00_encode, "01": chapter01_absmax, "02": chapter02_quantize, "03": chapter02_quantize,
          "04": chapter04_blockwise, "05": chapter05_gemm,
          "06": chapter06_wgmma, "07": chapter07_minilm}


def run(chapter: str | None = None) -> list[Path]:
    """Run one chapter's sweep, or every chapter's."""
    timing.refuse_on_simulator("bench")
    keys = [chapter.zfill(2)] if chapter else list(SWEEPS)
    unknown = [k for k in keys if k not in SWEEPS]
    if unknown:
        raise ValueError(f"no benchmark for chapter {unknown[0]}; chapters with one: {', '.join(SWEEPS)}")
    return [SWEEPS[k]() for k in keys]
