"""Chapter 01's harnesses: run the learner's warp_max, block_max and absmax_kernel on the inputs
they are given and return what the kernels wrote. Only this runs beside the learner's code (in
the class autograder, in its sandbox), so it holds no reference and judges nothing.
"""

import numpy as np
from numba import cuda

from tutorial import reduction as red  # the library, or chapter 01's exercise file when grading


@cuda.jit
def warp_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.warp_max(x[i])


@cuda.jit
def block_max_kernel(x, out):
    i = cuda.grid(1)
    out[i] = red.block_max(x[i])


@cuda.jit
def block_max_twice_kernel(x, first, second):
    """block_max twice in a row, on x and on -x: the second must not see the first's partials."""
    i = cuda.grid(1)
    first[i] = red.block_max(x[i])
    second[i] = red.block_max(-x[i])


def warp_max_lanes(x, blocks):
    """Every thread's warp_max, `blocks` blocks over x; the output is poisoned with 7."""
    out = np.full(x.size, 7.0, np.float32)  # 7 is no input's maximum
    warp_max_kernel[int(blocks), x.size // int(blocks)](x, out)
    return out


def block_max_threads(x, blocks):
    """Every thread's block_max, `blocks` blocks over x."""
    out = np.full(x.size, 7.0, np.float32)
    block_max_kernel[int(blocks), x.size // int(blocks)](x, out)
    return out


def block_max_twice(x):
    first, second = np.full(x.size, 7.0, np.float32), np.full(x.size, 7.0, np.float32)
    block_max_twice_kernel[1, x.size](x, first, second)
    return {"first": first, "second": second}


def absmax(x, blocks, threads):
    """absmax_kernel itself (the library's absmax may pick its vectorized sibling), on `blocks`
    blocks of `threads` threads, into a poisoned output; and the counter after it."""
    d = cuda.to_device(np.ascontiguousarray(x).reshape(-1))
    partials = cuda.device_array(int(blocks), np.float32)
    counter = cuda.to_device(np.zeros(1, np.int32))
    out = cuda.to_device(np.full(1, -1.0, np.float32))  # poisoned: a kernel that writes nothing fails
    red.absmax_kernel[int(blocks), int(threads)](d, partials, counter, out)
    return {"result": out.copy_to_host()[0], "counter": counter.copy_to_host()[0]}


def absmax_runs(x, runs):
    """absmax_kernel `runs` times on the same values (3 blocks of red.THREADS)."""
    results = [absmax(x, 3, red.THREADS) for _ in range(int(runs))]
    return {"result": np.array([r["result"] for r in results], np.float32),
            "counter": np.array([r["counter"] for r in results], np.int32)}
