"""The PTX of Hopper's warpgroup MMA as Numba intrinsics (GPU only; sm_90a).

numba-cuda compiles every kernel for `sm_90a` on a compute capability 9.0 GPU, the
arch-specific target that `wgmma` needs (plain `sm_90` is refused by ptxas). Offline,
`cuda.compile_ptx(..., cc=(9, 0, "a"))` gives the same PTX.

The accumulators of D travel as one `UniTuple(float32, n)` that every instruction takes and
returns, tied in and out of the inline assembly ("=f" outputs, "0".."n-1" inputs). So
`fence`, the MMAs and `wait_all` are ordered by their data dependence, and the compiler
cannot move a read of D above the wait (CUTLASS's `warpgroup_fence_operand` does the same).

`tutorial.gemm.wgmma` picks these on a GPU and its emulation on the simulator.
"""

from __future__ import annotations

from llvmlite import ir
from numba.cuda import cgutils, types
from numba.cuda.extending import intrinsic

F32, I64 = ir.FloatType(), ir.IntType(64)


def inline_asm(builder, ret, args, asm, constraints, side_effect=True):
    return builder.asm(ir.FunctionType(ret, [a.type for a in args]), asm, constraints, args, side_effect=side_effect)


def register_values(builder, value, n):
    return [builder.extract_value(value, i) for i in range(n)]


def is_accumulators(acc):
    return isinstance(acc, types.UniTuple) and acc.dtype == types.float32


@intrinsic
def accumulators(typingctx, n):
    """A tuple of n float32 zeros (n a compile-time constant): a thread's registers of D."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = n.literal_value
    tuple_type = types.UniTuple(types.float32, count)

    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, tuple_type, [ir.Constant(F32, 0.0)] * count)

    return tuple_type(n), codegen


def _tied(asm):
    """An intrinsic acc -> acc that runs `asm` with the accumulators as its in/out operands."""
    @intrinsic
    def tied(typingctx, acc):
        if not is_accumulators(acc):
            return None
        n = acc.count
        constraints = ",".join(["=f"] * n + [str(i) for i in range(n)]) + ",~{memory}"

        def codegen(context, builder, sig, args):
            out = inline_asm(builder, ir.LiteralStructType([F32] * n), register_values(builder, args[0], n), asm, constraints)
            return context.make_tuple(builder, sig.return_type, register_values(builder, out, n))

        return acc(acc), codegen

    return tied


def void_asm(asm: str, *operands):
    """An intrinsic that runs `asm` on its integer arguments, cast to `operands` (numba integer
    types; 64-bit ones go in "l" registers, the others in "r"), and returns nothing. With no
    operands, an intrinsic of no arguments."""
    constraints = ",".join(["l" if t.bitwidth == 64 else "r" for t in operands] + ["~{memory}"])

    def typer(args):
        if not all(isinstance(a, types.Integer) for a in args):
            return None

        def codegen(context, builder, sig, values):
            cast = [context.cast(builder, v, t, o) for v, t, o in zip(values, sig.args, operands)]
            inline_asm(builder, ir.VoidType(), cast, asm, constraints)
            return context.get_dummy_value()

        return types.void(*args), codegen

    # (numba's intrinsics take no *args: one signature per arity)
    arity = {0: lambda typingctx: typer(()),
             1: lambda typingctx, a: typer((a,)),
             2: lambda typingctx, a, b: typer((a, b)),
             5: lambda typingctx, a, b, c, d, e: typer((a, b, c, d, e))}
    return intrinsic(arity[len(operands)])


fence = _tied("wgmma.fence.sync.aligned;")  # before the first wgmma that touches these registers
fence_only = void_asm("wgmma.fence.sync.aligned;")  # the same, before MMAs that read no registers of D
wait_all = _tied("wgmma.wait_group.sync.aligned 0;")  # every committed group done: D readable
# all but the newest group done: `acc = wait_older(acc)` for registers an older group wrote (they are
# readable after it); the newest group's registers must not be named (ptxas would serialize the MMAs)
wait_older = _tied("wgmma.wait_group.sync.aligned 1;")
wait_all_but_one = void_asm("wgmma.wait_group.sync.aligned 1;")  # the same, naming no registers
commit = void_asm("wgmma.commit_group.sync.aligned;")  # close a group of wgmma instructions
fence_proxy_async = void_asm("fence.proxy.async.shared::cta;")  # st.shared -> visible to wgmma


def _shared_address(context, builder, array_type, array):
    """The shared-window address (`cvta.to.shared`) of a shared array's first byte, an i64."""
    data = context.make_array(array_type)(context, builder, array).data
    return inline_asm(builder, I64, [builder.ptrtoint(data, I64)], "cvta.to.shared.u64 $0, $1;", "=l,l", False)


@intrinsic
def shared_address(typingctx, arr):
    """The address of shared array `arr` in the shared window, as a descriptor counts it (an
    int64, so that adding a byte offset stays an integer)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return _shared_address(context, builder, sig.args[0], args[0])

    return types.int64(arr), codegen


@intrinsic
def smem_descriptor(typingctx, arr, offset, lbo, sbo, swizzle):
    """The matrix descriptor of shared array `arr` + `offset` bytes (`tutorial.gemm.wgmma.descriptor`
    gives the bits), its address taken with `cvta.to.shared`."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        address = _shared_address(context, builder, sig.args[0], args[0])
        off, l, s, sw = (context.cast(builder, v, t, types.int64) for v, t in zip(args[1:], sig.args[1:]))

        def field(value, shift):  # ((value >> 4) & 0x3fff) << shift
            value = builder.and_(builder.lshr(value, ir.Constant(I64, 4)), ir.Constant(I64, 0x3FFF))
            return builder.shl(value, ir.Constant(I64, shift))

        mode = builder.shl(builder.and_(sw, ir.Constant(I64, 3)), ir.Constant(I64, 62))
        return builder.or_(builder.or_(builder.or_(field(builder.add(address, off), 0), field(l, 16)),
                                       field(s, 32)), mode)

    return types.uint64(arr, offset, lbo, sbo, swizzle), codegen


@intrinsic
def promote(typingctx, total, part, s_row, s_col, row, col):
    """`total[r] + part[r] * (s_row[row + 8 * ((r % 4) // 2)] * s_col[col + 8 * (r // 4) + r % 2])`
    for every register r of a thread's fragment (`tutorial.gemm.wgmma.fragment_d`): a
    K-block's partial sums, scaled by their rows' and columns' scales (1-D arrays, indexed
    from the thread's first row and column), added to the float32 totals. Unrolled over the
    registers at compile time, so the totals stay in registers."""
    if not (is_accumulators(total) and is_accumulators(part) and total.count == part.count and isinstance(s_row, types.Array)
            and isinstance(s_col, types.Array) and isinstance(row, types.Integer) and isinstance(col, types.Integer)):
        return None
    n = total.count

    def codegen(context, builder, sig, args):
        totals, parts = register_values(builder, args[0], n), register_values(builder, args[1], n)
        arrays = [context.make_array(t)(context, builder, v) for t, v in zip(sig.args[2:4], args[2:4])]
        row0, col0 = (context.cast(builder, v, t, types.intp) for v, t in zip(args[4:], sig.args[4:]))

        def load(which, base, step):
            index = builder.add(base, ir.Constant(I64, step))
            return builder.load(cgutils.get_item_pointer(context, builder, sig.args[2 + which], arrays[which], [index]))

        row_scales = {d: load(0, row0, d) for d in (0, 8)}
        out = []
        for r in range(n):
            factor = builder.fmul(row_scales[8 * ((r % 4) // 2)], load(1, col0, 8 * (r // 4) + r % 2))
            out.append(builder.fadd(totals[r], builder.fmul(parts[r], factor)))
        return context.make_tuple(builder, sig.return_type, out)

    return total(total, part, s_row, s_col, row, col), codegen


@intrinsic
def cp_async16(typingctx, dst, dst_word, src, src_index, src_bytes):
    """`cp.async.cg.shared.global`: copy 16 bytes from `src[src_index:]` (1-D uint8, global,
    16-byte aligned) to word `dst_word` of the shared array `dst` without passing through
    registers; only the first `src_bytes` (0 or 16) are read, the rest of the 16 is zero."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and src.dtype == types.uint8):
        return None

    def codegen(context, builder, sig, args):
        d_ary = context.make_array(sig.args[0])(context, builder, args[0])
        s_ary = context.make_array(sig.args[2])(context, builder, args[2])
        word, index = (context.cast(builder, v, t, types.intp) for v, t in ((args[1], sig.args[1]),
                                                                           (args[3], sig.args[3])))
        nbytes = context.cast(builder, args[4], sig.args[4], types.int32)
        dst_ptr = builder.ptrtoint(builder.gep(d_ary.data, [word]), I64)
        shared = inline_asm(builder, I64, [dst_ptr], "cvta.to.shared.u64 $0, $1;", "=l,l", False)
        src_ptr = builder.ptrtoint(builder.gep(s_ary.data, [index]), I64)
        inline_asm(builder, ir.VoidType(), [shared, src_ptr, nbytes], "cp.async.cg.shared.global [$0], [$1], 16, $2;",
             "l,l,r,~{memory}")
        return context.get_dummy_value()

    return types.void(dst, dst_word, src, src_index, src_bytes), codegen


cp_async_commit = void_asm("cp.async.commit_group;")  # close a group of this thread's cp.async


def cp_async_wait(pending: int):
    """The intrinsic that waits until at most `pending` of this thread's cp.async groups are in
    flight (the older ones have landed in shared memory)."""
    return void_asm(f"cp.async.wait_group {int(pending)};")


def make_wgmma(fmt_a: str, fmt_b: str):
    """The intrinsic `acc = mma(desc_a, desc_b, acc)`: `wgmma.mma_async` m64nNk32 with float32
    D and FP8 operands `fmt_a`, `fmt_b` ("e4m3" or "e5m2"), N = 2 * len(acc), accumulating."""
    @intrinsic
    def mma(typingctx, desc_a, desc_b, acc):
        if not (is_accumulators(acc) and isinstance(desc_a, types.Integer) and isinstance(desc_b, types.Integer)):
            return None
        n = acc.count
        registers = ", ".join(f"${i}" for i in range(n))
        # scale-d 1 (accumulate into D), imm-scale-a and -b 1 (no negation); FP8 has no transpose
        asm = (f"wgmma.mma_async.sync.aligned.m64n{2 * n}k32.f32.{fmt_a}.{fmt_b} "
               f"{{{registers}}}, ${n}, ${n + 1}, 1, 1, 1;")
        constraints = ",".join(["=f"] * n + ["l", "l"] + [str(i) for i in range(n)]) + ",~{memory}"

        def codegen(context, builder, sig, args):
            descs = [context.cast(builder, v, t, types.uint64) for v, t in zip(args[:2], sig.args[:2])]
            out = inline_asm(builder, ir.LiteralStructType([F32] * n), descs + register_values(builder, args[2], n), asm,
                       constraints)
            return context.make_tuple(builder, sig.return_type, register_values(builder, out, n))

        return acc(desc_a, desc_b, acc), codegen

    return mma


def make_wgmma_fresh(fmt_a: str, fmt_b: str, n: int):
    """The intrinsic `acc = mma0(desc_a, desc_b)`: [`make_wgmma`][]'s instruction with scale-d
    false, D = A @ B, its n float32 registers outputs only. Starting a sum this way writes no
    zeros into registers first: ordinary instructions writing accumulator registers while
    other MMAs are in flight make ptxas insert a wait."""
    registers = ", ".join(f"${i}" for i in range(n))
    asm = (f"{{ .reg .pred zero; setp.ne.b32 zero, $0, $0; "  # (false: the accumulator is not read)
           f"wgmma.mma_async.sync.aligned.m64n{2 * n}k32.f32.{fmt_a}.{fmt_b} "
           f"{{{registers}}}, ${n}, ${n + 1}, zero, 1, 1; }}")
    asm = asm.replace("$0, $0;", f"${n + 2}, ${n + 2};", 1)
    constraints = ",".join(["=f"] * n + ["l", "l", "r"]) + ",~{memory}"
    tuple_type = types.UniTuple(types.float32, n)

    @intrinsic
    def mma0(typingctx, desc_a, desc_b):
        if not (isinstance(desc_a, types.Integer) and isinstance(desc_b, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            descs = [context.cast(builder, v, t, types.uint64) for v, t in zip(args, sig.args)]
            out = inline_asm(builder, ir.LiteralStructType([F32] * n), descs + [ir.Constant(ir.IntType(32), 0)], asm,
                       constraints)
            return context.make_tuple(builder, tuple_type, register_values(builder, out, n))

        return tuple_type(desc_a, desc_b), codegen

    return mma0


__all__ = ["inline_asm", "void_asm", "register_values", "is_accumulators", "make_wgmma_fresh", "fence_only", "accumulators", "fence", "wait_all", "wait_all_but_one", "wait_older", "commit", "fence_proxy_async", "smem_descriptor", "shared_address", "make_wgmma",
           "promote", "cp_async16", "cp_async_commit", "cp_async_wait"]
