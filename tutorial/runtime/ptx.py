"""Single PTX instructions that Numba has no binding for, as intrinsics (GPU only).

Numba compiles a kernel to LLVM IR and NVVM turns that into PTX; an instruction with no LLVM
equivalent can still be placed in the IR as *inline assembly*, exactly as `asm("...")` in
CUDA C++. [`asm_codegen`][] is the code generator of such an intrinsic:

* `rcp_approx_ftz(x)`: `rcp.approx.ftz.f32`, 1 / x to within one ulp, one instruction
  (Numba's `1 / x` is the IEEE division, a dozen instructions with a slow path).
* `max_nan(a, b)`: `max.NaN.f32`, the maximum that propagates NaN, one instruction.
* `cvt_e4m3x2(hi, lo)` / `cvt_e5m2x2`: `cvt.rn.satfinite.e4m3x2.f32`, two float32 to
  two FP8 codes in one instruction (compute capability >= 8.9), `lo`'s code in the low
  byte. numba-cuda's own `cvt_float_to_fp8` converts one value per call through a C++ shim.

On the simulator there is no PTX: the modules that use these pick software versions there.
"""

from __future__ import annotations

from llvmlite import ir
from numba.cuda import types
from numba.cuda.extending import intrinsic

_LLVM = {types.float32: ir.FloatType(), types.uint32: ir.IntType(32), types.uint16: ir.IntType(16),
         types.int32: ir.IntType(32)}


def asm_codegen(asm: str, constraints: str, arg_types, ret_types):
    """The codegen of an intrinsic that runs the PTX `asm` (operands $0, $1, ...: outputs
    first) on arguments cast to `arg_types`, returning one value of `ret_types[0]` or a
    tuple of several. `constraints` are LLVM's: "=f" a float32 output, "f" a float32 input,
    "r" a 32-bit integer."""
    arg_types, ret_types = tuple(arg_types), tuple(ret_types)
    llvm_ret = _LLVM[ret_types[0]] if len(ret_types) == 1 else ir.LiteralStructType([_LLVM[t] for t in ret_types])

    def codegen(context, builder, sig, llvm_args):
        values = [context.cast(builder, v, t, want) for v, t, want in zip(llvm_args, sig.args, arg_types)]
        fnty = ir.FunctionType(llvm_ret, [_LLVM[t] for t in arg_types])
        out = builder.asm(fnty, asm, constraints, values, side_effect=False)
        if len(ret_types) == 1:
            return out
        return context.make_tuple(builder, sig.return_type, [builder.extract_value(out, k)
                                                             for k in range(len(ret_types))])

    return codegen


def _numbers(*args):
    return all(isinstance(a, types.Number) for a in args)


@intrinsic
def rcp_approx_ftz(typingctx, x):
    """1 / x within one ulp for normal x and 1 / x: PTX `rcp.approx.ftz.f32`, one `MUFU.RCP`
    (subnormal inputs and results are flushed to zero)."""
    if not _numbers(x):
        return None
    return types.float32(x), asm_codegen("rcp.approx.ftz.f32 $0, $1;", "=f,f", [types.float32], [types.float32])


@intrinsic
def max_nan(typingctx, a, b):
    """max(a, b) in float32, NaN if either is NaN: PTX `max.NaN.f32` (compute capability >= 8.0)."""
    if not _numbers(a, b):
        return None
    return types.float32(a, b), asm_codegen("max.NaN.f32 $0, $1, $2;", "=f,f,f", [types.float32] * 2,
                                            [types.float32])


def _cvt_fp8x2(name):
    # The 16-bit pair is widened to 32 bits inside the asm: callers shift and OR whole words.
    asm = f"{{ .reg .b16 t; cvt.rn.satfinite.{name}x2.f32 t, $1, $2; cvt.u32.u16 $0, t; }}"
    return asm_codegen(asm, "=r,f,f", [types.float32, types.float32], [types.uint32])


@intrinsic
def cvt_e4m3x2(typingctx, hi, lo):
    """E4M3 codes of two float32, rounded to nearest even, saturating, NaN -> 0x7f: `lo`'s code
    in bits 0-7, `hi`'s in bits 8-15 (PTX `cvt.rn.satfinite.e4m3x2.f32`; CC >= 8.9)."""
    if not _numbers(hi, lo):
        return None
    return types.uint32(hi, lo), _cvt_fp8x2("e4m3")


@intrinsic
def cvt_e5m2x2(typingctx, hi, lo):
    """E5M2 codes of two float32, as `cvt_e4m3x2` (PTX `cvt.rn.satfinite.e5m2x2.f32`; CC >= 8.9)."""
    if not _numbers(hi, lo):
        return None
    return types.uint32(hi, lo), _cvt_fp8x2("e5m2")
