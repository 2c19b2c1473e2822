"""Chapter 05: scaled GEMM. [`scaled_matmul`][] multiplies two FP8 QTensors of any
granularity; [`matmul_float32`][] runs the float32 progression. This module only chooses: the
kernels are in [`cuda_core`][tutorial.gemm.cuda_core] (naive, tiled and register-blocked, on
the CUDA cores) and [`tensor_core`][tutorial.gemm.tensor_core] (`mma.sync` on the tensor
cores, [`mma`][tutorial.gemm.mma] the instruction), with [`plan`][tutorial.gemm.plan] for
the "rescale" mode, [`tiling`][tutorial.gemm.tiling] for the shapes of their work and
[`operands`][tutorial.gemm.operands] for getting the operands onto the device.

`scaled_matmul` picks "rescale" on tensor cores and "promote" on CUDA cores when the blocks
allow it, else "dequant"; the tensor cores where the GPU has FP8 ones (compute capability >=
8.9) and the mode allows.
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
from numba import cuda

from ..qtensor import QTensor
from ..runtime.device import ON_SIMULATOR, hardware_fp8_available, warpgroup_mma_available
from ..runtime.launch import dtype_name, is_device_array
from .cuda_core import CUDA_CORE_MODES, blocked_kernel, launch_float32, launch_scaled, naive_kernel, tiled_kernel
from .operands import bfloat16_bits, device_array, scales_and_blocks
from .plan import plan_kernel, rescale_plan
from .tensor_core import TENSOR_CORE_MODES, MmaVariant, launch_tensor_core, mma_kernel
from .warpgroup import KB as WGMMA_KB, k_major, launch_warpgroup
from .tiling import (GPU_MMA_TILING, GPU_TILING, MAX_REGISTERS, MMA_TILING, SIM_MMA_TILING, SIM_TILING, TILE,
                     TILING, MmaTiling, Tiling, promotion_k)

MODES = ("dequant", "promote", "rescale", "epilogue")
KERNELS = ("auto", "cuda_core", "tensor_core", "wgmma")
OUT_DTYPES = ("float32", "bfloat16")


def tensor_cores_available() -> bool:
    """Whether the tensor-core kernel can run: a GPU with FP8 tensor cores (compute
    capability >= 8.9), or the simulator, which emulates the instruction."""
    return ON_SIMULATOR or hardware_fp8_available()


FLOAT32_KERNELS = ("naive", "tiled", "blocked")


def _float32_operand(x, name: str):
    """A float32 device array for operand `name` of matmul_float32: real float numpy input is
    converted; device input must be float32 already (it is used in place)."""
    if is_device_array(x):
        if dtype_name(x) != "float32":
            raise TypeError(f"matmul_float32: {name} on the device must be float32, got {dtype_name(x)}")
    else:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"matmul_float32: {name} must be a real float array, got dtype {x.dtype}")
        x = x.astype(np.float32)
    if len(x.shape) != 2 or 0 in x.shape:
        raise ValueError(f"matmul_float32: {name} must be a non-empty 2-D array, got shape {tuple(x.shape)}")
    return device_array(x)


def matmul_float32(a, b, kernel: str = "blocked"):
    """float32 C = A @ B with one of the progression's kernels: "naive", "tiled", "blocked".
    Numpy operands (any real float dtype, rounded to float32) give a numpy C; float32 device
    operands a device C."""
    if kernel not in FLOAT32_KERNELS:
        raise ValueError(f"matmul_float32: kernel must be one of {FLOAT32_KERNELS}, got {kernel!r}")
    a_d, b_d = _float32_operand(a, "a"), _float32_operand(b, "b")
    m, k = a_d.shape
    k2, n = b_d.shape
    if k != k2:
        raise ValueError(f"matmul_float32: inner dimensions differ: a is {m}x{k}, b is {k2}x{n}")
    c = cuda.device_array((m, n), np.float32)
    launch_float32(kernel, a_d, b_d, c)
    return c if is_device_array(a) else c.copy_to_host()


def check_operands(a, b):
    """The checks of [`scaled_matmul`][]'s operands."""
    if not isinstance(a, QTensor) or not isinstance(b, QTensor):
        raise TypeError(f"scaled_matmul: a and b must be QTensors, got {type(a).__name__} and {type(b).__name__}")
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"scaled_matmul: a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"scaled_matmul: inner dimensions differ: a is {a.shape[0]}x{a.shape[1]}, "
                         f"b is {b.shape[0]}x{b.shape[1]}")


def _output(out, shape, out_dtype: str = "float32"):
    """`out`, checked: float32 (numpy or device) of exactly the result's `shape`, C-contiguous;
    for out_dtype "bfloat16", uint16 (bfloat16's bits, as the course holds them on the device)
    or a numpy bfloat16 array."""
    wanted = ("float32",) if out_dtype == "float32" else ("uint16", "bfloat16")
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise TypeError(f"scaled_matmul: out must be a {' or '.join(wanted)} array of shape {shape}, got "
                        f"{type(out).__name__}")
    if tuple(out.shape) != shape or dtype_name(out) not in wanted:
        raise ValueError(f"scaled_matmul: out must be {' or '.join(wanted)} of shape {shape} (the result's, "
                         f"out_dtype {out_dtype!r}), got {dtype_name(out)} of shape {tuple(out.shape)}")
    contiguous = out.is_c_contiguous() if hasattr(out, "is_c_contiguous") else out.flags.c_contiguous
    if not contiguous:
        raise ValueError("scaled_matmul: out must be C-contiguous")
    return out


def scaled_matmul(a: QTensor, b: QTensor, mode: str | None = None, *, out=None, kernel: str = "auto",
                  tiling=None, out_dtype: str = "float32"):
    """C = dequantize(a) @ dequantize(b), float32 accumulation, on the GPU (or the simulator).

    ```text
    C[m, n] = sum_k decode(a.codes[m, k]) * a.scales[m // a.block[0], k // a.block[1]]
                    * decode(b.codes[k, n]) * b.scales[k // b.block[0], n // b.block[1]]
    ```

    for a (M, K) and b (K, N) of any granularity (per-tensor, per-row of a, per-column of b,
    1 x 128 a with 128 x 128 b, other blocks).

    Args:
        a: the (M, K) operand.
        b: the (K, N) operand.
        mode: "promote" or "rescale" (tensor cores only) where both operands' scales are
            constant over K-blocks (the default then: "rescale" on tensor cores, "promote" on
            CUDA cores), "dequant" (always exact; the default otherwise), or "epilogue" (exact
            only for scales that do not vary along K).
        out: a float32 (M, N) array (device, or numpy) to write C into; it is returned. For
            out_dtype "bfloat16": uint16 (the bits) or numpy bfloat16.
        kernel: "tensor_core" ([`mma_kernel`][tutorial.gemm.tensor_core.mma_kernel]; not for
            "dequant"), "cuda_core" ([`blocked_kernel`][tutorial.gemm.cuda_core.blocked_kernel];
            not for "rescale") or "auto": the tensor cores on a GPU
            that has FP8 ones, where the mode allows; the CUDA-core kernel on the simulator
            (its emulated tensor cores are slow; "rescale" still gets them) and elsewhere.
            "wgmma": Hopper's warpgroup MMA, promoting every 128-wide K-block ("promote"; scales
            constant over each 128 of K), or not at all ("epilogue": the tensor cores
            accumulate all of K; scales constant along K). On compute capability 9.0 it is
            `tutorial.gemm.specialized` (TMA, warp specialization) where the operands allow,
            else `tutorial.gemm.warpgroup`, which the simulator also runs. "auto" picks it on
            compute capability 9.0 for mode None or "promote" when the scales allow.
        tiling: a [`Tiling`][tutorial.gemm.tiling.Tiling] or
            [`MmaTiling`][tutorial.gemm.tiling.MmaTiling], which picks its kernel.
        out_dtype: "float32" or "bfloat16" (rounded to nearest even; on the device C holds
            its bits as uint16, on the host it is a numpy bfloat16 array, ml_dtypes').

    Returns:
        A numpy array for host QTensors, a device array for device ones (or `out`, if given).
    """
    check_operands(a, b)
    if kernel not in KERNELS:
        raise ValueError(f"scaled_matmul: kernel must be one of {KERNELS}, got {kernel!r}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"scaled_matmul: mode must be one of {MODES}, got {mode!r}")
    if tiling is not None and not isinstance(tiling, (Tiling, MmaTiling)):
        raise TypeError(f"scaled_matmul: tiling must be a Tiling or an MmaTiling, got {tiling!r}")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"scaled_matmul: out_dtype must be one of {OUT_DTYPES}, got {out_dtype!r}")
    if kernel == "auto" and tiling is None and mode in (None, "promote") and _wgmma_blocks(a, b) \
            and warpgroup_mma_available():
        kernel = "wgmma"
    if kernel == "wgmma":
        return _scaled_matmul_wgmma(a, b, mode, out, tiling, out_dtype)
    if out_dtype != "float32":
        return _as_bfloat16(scaled_matmul(a, b, mode, kernel=kernel, tiling=tiling), out, a.codes)
    if kernel == "auto" and tiling is not None:  # a tiling names its kernel
        kernel = "tensor_core" if isinstance(tiling, MmaTiling) else "cuda_core"
    if tiling is not None and isinstance(tiling, MmaTiling) != (kernel == "tensor_core"):
        raise ValueError(f"scaled_matmul: kernel {kernel!r} does not take a {type(tiling).__name__}")
    if kernel == "auto":
        tc_kb = promotion_k(a, b, MMA_TILING)
        usable = mode == "epilogue" or (mode in (None, "promote", "rescale") and tc_kb)
        only_tc = mode == "rescale" and tensor_cores_available()  # the simulator emulates them
        kernel = "tensor_core" if usable and (hardware_fp8_available() or only_tc) else "cuda_core"
    if kernel == "tensor_core" and not tensor_cores_available():
        raise ValueError("scaled_matmul: kernel 'tensor_core' needs a GPU of compute capability >= 8.9")
    tiling = tiling or (MMA_TILING if kernel == "tensor_core" else TILING)
    kb = promotion_k(a, b, tiling)
    if mode is None:
        mode = ("rescale" if kernel == "tensor_core" else "promote") if kb else "dequant"
    if mode in ("promote", "rescale") and not kb:
        raise ValueError(f"scaled_matmul: mode {mode!r} needs K-blocks of constant scales: a.block {a.block} and "
                         f"b.block {b.block} along K are not multiples of one K-block that the kernel's K step "
                         f"({tiling.step}) divides")
    if kernel == "tensor_core" and mode == "dequant":
        raise ValueError("scaled_matmul: the tensor cores take the codes as they are: mode 'dequant' needs "
                         "kernel='cuda_core'")
    if kernel == "cuda_core" and mode == "rescale":
        raise ValueError("scaled_matmul: mode 'rescale' is the tensor-core kernel's (kernel='tensor_core')")
    if kernel == "tensor_core" and mode == "rescale" and tiling.threads < tiling.bm + tiling.bn:
        raise ValueError(f"scaled_matmul: mode 'rescale' needs a thread for each row and column of the tile: "
                         f"{tiling} has {tiling.threads} threads for {tiling.bm} + {tiling.bn}")
    if mode == "epilogue" and (a.block[1] < a.shape[1] or b.block[0] < b.shape[0]):
        warnings.warn("scaled_matmul: mode 'epilogue' scales once with the first K-block's scales, and these vary "
                      "along K: the result is not the product (mode 'promote' or 'dequant' computes it)", stacklevel=2)
    on_host = not hasattr(a.codes, "copy_to_host")
    c = _output(out, (a.shape[0], b.shape[1])) if out is not None else cuda.device_array((a.shape[0], b.shape[1]),
                                                                                         np.float32)
    if a.shape[1] == 0:
        _empty_sum(c)
    else:
        scales, blocks = scales_and_blocks(a, b)
        if kernel == "tensor_core":
            launch_tensor_core(a, b, scales, blocks, c, mode, kb, tiling)
        else:
            launch_scaled(a, b, scales, blocks, c, mode, kb, tiling)
    return c.copy_to_host() if on_host and out is None else c


def _empty_sum(c):
    """C = 0: the product over an empty K, whatever the mode (zero bits: +0 in bfloat16 too)."""
    zeros = np.zeros(c.shape, np.dtype(c.dtype) if dtype_name(c) != "bfloat16" else np.uint16)
    if is_device_array(c):
        c.copy_to_device(zeros)
    else:
        c[...] = zeros.view(c.dtype)


def _wgmma_blocks(a: QTensor, b: QTensor) -> bool:
    """Whether both operands' scales are constant over each 128-wide block of K, as the
    wgmma kernels' promotion needs."""
    k = a.shape[1]
    return all(bk % WGMMA_KB == 0 or bk >= k for bk in (a.block[1], b.block[0]))


def _as_bfloat16(c, out, like):
    """float32 C rounded to bfloat16 (nearest even) into `out` or a new array: uint16 bits on
    the device, numpy bfloat16 on the host (where `like`, an operand's codes, lives)."""
    shape = tuple(c.shape)
    if out is not None:
        out = _output(out, shape, "bfloat16")
    bits = cuda.device_array(shape, np.uint16) if out is None or not is_device_array(out) else out
    if dtype_name(bits) == "bfloat16":  # (a torch bfloat16 tensor is not accepted by _output)
        raise TypeError("scaled_matmul: a bfloat16 device out must be uint16 bits")
    bfloat16_bits(device_array(c), bits)
    if out is not None and not is_device_array(out):
        out[...] = bits.copy_to_host().view(out.dtype) if dtype_name(out) == "uint16" else \
            bits.copy_to_host().view(ml_dtypes.bfloat16)
        return out
    if out is not None:
        return out
    return bits if is_device_array(like) else bits.copy_to_host().view(ml_dtypes.bfloat16)


def _scaled_matmul_wgmma(a: QTensor, b: QTensor, mode, out, tiling, out_dtype):
    """[`scaled_matmul`][] on Hopper's warpgroup MMA, promoting every 128-wide K-block's
    partial sums into float32 with their scales: `tutorial.gemm.specialized` where it
    applies (`specialized.fits`), else `tutorial.gemm.warpgroup`."""
    if tiling is not None:
        raise ValueError("scaled_matmul: kernel 'wgmma' takes no tiling")
    if mode not in (None, "promote", "epilogue"):
        raise ValueError(f"scaled_matmul: kernel 'wgmma' promotes every {WGMMA_KB}-wide block of K: mode must be "
                         f"'promote' (or None), or 'epilogue' (no promotion), got {mode!r}")
    if mode == "epilogue" and (a.shape[1] % 16 or a.block[1] < a.shape[1] or b.block[0] < b.shape[0]):
        raise ValueError("scaled_matmul: kernel 'wgmma' with mode 'epilogue' (no promotion) needs K % 16 == 0 and "
                         f"scales constant along K; got K = {a.shape[1]}, a.block {a.block}, b.block {b.block}")
    if not (ON_SIMULATOR or warpgroup_mma_available()):
        raise ValueError("scaled_matmul: kernel 'wgmma' needs a GPU of compute capability 9.0 (Hopper), or the "
                         "simulator")
    for name, bk in (("a's block", a.block[1]), ("b's block", b.block[0])):
        if bk % WGMMA_KB and bk < a.shape[1]:
            raise ValueError(f"scaled_matmul(kernel='wgmma'): {name} along K must be a multiple of {WGMMA_KB} or "
                             f"cover all of K ({a.shape[1]}), got {bk}")
    shape = (a.shape[0], b.shape[1])
    on_host = not hasattr(a.codes, "copy_to_host")
    a_codes, b_codes = device_array(a.codes), device_array(b.codes)
    fast = None if ON_SIMULATOR else _specialized()
    if out_dtype == "bfloat16" and not (fast and fast.fits(a_codes, b_codes, a.block, b.block)):
        return _as_bfloat16(_scaled_matmul_wgmma(a, b, mode, None, None, "float32"), out, a.codes)
    if out is not None:
        c = _output(out, shape, out_dtype)
    else:
        c = cuda.device_array(shape, np.float32 if out_dtype == "float32" else np.uint16)
    target = c if is_device_array(c) else cuda.device_array(shape, np.dtype(c.dtype) if dtype_name(c) != "bfloat16"
                                                            else np.uint16)
    if a.shape[1] == 0 or 0 in shape:
        _empty_sum(target)
    else:
        scales, _ = scales_and_blocks(a, b)
        promote = mode != "epilogue"
        if fast and fast.fits(a_codes, b_codes, a.block, b.block):
            fast.launch_specialized(a_codes, k_major(b_codes), scales[0], scales[1], a.block, b.block, target,
                                    a.fmt, b.fmt, promote=promote)
        else:
            launch_warpgroup(a_codes, b_codes, scales[0], scales[1], a.block, b.block, target, a.fmt, b.fmt,
                             promote=promote)
    if target is not c:  # a host out
        c[...] = target.copy_to_host().view(c.dtype)
        return c
    if on_host and out is None:
        host = c.copy_to_host()
        return host.view(ml_dtypes.bfloat16) if out_dtype == "bfloat16" else host
    return c


def _specialized():
    """`tutorial.gemm.specialized`, imported when first needed (GPU only: its intrinsics have
    no simulator form)."""
    from . import specialized
    return specialized


__all__ = ["scaled_matmul", "matmul_float32", "naive_kernel", "tiled_kernel", "blocked_kernel", "mma_kernel",
           "MmaVariant", "plan_kernel", "rescale_plan", "launch_float32", "Tiling", "MmaTiling", "TILING",
           "MMA_TILING", "GPU_TILING", "SIM_TILING", "GPU_MMA_TILING", "SIM_MMA_TILING", "TILE", "MAX_REGISTERS",
           "MODES", "OUT_DTYPES", "CUDA_CORE_MODES", "TENSOR_CORE_MODES", "KERNELS", "promotion_k", "tensor_cores_available"]
