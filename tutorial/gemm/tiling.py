"""The shapes of the GEMM kernels' work, and the K-blocks they can promote at.

A [`Tiling`][] is the CUDA-core kernels' (a block computes BM x BN of C, a thread TM x TN of
it); an [`MmaTiling`][] the tensor-core kernel's (WM x WN warps, each a piece of 16 x 8
instruction tiles). Each comes in two sizes: the GPU's, tuned on an H100, and the
simulator's, small (one Python thread per CUDA thread, about a millisecond per thread per
barrier). `TILING` and `MMA_TILING` are the ones in use on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..qtensor import QTensor
from ..runtime.device import ON_SIMULATOR

MAX_THREADS = 1024  # a block's threads
SHARED_BYTES = 48 * 1024  # the static shared memory a block may declare


def _positive(tiling, fields) -> None:
    for name in fields:
        value = getattr(tiling, name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise TypeError(f"{type(tiling).__name__}: {name} must be a positive integer, got {value!r}")
        object.__setattr__(tiling, name, int(value))


def _require(tiling, ok: bool, constraint: str) -> None:
    """A tiling that breaks a constraint would leave part of C uncomputed (or not launch)."""
    if not ok:
        raise ValueError(f"{tiling}: {constraint}")


@dataclass(frozen=True)
class Tiling:
    """The shape of the work: a block computes BM x BN of C, a thread TM x TN of that; the K
    loop advances BK at a time. `threads = (BM / TM) * (BN / TN)`."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    def __post_init__(self):
        _positive(self, ("bm", "bn", "bk", "tm", "tn"))
        _require(self, self.bm % self.tm == 0 and self.bn % self.tn == 0,
                 "BM must be a multiple of TM and BN of TN (a thread computes a whole TM x TN micro-tile)")
        _require(self, self.threads <= MAX_THREADS, f"(BM / TM) * (BN / TN) = {self.threads} threads: at most "
                 f"{MAX_THREADS}")
        staged = 4 * (self.bk * (self.bm + self.bn) + 2 * 256)  # the A and B tiles, two decode tables
        _require(self, staged <= SHARED_BYTES, f"its tiles need {staged} bytes of shared memory: at most {SHARED_BYTES}")

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def step(self) -> int:
        """The K granularity at which a K-block can end: a staged tile."""
        return self.bk


# The H100 configuration, and a small one for the simulator (one Python thread per CUDA
# thread, about a millisecond per thread per barrier: fewer threads and fewer K steps).
GPU_TILING = Tiling(128, 128, 8, 8, 8)
SIM_TILING = Tiling(64, 64, 32, 8, 8)
TILING = SIM_TILING if ON_SIMULATOR else GPU_TILING
TILE = 16  # the shared-memory tiled kernel's square tile (16 x 16 threads)
# Left alone, the compiler gives the 128 x 128 kernel 203 registers a thread: one block of 256
# threads per SM. Capped at 128, two blocks fit: 7.9 -> 11.1 TFLOPS on the H100 (96: 9.5).
MAX_REGISTERS = 128


@dataclass(frozen=True)
class MmaTiling:
    """A block computes BM x BN of C with WM x WN warps, each warp (BM / WM) x (BN / WN) of it
    as 16 x 8 tensor-core tiles; BK codes of K (a multiple of 32) are staged per step."""

    bm: int
    bn: int
    bk: int
    wm: int
    wn: int

    def __post_init__(self):
        _positive(self, ("bm", "bn", "bk", "wm", "wn"))
        _require(self, self.bm % self.wm == 0 and (self.bm // self.wm) % 16 == 0,
                 "BM / WM must be a whole multiple of 16 (a warp's rows are whole 16-row instructions)")
        _require(self, self.bn % self.wn == 0 and (self.bn // self.wn) % 8 == 0,
                 "BN / WN must be a whole multiple of 8 (a warp's columns are whole 8-column instructions)")
        _require(self, self.bk % 32 == 0, "BK must be a multiple of 32 (an instruction's K)")
        _require(self, self.threads <= MAX_THREADS, f"WM * WN * 32 = {self.threads} threads: at most {MAX_THREADS}")
        rows = 4 * (self.bk // 4 + 4)  # bytes of a staged row of words, padded
        staged = rows * (self.bm + self.bn) + 4 * (self.bk // 32) * (self.bm + self.bn)  # A, B, the ratios
        _require(self, staged <= SHARED_BYTES, f"its tiles need {staged} bytes of shared memory: at most {SHARED_BYTES}")

    @property
    def threads(self) -> int:
        return self.wm * self.wn * 32

    @property
    def step(self) -> int:
        """The K granularity at which a K-block can end: one instruction's 32."""
        return 32


# H100: a 128 x 128 tile of C, 16 warps of 32 x 32 each (2 x 4 instructions per 32 k), 128 codes
# of K per step in shared memory. H100, 4096^3, promote / no scaling in the loop, TFLOPS:
# 16 warps 66 / 71; 8 warps of 64 x 32 (255 registers) 66 / 86; 64 x 128 tiles 57 / 71; BK 64
# 51 / 65. The simulator: 2 warps, small tiles.
GPU_MMA_TILING = MmaTiling(128, 128, 128, 4, 4)
SIM_MMA_TILING = MmaTiling(32, 16, 64, 2, 1)
MMA_TILING = SIM_MMA_TILING if ON_SIMULATOR else GPU_MMA_TILING
MMA_MAX_REGISTERS = 128  # 512 threads: 128 registers each fill the register file (some spills)
# H100, 4096^3, 1 x 128 / 128 x 128, 16 warps, promote: sub-blocks of 128 58 TFLOPS, of 64 66
# (epilogue 71; after later changes: H200, epilogue 128 -> 72, 64 -> 95 TFLOPS).
MMA_SUB_K = 64


def promotion_k(a: QTensor, b: QTensor, tiling=TILING) -> int | None:
    """The K-block over which both operands' scales are constant, if "promote" can use one: the
    smaller K-extent of the two blocks, if both are multiples of it and it is one of the
    kernel's K steps (BK on CUDA cores, 32 on tensor cores); a block covering all of K counts
    as any multiple. With scales constant along K, 128 (partial sums still go to float32 then)."""
    k = a.shape[1]
    step = tiling.step
    extents = [e for e in (a.block[1], b.block[0]) if e < k]
    if not extents:
        return max(step, 128 // step * step)  # scales constant along K: any K-block
    kb = min(extents)
    if kb % step or any(e % kb for e in extents):
        return None
    return kb
