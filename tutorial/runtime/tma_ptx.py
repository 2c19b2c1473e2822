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

from .warpgroup_ptx import I64, inline_asm, void_asm

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


u32, u64 = types.uint32, types.uint64

mbarrier_init = void_asm("mbarrier.init.shared::cta.b64 [$0], $1;", u32, u32)
mbarrier_arrive = void_asm("mbarrier.arrive.shared::cta.b64 _, [$0];", u32)
mbarrier_arrive_expect_tx = void_asm("mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;", u32, u32)
# spin on try_wait (which itself waits a while in hardware) until the phase of this parity completes;
# the labels are local to the braces, so every inlined copy has its own
mbarrier_wait = void_asm("{ .reg .pred done; WAIT: mbarrier.try_wait.parity.shared::cta.b64 done, [$0], $1; "
                         "@!done bra WAIT; }", u32, u32)
tma_load_2d = void_asm("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
                       "[$0], [$1, {$2, $3}], [$4];", u32, u64, u32, u32, u32)
# the tensor map's 128 bytes were written by a copy (another proxy): order them before TMA reads them
tensormap_acquire = void_asm("fence.proxy.tensormap::generic.acquire.gpu [$0], 128;", u64)
# make the mbarriers' initialisation visible to the async proxy (TMA) and to other threads
fence_barrier_init = void_asm("fence.mbarrier_init.release.cluster;")


@functools.cache
def set_max_registers(count: int, increase: bool):
    """The intrinsic `setmaxnreg.{inc|dec}.sync.aligned.u32 count`: every thread of the
    warpgroup (all of them call it) may now use `count` registers (a multiple of 8, 24-256)."""
    if count % 8 or not 24 <= count <= 256:
        raise ValueError(f"set_max_registers: count must be a multiple of 8 from 24 to 256, got {count}")
    return void_asm(f"setmaxnreg.{'inc' if increase else 'dec'}.sync.aligned.u32 {count};")


__all__ = ["shared_address", "global_address", "mbarrier_init", "mbarrier_arrive", "mbarrier_arrive_expect_tx",
           "mbarrier_wait", "tma_load_2d", "tensormap_acquire", "fence_barrier_init", "set_max_registers"]
