"""Chapter 06's harnesses: run the learner's descriptor and fragment_d (through the library's
first wgmma GEMM too, which reads shared memory through the descriptors and places each
thread's registers with fragment_d, on the simulator and on a GPU) on the inputs they are
given, and return what they produced. Only this runs beside the learner's code (in the class autograder, in its sandbox),
so it holds no reference and judges nothing.
"""

import numpy as np
from numba import cuda

from tutorial.gemm import warpgroup  # the library; when grading, tutorial.gemm.wgmma is chapter 06's exercise file
from tutorial.gemm import wgmma
from tutorial.qtensor import QTensor


def descriptors(address, lbo, sbo, swizzle):
    """The 64-bit descriptor of each (address, lbo, sbo, swizzle) of the four arrays, as uint64."""
    return np.array([wgmma.descriptor(int(a), int(l), int(s), int(w)) for a, l, s, w in zip(address, lbo, sbo, swizzle)],
                    np.uint64)


def fragment_places(n):
    """(row, column) of every register of every thread of the warpgroup for D of width n:
    shape (128, n / 2, 2)."""
    n = int(np.reshape(n, -1)[0])
    return np.array([wgmma.fragment_d(t, n) for t in range(wgmma.WARPGROUP)], np.int64)


def wgmma_gemm(a_codes, a_scales, a_block, b_codes, b_scales, b_block):
    """The chapter's first wgmma kernel on two e4m3 QTensors: it takes its descriptors and its
    fragment layout from wgmma.descriptor and wgmma.fragment_d, on a GPU too
    (`tutorial.gemm.warpgroup.exercise_tables`). C starts as zeros, so a place that fragment_d
    never names reads 0."""
    qa, qb = (QTensor(c, s, "e4m3", tuple(int(x) for x in np.reshape(b, -1)))
              for c, s, b in ((a_codes, a_scales, a_block), (b_codes, b_scales, b_block)))
    c = cuda.to_device(np.zeros((qa.shape[0], qb.shape[1]), np.float32))
    if c.size:
        warpgroup.launch_warpgroup(*(cuda.to_device(np.ascontiguousarray(x)) for x in (qa.codes, qb.codes, qa.scales,
                                                                                     qb.scales)),
                                   qa.block, qb.block, c, qa.fmt, qb.fmt, pipelined=False)
    return c.copy_to_host()
