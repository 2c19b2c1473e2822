"""A warpgroup thread's fragment of D, register by register, as Numba intrinsics (GPU only).

A thread of a wgmma warpgroup holds its N / 2 float32 results as one tuple
(`tutorial.runtime.warpgroup_ptx`); register r is D's element at row `row + 8 * ((r % 4) // 2)`
and column `col + 8 * (r // 4) + r % 2` from the thread's first row and column
(`tutorial.gemm.wgmma.fragment_d`). A loop `for r in range(n): total[r]` over such a tuple
compiles, for n = 64, to a loop that picks each register through a chain of 64 compares (the
compiler does not unroll it): an epilogue of ~12,000 instructions a thread, measured at 0.12 ms
of a 0.26 ms GEMM on an H200. These intrinsics unroll over the registers when they are compiled,
so every register is named directly.
"""

from __future__ import annotations

from llvmlite import ir
from numba.cuda import cgutils, types
from numba.cuda.extending import intrinsic

from .warpgroup_ptx import is_accumulators, register_values

I16, I32, I64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)


def _row(r: int) -> int:
    return 8 * ((r % 4) // 2)


def _col(r: int) -> int:
    return 8 * (r // 4) + r % 2


@intrinsic
def promote_rows(typingctx, total, part, top, bottom):
    """`total[r] + part[r] * (top if r % 4 < 2 else bottom)` for every register r: a K-block's
    partial sums promoted with one factor for each of the thread's two rows of D."""
    if not (is_accumulators(total) and is_accumulators(part) and total.count == part.count and isinstance(top, types.Float)
            and isinstance(bottom, types.Float)):
        return None
    n = total.count

    def codegen(context, builder, sig, args):
        totals, parts = register_values(builder, args[0], n), register_values(builder, args[1], n)
        factors = [context.cast(builder, v, t, types.float32) for v, t in zip(args[2:], sig.args[2:])]
        out = [builder.fadd(totals[r], builder.fmul(parts[r], factors[_row(r) // 8])) for r in range(n)]
        return context.make_tuple(builder, sig.return_type, out)

    return total(total, part, top, bottom), codegen


@intrinsic
def scale_columns(typingctx, total, scales, col, n_cols):
    """`total[r] * scales[min(col + 8 * (r // 4) + r % 2, n_cols - 1)]`: each register times
    its column's scale (`scales` 1-D float32, one per column of C)."""
    if not (is_accumulators(total) and isinstance(scales, types.Array) and scales.ndim == 1
            and isinstance(col, types.Integer) and isinstance(n_cols, types.Integer)):
        return None
    n = total.count

    def codegen(context, builder, sig, args):
        values = register_values(builder, args[0], n)
        ary = context.make_array(sig.args[1])(context, builder, args[1])
        col0, last = (context.cast(builder, v, t, types.intp) for v, t in zip(args[2:], sig.args[2:]))
        last = builder.sub(last, ir.Constant(I64, 1))
        out = []
        for r in range(n):
            j = builder.add(col0, ir.Constant(I64, _col(r)))
            j = builder.select(builder.icmp_signed("<", j, last), j, last)
            scale = builder.load(cgutils.get_item_pointer(context, builder, sig.args[1], ary, [j]))
            out.append(builder.fmul(values[r], scale))
        return context.make_tuple(builder, sig.return_type, out)

    return total(total, scales, col, n_cols), codegen


def _bf16_bits(builder, value):
    """The bfloat16 nearest to float32 `value` (ties to even) as i16; NaN gives 0x7FC0."""
    bits = builder.bitcast(value, I32)
    lsb = builder.and_(builder.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    rounded = builder.lshr(builder.add(builder.add(bits, ir.Constant(I32, 0x7FFF)), lsb), ir.Constant(I32, 16))
    is_nan = builder.fcmp_unordered("uno", value, value)
    return builder.trunc(builder.select(is_nan, ir.Constant(I32, 0x7FC0), rounded), I16)


@intrinsic
def store_fragment(typingctx, c, total, row, col, m, n):
    """Store the thread's registers into C (M x N, C-contiguous float32, or uint16 holding
    bfloat16 bits, rounded to nearest even) from its first row and column: each register at
    its place in the fragment, nothing past row m or column n. Two adjacent columns go in one
    8-byte (float32) or 4-byte (bfloat16) store where both are inside and N is even."""
    if not (isinstance(c, types.Array) and c.ndim == 2 and c.layout == "C" and c.dtype in (types.float32, types.uint16)
            and is_accumulators(total) and all(isinstance(x, types.Integer) for x in (row, col, m, n))):
        return None
    count, bf16 = total.count, c.dtype == types.uint16

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        values = register_values(builder, args[1], count)
        row0, col0, rows, cols = (context.cast(builder, v, t, types.intp) for v, t in zip(args[2:], sig.args[2:]))
        pitch = builder.extract_value(ary.shape, 1)
        element = I16 if bf16 else ir.FloatType()
        even = builder.icmp_signed("==", builder.and_(cols, ir.Constant(I64, 1)), ir.Constant(I64, 0))

        def convert(value):
            return _bf16_bits(builder, value) if bf16 else value

        for r in range(0, count, 2):
            i = builder.add(row0, ir.Constant(I64, _row(r)))
            j = builder.add(col0, ir.Constant(I64, _col(r)))
            pointer = builder.gep(ary.data, [builder.add(builder.mul(i, pitch), j)])
            row_inside = builder.icmp_signed("<", i, rows)
            pair_inside = builder.and_(even, builder.icmp_signed("<", builder.add(j, ir.Constant(I64, 1)), cols))
            with builder.if_then(row_inside):
                with builder.if_else(pair_inside) as (whole, edge):
                    with whole:  # both columns: one vector store (aligned: N and j even)
                        vector = ir.VectorType(element, 2)
                        pair = ir.Constant(vector, ir.Undefined)
                        pair = builder.insert_element(pair, convert(values[r]), ir.Constant(I32, 0))
                        pair = builder.insert_element(pair, convert(values[r + 1]), ir.Constant(I32, 1))
                        target = builder.bitcast(pointer, vector.as_pointer())
                        builder.store(pair, target, align=2 * (2 if bf16 else 4))
                    with edge:
                        for d in (0, 1):
                            inside = builder.icmp_signed("<", builder.add(j, ir.Constant(I64, d)), cols)
                            with builder.if_then(inside):
                                builder.store(convert(values[r + d]), builder.gep(pointer, [ir.Constant(I64, d)]))
        return context.get_dummy_value()

    return types.void(c, total, row, col, m, n), codegen


__all__ = ["promote_rows", "scale_columns", "store_fragment"]
