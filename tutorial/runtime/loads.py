"""Wide loads: four float32 in one 16-byte load instruction, four bfloat16 in one 8-byte one (or
eight in a 16-byte one, [`load8_bf16`][]).

A memory-bound kernel that loads one float32 per instruction needs four times as many load
instructions as one that loads four, and on an H100 that alone can keep it from the copy
roofline. Numba has no vector types for array elements, so on the GPU [`load4`][] is a small
intrinsic that reads `arr[i:i + 4]` with one LLVM load of `<4 x float>` (PTX
`ld.global.v4.f32`). On the simulator it is plain indexing.

The address must be 16-byte aligned: `i` a multiple of 4 and the array's data pointer
aligned (Numba's own allocations are; check views and foreign arrays with
[`aligned16`][]). A misaligned vector load is an error on the GPU; the simulator checks `i`.

bfloat16 is float32 with the low 16 bits of the mantissa dropped, so widening it is a shift:
the float32 with bits `b << 16`, exact. Numba has no bfloat16 array type; a bfloat16 array
arrives here as its uint16 bit patterns, and [`load4_bf16`][] returns four float32.
"""

import numpy as np
from numba import cuda, float32, uint16, uint32

from .bitcast import bits_float32, float32_bits
from .device import ON_SIMULATOR
from .launch import grid_blocks

BF16 = np.dtype(np.uint16)  # how a bfloat16 array is held on the device: its bit patterns
_LOAD_BYTES = {np.dtype(np.float32): 16, BF16: 8}


def aligned(device_array, width: int) -> bool:
    """Whether a device array's data pointer is a multiple of `width` bytes (always on the
    simulator, which has no addresses)."""
    return ON_SIMULATOR or device_array.__cuda_array_interface__["data"][0] % width == 0


def aligned16(device_array) -> bool:
    """Whether a 1-D float32 device array can be read with [`load4`][] (or a 1-D bfloat16
    one, as uint16 bits, with [`load4_bf16`][]: 8-byte alignment)."""
    width = _LOAD_BYTES.get(np.dtype(device_array.dtype))
    return width is not None and device_array.ndim == 1 and aligned(device_array, width)


@cuda.jit(device=True)
def bf16_to_float32(bits):
    """The float32 equal to the bfloat16 with these 16 bits (exact)."""
    return bits_float32(uint32(bits) << uint32(16))


@cuda.jit(device=True)
def float32_to_bf16(x):
    """The bits of the bfloat16 nearest to float32 x (ties to even); NaN gives 0x7FC0. (The
    low half is rounded off: add 0x7FFF, plus 1 when the kept half is odd, and shift.)"""
    bits = uint32(float32_bits(x) & 0xFFFFFFFF)
    if bits & uint32(0x7FFFFFFF) > uint32(0x7F800000):
        return uint16(0x7FC0)
    return uint16((bits + uint32(0x7FFF) + ((bits >> uint32(16)) & uint32(1))) >> uint32(16))


if ON_SIMULATOR:

    def load4(arr, i):
        """`arr[i], arr[i + 1], arr[i + 2], arr[i + 3]` as one 16-byte load; `i % 4 == 0`."""
        if i % 4:
            raise IndexError(f"load4: index {i} is not a multiple of 4 (a misaligned vector load)")
        return arr[i], arr[i + 1], arr[i + 2], arr[i + 3]

else:
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    def _vector_load(element, lanes: int, align: int):
        """codegen of one `align`-byte load of `lanes` values of LLVM type `element` at `arr[i]`
        (arr 1-D), returned as a tuple."""

        def codegen(context, builder, sig, args):
            array_type, index_type = sig.args
            array = context.make_array(array_type)(context, builder, value=args[0])
            index = context.cast(builder, args[1], index_type, types.intp)
            vector = ir.VectorType(element, lanes)
            address = builder.bitcast(builder.gep(array.data, [index]), vector.as_pointer())
            value = builder.load(address, align=align)
            parts = [builder.extract_element(value, ir.Constant(ir.IntType(32), k)) for k in range(lanes)]
            return context.make_tuple(builder, sig.return_type, parts)

        return codegen

    @intrinsic
    def load4(typingctx, arr, i):
        """`arr[i], arr[i + 1], arr[i + 2], arr[i + 3]` as one 16-byte load; `i % 4 == 0`."""
        if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1
                and isinstance(i, types.Integer)):
            return None
        return types.UniTuple(types.float32, 4)(arr, i), _vector_load(ir.FloatType(), 4, 16)

    def _load_words(count: int):
        """An intrinsic: `arr[i : i + 2 * count]` of a 16-bit array as `count` uint32 words, one
        (4 * count)-byte load; i a multiple of 2 * count."""

        @intrinsic
        def load_words(typingctx, arr, i):
            if not (isinstance(arr, types.Array) and arr.dtype.bitwidth == 16 and arr.ndim == 1
                    and isinstance(i, types.Integer)):
                return None
            return types.UniTuple(types.uint32, count)(arr, i), _vector_load(ir.IntType(32), count, 4 * count)

        return load_words

    _load_words2 = _load_words(2)  # 4 bfloat16, 8 bytes
    _load_words4 = _load_words(4)  # 8 bfloat16, 16 bytes

if ON_SIMULATOR:

    def load4_bf16(arr, i):
        """Four bfloat16 (uint16 bits) `arr[i : i + 4]` as float32, one 8-byte load; i % 4 == 0."""
        if i % 4:
            raise IndexError(f"load4_bf16: index {i} is not a multiple of 4 (a misaligned vector load)")
        return (bf16_to_float32(arr[i]), bf16_to_float32(arr[i + 1]),
                bf16_to_float32(arr[i + 2]), bf16_to_float32(arr[i + 3]))

else:

    @cuda.jit(device=True)
    def load4_bf16(arr, i):
        """Four bfloat16 (uint16 bits) `arr[i : i + 4]` as float32, one 8-byte load; i % 4 == 0."""
        lo, hi = _load_words2(arr, i)  # little-endian: element i is the low half of `lo`
        return (bits_float32(lo << uint32(16)), bits_float32(lo & uint32(0xFFFF0000)),
                bits_float32(hi << uint32(16)), bits_float32(hi & uint32(0xFFFF0000)))


if ON_SIMULATOR:

    def load8_bf16(arr, i):
        """Eight bfloat16 (uint16 bits) `arr[i : i + 8]` as float32, one 16-byte load; i % 8 == 0."""
        if i % 8:
            raise IndexError(f"load8_bf16: index {i} is not a multiple of 8 (a misaligned vector load)")
        return tuple(bf16_to_float32(arr[i + k]) for k in range(8))

else:

    @cuda.jit(device=True)
    def load8_bf16(arr, i):
        """Eight bfloat16 (uint16 bits) `arr[i : i + 8]` as float32, one 16-byte load; i % 8 == 0."""
        w0, w1, w2, w3 = _load_words4(arr, i)
        high = uint32(0xFFFF0000)
        return (bits_float32(w0 << uint32(16)), bits_float32(w0 & high), bits_float32(w1 << uint32(16)),
                bits_float32(w1 & high), bits_float32(w2 << uint32(16)), bits_float32(w2 & high),
                bits_float32(w3 << uint32(16)), bits_float32(w3 & high))


@cuda.jit(device=True)
def load8_f32(arr, i):
    """Eight float32 `arr[i : i + 8]`, as two 16-byte loads ([`load4`][]); i % 8 == 0. The
    float32 partner of [`load8_bf16`][]: a thread that owns 8 neighbouring values writes their
    codes with one 8-byte store."""
    a0, a1, a2, a3 = load4(arr, i)
    b0, b1, b2, b3 = load4(arr, i + 4)
    return a0, a1, a2, a3, b0, b1, b2, b3


if ON_SIMULATOR:
    def load16_bytes(arr, i):
        """`arr[i : i + 16]` of a 1-D uint8 array as 4 uint32 words (little-endian: byte i is the
        low byte of the first), one 16-byte load; `i % 16 == 0`."""
        if i % 16:
            raise IndexError(f"load16_bytes: index {i} is not a multiple of 16 (a misaligned vector load)")
        words = np.ascontiguousarray(arr[i:i + 16]).view(np.uint32)
        return uint32(words[0]), uint32(words[1]), uint32(words[2]), uint32(words[3])
else:
    @intrinsic
    def load16_bytes(typingctx, arr, i):
        """`arr[i : i + 16]` of a 1-D uint8 array as 4 uint32 words (little-endian: byte i is the
        low byte of the first), one 16-byte load; `i % 16 == 0`."""
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 1
                and isinstance(i, types.Integer)):
            return None
        return types.UniTuple(types.uint32, 4)(arr, i), _vector_load(ir.IntType(32), 4, 16)


def load8_of(device_array):
    """The 8-value load for a 1-D device array, or None: [`load8_f32`][] for float32 and
    [`load8_bf16`][] for bfloat16 bits, when its data is 16-byte aligned."""
    dtype = np.dtype(device_array.dtype)
    if device_array.ndim != 1 or dtype not in _LOAD_BYTES or not aligned(device_array, 16):
        return None
    return load8_bf16 if dtype == BF16 else load8_f32


@cuda.jit
def _widen_bf16_kernel(bits, out):
    for i in range(cuda.grid(1), bits.size, cuda.gridsize(1)):
        out[i] = bf16_to_float32(bits[i])


@cuda.jit
def _to_float32_kernel(x, out):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = float32(x[i])


def as_float32(d):
    """Contiguous device array `d` as float32: itself if it is, bfloat16 bits widened, float16
    widened and float64 rounded (once, to nearest)."""
    if np.dtype(d.dtype) == np.float32:
        return d
    if np.dtype(d.dtype) == BF16:
        return widen_bf16(d)
    threads = 64 if ON_SIMULATOR else 256
    out = cuda.device_array(d.shape, np.float32)
    _to_float32_kernel[grid_blocks(out.size, threads * 4), threads](d.reshape(out.size), out.reshape(out.size))
    return out


def widen_bf16(d):
    """A float32 copy of bfloat16 bits `d` (any shape; exact): for kernels that read elements one
    by one and do not decode bfloat16 themselves."""
    threads = 64 if ON_SIMULATOR else 256
    out = cuda.device_array(d.shape, np.float32)
    _widen_bf16_kernel[grid_blocks(out.size, threads * 4), threads](d.reshape(out.size), out.reshape(out.size))
    return out
