"""Launch helpers every chapter shares: grid sizes, the SM count, the register cap, and
getting an array argument onto the device, checked.

One place each, so that a kernel's launch reads the same in every chapter:

* [`grid_blocks`][]: enough blocks for the work, capped (kernels stride over the rest);
* [`sm_count`][]: for grids sized in blocks per SM;
* [`jit_options`][]: `cuda.jit` options, with a register cap where a kernel is tuned for one;
* [`as_device`][]: a numpy, numba, torch or cupy array in, a checked device array out, with
  one list of accepted dtypes (`FLOAT_DTYPES`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .device import ON_SIMULATOR

BLOCKS_PER_SM = 16  # grid cap; on the H100, 8 -> 16 blocks per SM gave absmax +1%
SIMULATOR_BLOCKS = 4  # each simulated thread costs ~1 ms per barrier: a few blocks at most
# The floating-point inputs every kernel of the course takes. bfloat16 arrives on the device as
# uint16 bit patterns (numba has no bfloat16 type; see tutorial.runtime.loads).
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def sm_count() -> int:
    """Streaming multiprocessors of the GPU, for grids sized in blocks per SM (1 on the simulator,
    which runs blocks one after another)."""
    return 1 if ON_SIMULATOR else cuda.get_current_device().MULTIPROCESSOR_COUNT


def grid_blocks(work_items: int, per_block: int, per_sm: int = BLOCKS_PER_SM) -> int:
    """Enough blocks for `work_items` at `per_block` each, capped at `per_sm` blocks per SM on a
    GPU and at `SIMULATOR_BLOCKS` on the simulator: the kernels stride over the rest."""
    cap = SIMULATOR_BLOCKS if ON_SIMULATOR else per_sm * sm_count()
    return max(1, min(cap, math.ceil(work_items / per_block)))


def jit_options(max_registers: int | None = None) -> dict:
    """`cuda.jit` keyword arguments: a cap on registers per thread where one is given (so that
    more blocks fit an SM), nothing on the simulator, which has no registers."""
    return {} if ON_SIMULATOR or max_registers is None else {"max_registers": max_registers}


def is_device_array(x) -> bool:
    """A numba device array, or any array exposing `__cuda_array_interface__` (torch, cupy).
    (The simulator's device arrays expose no interface, but have `copy_to_host`.)"""
    return hasattr(x, "__cuda_array_interface__") or (not isinstance(x, np.ndarray) and hasattr(x, "copy_to_host"))


def dtype_name(x) -> str:
    """The dtype of a numpy, numba, torch or cupy array as numpy spells it ("bfloat16" for
    ml_dtypes' and torch's)."""
    return str(x.dtype).replace("torch.", "")


def as_device(x, name: str, *, ndim: int | None = None, dtypes=FLOAT_DTYPES):
    """(device array, came_from_host) after the checks every entry point makes: a dtype among
    `dtypes`, the rank if one is required, not empty.

    Numpy input (anything `np.asarray` takes) is copied to the device; numba, torch and cupy
    device arrays are used where they are. bfloat16 (ml_dtypes on the host, torch on the
    device) arrives as a uint16 device array of its bit patterns.
    """
    host = not is_device_array(x)
    if host:
        x = np.asarray(x)
    dtype = dtype_name(x)
    if dtype not in dtypes:
        raise ValueError(f"{name}: x must be a {', '.join(dtypes)} array, got dtype {dtype}")
    if ndim is not None and len(x.shape) != ndim:
        raise ValueError(f"{name}: x must be {ndim}-D, got shape {tuple(x.shape)}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)})")
    if host:
        x = np.ascontiguousarray(x)
        return cuda.to_device(x.view(np.uint16) if dtype == "bfloat16" else x), True
    if dtype == "bfloat16":  # torch exports no bfloat16 through __cuda_array_interface__: pass the bits
        try:
            import torch
        except ImportError:  # a device array claiming bfloat16 that is not torch's
            raise TypeError(f"{name}: a bfloat16 device array must be a torch tensor") from None
        x = x.view(torch.int16)
    d = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
    return (d.view(np.uint16) if dtype == "bfloat16" else d), False
