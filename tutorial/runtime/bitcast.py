"""Reinterpret a float32 as its 32 bits and back, inside a kernel.

The FP8 codecs work on bit patterns. Numba has no bit-cast for scalars in CUDA kernels,
so on the GPU these are two tiny intrinsics (one LLVM `bitcast` each, no instructions in
the end); on the simulator, where kernels are plain Python, they are numpy `view` calls.
"""

import numpy as np

from .device import ON_SIMULATOR

if ON_SIMULATOR:

    def float32_bits(x):
        """The IEEE-754 bits of float32(x), as an int32."""
        return int(np.float32(x).view(np.int32))

    def bits_float32(bits):
        """The float32 whose IEEE-754 bits are the low 32 bits of `bits`."""
        return np.uint32(int(bits) & 0xFFFFFFFF).view(np.float32)

else:
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def float32_bits(typingctx, x):
        """The IEEE-754 bits of float32(x), as an int32."""
        if not isinstance(x, (types.Float, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[0], sig.args[0], types.float32)
            return builder.bitcast(value, ir.IntType(32))

        return types.int32(x), codegen

    @intrinsic
    def bits_float32(typingctx, bits):
        """The float32 whose IEEE-754 bits are the low 32 bits of `bits`."""
        if not isinstance(bits, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            word = context.cast(builder, args[0], sig.args[0], types.int32)
            return builder.bitcast(word, ir.FloatType())

        return types.float32(bits), codegen
