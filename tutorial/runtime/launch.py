"""Launch helpers every chapter shares: grid sizes, the SM count, the register cap, and
getting an array argument onto the device, checked.

One place each, so that a kernel's launch reads the same in every chapter:

* [`grid_blocks`][]: enough blocks for the work, capped (kernels stride over the rest);
* [`sm_count`][]: for grids sized in blocks per SM;
* [`jit_options`][]: `cuda.jit` options, with a register cap where a kernel is tuned for one;
* [`as_device`][]: a numpy, numba, torch or cupy array in, a checked device array out, with
  one list of accepted dtypes (`FLOAT_DTYPES`); float64 must fit float32's range, since the
  kernels compute in float32;
* [`as_block`][]: a block shape, checked: positive integers, nothing truncated.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .device import ON_SIMULATOR

MAX_GRID = 2**31 - 1  # blocks along x a launch may have
BLOCKS_PER_SM = 16  # grid cap; on the H100, 8 -> 16 blocks per SM gave absmax +1%
SIMULATOR_BLOCKS = 4  # each simulated thread costs ~1 ms per barrier: a few blocks at most
# The floating-point inputs every kernel of the course takes. bfloat16 arrives on the device as
# uint16 bit patterns (numba has no bfloat16 type; see tutorial.runtime.loads).
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def sm_count() -> int:
    """Streaming multiprocessors of the GPU, for grids sized in blocks per SM (1 on the simulator,
    which runs blocks one after another)."""
    return 1 if ON_SIMULATOR else cuda.get_current_device().MULTIPROCESSOR_COUNT


def grid_blocks(work_items: int, per_block: int, per_sm: int | None = BLOCKS_PER_SM) -> int:
    """Enough blocks for `work_items` at `per_block` each, capped at `per_sm` blocks per SM on a
    GPU (`None`: no cap below the hardware's) and at `SIMULATOR_BLOCKS` on the simulator: the
    kernels stride over the rest."""
    cap = SIMULATOR_BLOCKS if ON_SIMULATOR else MAX_GRID if per_sm is None else per_sm * sm_count()
    return max(1, min(cap, math.ceil(work_items / per_block)))


def launch_covering(kernel, units: int, per_block: int, threads: int, *args) -> None:
    """Launch a one-trip `kernel` (no grid-stride loop) over `units` work units, `per_block` to
    a block: on a GPU one grid that covers them all; on the simulator, whose grids are capped
    at `SIMULATOR_BLOCKS`, successive grids. The kernel's last argument is the first unit of
    its grid. (Why one trip: on the H200 a grid-stride loop around the x8 quantizers' bodies
    cost them 0.6% with float32 input and 7% with bfloat16: see the performance log.)"""
    blocks = max(1, math.ceil(units / per_block))
    step = SIMULATOR_BLOCKS if ON_SIMULATOR else MAX_GRID
    for first in range(0, blocks, step):
        kernel[min(step, blocks - first), threads](*args, first * per_block)


def jit_options(max_registers: int | None = None) -> dict:
    """`cuda.jit` keyword arguments: a cap on registers per thread where one is given (so that
    more blocks fit an SM), nothing on the simulator, which has no registers."""
    return {} if ON_SIMULATOR or max_registers is None else {"max_registers": max_registers}


def is_device_array(x) -> bool:
    """A numba device array, or any array exposing `__cuda_array_interface__` (torch, cupy).
    (The simulator's device arrays expose no interface, but have `copy_to_host`.)"""
    return hasattr(x, "__cuda_array_interface__") or (not isinstance(x, np.ndarray) and hasattr(x, "copy_to_host"))


def as_block(block, name: str, ndim: int = 2, what: str = "block") -> tuple[int, ...]:
    """`block` as a tuple of `ndim` positive Python ints: a tuple or list of integers (Python or
    numpy; not bool, float or str). Anything else is an error naming `name` and `what`."""
    wanted = "two positive integers (bm, bn)" if ndim == 2 else f"{ndim} positive integers, one per dimension"
    problem = f"{name}: {what} must be {wanted}, got {block!r}"
    if not isinstance(block, (tuple, list)) or len(block) != ndim:
        raise TypeError(problem)
    if not all(isinstance(b, (int, np.integer)) and not isinstance(b, (bool, np.bool_)) for b in block):
        raise TypeError(problem)
    if any(b <= 0 for b in block):
        raise ValueError(problem)
    return tuple(int(b) for b in block)


def as_size(value, name: str, what: str) -> int:
    """`value` as a positive Python int (a Python or numpy integer; not bool, float or str)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: {what} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: {what} must be a positive integer, got {value!r}")
    return int(value)


FLOAT32_MAX = float(np.finfo(np.float32).max)


@cuda.jit
def _beyond_float32_kernel(x, found):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = abs(x[i])
        if FLOAT32_MAX < v < math.inf:
            found[0] = 1


def _check_float32_range(x, name: str, host: bool) -> None:
    """float64 input is computed in float32: a finite value beyond float32's range would
    become infinity there, and be dropped from a scale's amax. It is an error instead."""
    if host:
        finite = np.abs(x[np.isfinite(x)])
        beyond = finite.size and finite.max() > FLOAT32_MAX
    else:
        found = cuda.to_device(np.zeros(1, np.int32))
        flat = x.reshape(math.prod(x.shape)) if x.is_c_contiguous() else cuda.to_device(x.copy_to_host().ravel())
        _beyond_float32_kernel[grid_blocks(flat.size, 256 * 4), 64 if ON_SIMULATOR else 256](flat, found)
        beyond = found.copy_to_host()[0]
    if beyond:
        raise ValueError(f"{name}: x holds finite float64 values beyond float32's range (|x| > {FLOAT32_MAX:.7g}); "
                         "the kernels compute in float32: scale x down first")


def dtype_name(x) -> str:
    """The dtype of a numpy, numba, torch or cupy array as numpy spells it ("bfloat16" for
    ml_dtypes' and torch's)."""
    return str(x.dtype).replace("torch.", "")


def as_device(x, name: str, *, ndim: int | None = None, dtypes=FLOAT_DTYPES):
    """(device array, came_from_host) after the checks every entry point makes: a dtype among
    `dtypes`, the rank if one is required, not empty, and for float64 no finite value beyond
    float32's range (the kernels read float64 as float32).

    Numpy input (anything `np.asarray` takes) is copied to the device; numba, torch and cupy
    device arrays are used where they are. bfloat16 (ml_dtypes on the host, torch on the
    device) arrives as a uint16 device array of its bit patterns.
    """
    host = not is_device_array(x)
    if host:
        try:
            x = np.asarray(x)
        except ValueError:  # a ragged nested sequence
            raise ValueError(f"{name}: x must be an array (or a nested sequence of even length), got a ragged "
                             f"{type(x).__name__}") from None
    dtype = dtype_name(x)
    if dtype not in dtypes:
        raise ValueError(f"{name}: x must be a {', '.join(dtypes)} array, got dtype {dtype}")
    if ndim is not None and len(x.shape) != ndim:
        raise ValueError(f"{name}: x must be {ndim}-D, got shape {tuple(x.shape)}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: x is empty (shape {tuple(x.shape)})")
    if dtype == "float64":
        _check_float32_range(x, name, host)
    if host:
        x = x if x.flags.c_contiguous else np.ascontiguousarray(x)  # (ascontiguousarray makes 0-d 1-d)
        return cuda.to_device(x.view(np.uint16) if dtype == "bfloat16" else x), True
    if dtype == "bfloat16":  # torch exports no bfloat16 through __cuda_array_interface__: pass the bits
        try:
            import torch
        except ImportError:  # a device array claiming bfloat16 that is not torch's
            raise TypeError(f"{name}: a bfloat16 device array must be a torch tensor") from None
        x = x.view(torch.int16)
    d = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
    return (d.view(np.uint16) if dtype == "bfloat16" else d), False
