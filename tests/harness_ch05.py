"""Chapter 05's harnesses: run the learner's tiled_kernel and blocked_kernel (through the
library's matmul_float32 and scaled_matmul) and load_fragment_a / load_fragment_b on the inputs
they are given, and return what they produced. Only this runs beside the learner's code (in the
class autograder, in its sandbox), so it holds no reference and judges nothing.

FP8 operands come as their arrays (codes, scales, block) and are rebuilt here as e4m3 QTensors.
"""

import numpy as np
from numba import cuda

from tutorial import gemm  # the library, or chapter 05's exercise files (gemm.cuda_core, gemm.mma) when grading
from tutorial.gemm import mma
from tutorial.qtensor import QTensor


def qtensor(codes, scales, block):
    """An e4m3 QTensor from its arrays."""
    return QTensor(codes, scales, "e4m3", tuple(int(b) for b in np.reshape(block, -1)))


def operands(a_codes, a_scales, a_block, b_codes, b_scales, b_block):
    return qtensor(a_codes, a_scales, a_block), qtensor(b_codes, b_scales, b_block)


# -- tiled_kernel -----------------------------------------------------------------------------------


def tiled_matmul(a, b):
    """float32 C = A @ B with the "tiled" kernel."""
    return gemm.matmul_float32(a, b, "tiled")


# -- blocked_kernel -----------------------------------------------------------------------------------


def scaled_matmul(**arrays):
    """scaled_matmul on the CUDA cores, in its default mode for the operands' scales."""
    return gemm.scaled_matmul(*operands(**arrays), kernel="cuda_core")


def scaled_matmul_promote(**arrays):
    """scaled_matmul on the CUDA cores, mode "promote"."""
    return gemm.scaled_matmul(*operands(**arrays), "promote", kernel="cuda_core")


def scaled_matmul_promote_and_dequant(**arrays):
    """scaled_matmul on the CUDA cores, mode "promote" and then mode "dequant"."""
    qa, qb = operands(**arrays)
    return {mode: gemm.scaled_matmul(qa, qb, mode, kernel="cuda_core") for mode in ("promote", "dequant")}


# -- load_fragment_a and load_fragment_b ------------------------------------------------------------


@cuda.jit
def fragment_a_loads(tile, row0, word0, regs):
    """One warp loads its A fragments of the piece of `tile` at (row0, word0)."""
    lane = cuda.threadIdx.x
    regs[lane, 0], regs[lane, 1], regs[lane, 2], regs[lane, 3] = mma.load_fragment_a(tile, row0, word0, lane)


@cuda.jit
def fragment_b_loads(tile, row0, word0, regs):
    """One warp loads its B fragments of the piece of `tile` at (row0, word0), B staged transposed."""
    lane = cuda.threadIdx.x
    regs[lane, 0], regs[lane, 1] = mma.load_fragment_b(tile, row0, word0, lane)


@cuda.jit
def two_warps_load_a(tile, row0, word0, regs):
    """Warp w loads its A fragment of the piece at (row0[w], word0[w]); its lanes are threadIdx.x % 32."""
    t = cuda.threadIdx.x
    w, lane = t // 32, t % 32
    regs[t, 0], regs[t, 1], regs[t, 2], regs[t, 3] = mma.load_fragment_a(tile, row0[w], word0[w], lane)


@cuda.jit
def two_warps_load_b(tile, col0, word0, regs):
    """Warp w loads its B fragment of the piece at (col0[w], word0[w]), B staged transposed."""
    t = cuda.threadIdx.x
    w, lane = t // 32, t % 32
    regs[t, 0], regs[t, 1] = mma.load_fragment_b(tile, col0[w], word0[w], lane)


def load_fragment_a(tile, row0, word0):
    """The 4 words every lane of one warp loaded for the piece of `tile` at (row0, word0)."""
    regs = np.zeros((32, 4), np.uint32)
    fragment_a_loads[1, 32](tile, int(row0), int(word0), regs)
    return regs


def load_fragment_b(tile, row0, word0):
    """The 2 words every lane of one warp loaded for the piece of `tile` at (row0, word0)."""
    regs = np.zeros((32, 2), np.uint32)
    fragment_b_loads[1, 32](tile, int(row0), int(word0), regs)
    return regs


def two_warps_load_fragment_a(tile, row0, word0):
    """The 4 words every thread of two warps loaded, warp w for the piece at (row0[w], word0[w])."""
    regs = np.zeros((64, 4), np.uint32)
    two_warps_load_a[1, 64](tile, row0, word0, regs)
    return regs


def two_warps_load_fragment_b(tile, col0, word0):
    """The 2 words every thread of two warps loaded, warp w for the piece at (col0[w], word0[w])."""
    regs = np.zeros((64, 2), np.uint32)
    two_warps_load_b[1, 64](tile, col0, word0, regs)
    return regs
