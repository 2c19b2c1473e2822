"""The PTX of Hopper's Tensor Memory Accelerator and its barriers, as Numba intrinsics (GPU only).

Chapter 06's fast kernel moves tiles with TMA instead of threads: one thread names a box of a
global tensor (through a *tensor map* the host encoded, `tutorial.runtime.tensor_map`) and
the copy engine writes it into shared memory, swizzled, while the thread goes on. Completion
is counted by an *mbarrier*, a 64-bit object in shared memory:

* `mbarrier_init(bar, count)`: the barrier's phase completes after `count` arrivals (and
  after every byte it was told to expect has landed);
* `mbarrier_arrive_expect_tx(bar, nbytes)`: one arrival, plus `nbytes` the phase now waits for;
* `tma_load_2d(dst, tensor_map, x, y, bar)`: the copy, which counts its bytes on `bar`;
* `mbarrier_wait(bar, parity)`: spin until the phase of that parity (0, 1, 0, ...) completes;
* `mbarrier_arrive(bar)`: one arrival (a consumer saying "this stage's slot is free").

Shared memory is addressed here by 32-bit shared-window addresses ([`shared_address`][]),
the way PTX's `.shared::cta` operands want them; arithmetic on them is plain integer
arithmetic in the kernel. `setmaxnreg` ([`set_max_registers`][]) lets a warpgroup give
registers back to the SM (the producer) or take more (the consumers).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba.cuda import types
from numba.cuda.extending import intrinsic

from .warpgroup_ptx import I64, inline_asm

I32 = ir.IntType(32)


@intrinsic
def shared_address(typingctx, arr):
    """The 32-bit shared-window address of a shared array's first byte (`cvta.to.shared`)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        address = inline_asm(builder, I64, [builder.ptrtoint(data, I64)], "cvta.to.shared.u64 $0, $1;", "=l,l", False)
        return builder.trunc(address, I32)

    return types.uint32(arr), codegen


@intrinsic
def global_address(typingctx, arr):
    """The generic address of a device array's first byte, as uint64 (a tensor map's operand)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return builder.ptrtoint(context.make_array(sig.args[0])(context, builder, args[0]).data, I64)

    return types.uint64(arr), codegen


def _void(asm: str, *operands):
    """An intrinsic running `asm` on its integer arguments, cast to `operands` (numba integer
    types; 64-bit ones go in "l" registers, the others in "r")."""
    constraints = ",".join("l" if t.bitwidth == 64 else "r" for t in operands) + ",~{memory}"

    def typer(args):
        if not all(isinstance(a, types.Integer) for a in args):
            return None

        def codegen(context, builder, sig, values):
            cast = [context.cast(builder, v, t, o) for v, t, o in zip(values, sig.args, operands)]
            inline_asm(builder, ir.VoidType(), cast, asm, constraints)
            return context.get_dummy_value()

        return types.void(*args), codegen

    # (numba's intrinsics take no *args: one signature per arity)
    arity = {1: lambda typingctx, a: typer((a,)),
             2: lambda typingctx, a, b: typer((a, b)),
             5: lambda typingctx, a, b, c, d, e: typer((a, b, c, d, e))}
    return intrinsic(arity[len(operands)])


u32, u64 = types.uint32, types.uint64

mbarrier_init = _void("mbarrier.init.shared::cta.b64 [$0], $1;", u32, u32)
mbarrier_arrive = _void("mbarrier.arrive.shared::cta.b64 _, [$0];", u32)
mbarrier_arrive_expect_tx = _void("mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;", u32, u32)
# spin on try_wait (which itself waits a while in hardware) until the phase of this parity completes;
# the labels are local to the braces, so every inlined copy has its own
mbarrier_wait = _void("{ .reg .pred done; WAIT: mbarrier.try_wait.parity.shared::cta.b64 done, [$0], $1; "
                      "@!done bra WAIT; }", u32, u32)
tma_load_2d = _void("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
                    "[$0], [$1, {$2, $3}], [$4];", u32, u64, u32, u32, u32)
# the tensor map's 128 bytes were written by a copy (another proxy): order them before TMA reads them
tensormap_acquire = _void("fence.proxy.tensormap::generic.acquire.gpu [$0], 128;", u64)


@intrinsic
def fence_barrier_init(typingctx):
    """Make the mbarriers' initialisation visible to the async proxy (TMA) and other threads."""
    def codegen(context, builder, sig, args):
        inline_asm(builder, ir.VoidType(), [], "fence.mbarrier_init.release.cluster;", "~{memory}")
        return context.get_dummy_value()

    return types.void(), codegen


@functools.cache
def set_max_registers(count: int, increase: bool):
    """The intrinsic `setmaxnreg.{inc|dec}.sync.aligned.u32 count`: every thread of the
    warpgroup (all of them call it) may now use `count` registers (a multiple of 8, 24-256)."""
    if count % 8 or not 24 <= count <= 256:
        raise ValueError(f"set_max_registers: count must be a multiple of 8 from 24 to 256, got {count}")
    asm = f"setmaxnreg.{'inc' if increase else 'dec'}.sync.aligned.u32 {count};"

    @intrinsic
    def setmaxnreg(typingctx):
        def codegen(context, builder, sig, args):
            inline_asm(builder, ir.VoidType(), [], asm, "~{memory}")
            return context.get_dummy_value()

        return types.void(), codegen

    return setmaxnreg


__all__ = ["shared_address", "global_address", "mbarrier_init", "mbarrier_arrive", "mbarrier_arrive_expect_tx",
           "mbarrier_wait", "tma_load_2d", "tensormap_acquire", "fence_barrier_init", "set_max_registers"]
