"""Wide loads: four float32 in one 16-byte load instruction.

A memory-bound kernel that loads one float32 per instruction needs four times as many load
instructions as one that loads four, and on an H100 that alone can keep it from the copy
roofline. Numba has no vector types for array elements, so on the GPU :func:`load4` is a small
intrinsic that reads ``arr[i:i + 4]`` with one LLVM load of ``<4 x float>`` (PTX
``ld.global.v4.f32``). On the simulator it is plain indexing.

The address must be 16-byte aligned: ``i`` a multiple of 4 and the array's data pointer
aligned (Numba's own allocations are; check views and foreign arrays with
:func:`aligned16`). A misaligned vector load is an error on the GPU; the simulator checks ``i``.
"""

import numpy as np

from .device import ON_SIMULATOR


def aligned16(device_array) -> bool:
    """Whether a 1-D float32 device array can be read with :func:`load4`."""
    if device_array.dtype != np.float32 or device_array.ndim != 1:
        return False
    if ON_SIMULATOR:
        return True
    return device_array.__cuda_array_interface__["data"][0] % 16 == 0


if ON_SIMULATOR:

    def load4(arr, i):
        """arr[i], arr[i + 1], arr[i + 2], arr[i + 3] as one 16-byte load; i % 4 == 0."""
        if i % 4:
            raise IndexError(f"load4: index {i} is not a multiple of 4 (a misaligned vector load)")
        return arr[i], arr[i + 1], arr[i + 2], arr[i + 3]

else:
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def load4(typingctx, arr, i):
        """arr[i], arr[i + 1], arr[i + 2], arr[i + 3] as one 16-byte load; i % 4 == 0."""
        if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1
                and isinstance(i, types.Integer)):
            return None
        quad = types.UniTuple(types.float32, 4)

        def codegen(context, builder, sig, args):
            array_type, index_type = sig.args
            array = context.make_array(array_type)(context, builder, value=args[0])
            index = context.cast(builder, args[1], index_type, types.intp)
            vector = ir.VectorType(ir.FloatType(), 4)
            address = builder.bitcast(builder.gep(array.data, [index]), vector.as_pointer())
            value = builder.load(address, align=16)
            lanes = [builder.extract_element(value, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, quad, lanes)

        return quad(arr, i), codegen
