"""Chapter 00's harnesses: run the learner's FP8 codecs (round_bits_to_fp8 and
fp8_to_float32_bits, through the library's entry points fp8.encode and fp8.decode, and through
the device functions encode_e4m3/encode_e5m2/decode_e4m3/decode_e5m2 in small kernels) on the
inputs they are given, and return what they produced. Only this runs beside the learner's code
(in the class autograder, in its sandbox), so it holds no reference and judges nothing.

A format comes in as its name ("e4m3" or "e5m2"), a 0-d string array.
"""

import numpy as np
from numba import cuda

import tutorial
from tutorial import fp8  # the library, or chapter 00's exercise file when grading


def _name(fmt):
    return str(fmt)  # a 0-d array holding "e4m3" or "e5m2": fp8 takes the name


# -- host entry points ----------------------------------------------------------------------------


def encode(x, fmt):
    """fp8.encode(x, fmt): the codes of `x`, rounded from its own dtype."""
    return fp8.encode(x, _name(fmt))


def encode_each(fmt, **arrays):
    """fp8.encode on each of several arrays (each its own dtype and shape), by name."""
    return {name: fp8.encode(x, _name(fmt)) for name, x in arrays.items()}


def decode(codes, fmt):
    """fp8.decode(codes, fmt): the float32 values of the codes."""
    return fp8.decode(codes, _name(fmt))


def representable_values(fmt):
    """fp8.representable_values(fmt): all 256 codes' values, indexed by code."""
    return fp8.representable_values(_name(fmt))


# -- device functions, in kernels -----------------------------------------------------------------


@cuda.jit
def encode_both_kernel(x, e4m3, e5m2):
    start = cuda.grid(1)
    for i in range(start, x.size, cuda.gridsize(1)):
        e4m3[i] = fp8.encode_e4m3(x[i])
        e5m2[i] = fp8.encode_e5m2(x[i])


@cuda.jit
def decode_both_kernel(codes, e4m3, e5m2):
    i = cuda.grid(1)
    if i < codes.size:
        e4m3[i] = fp8.decode_e4m3(codes[i])
        e5m2[i] = fp8.decode_e5m2(codes[i])


def launch_shape():
    # The simulator runs one Python thread per CUDA thread: 64 threads striding is fastest.
    return (2, 32) if tutorial.ON_SIMULATOR else (256, 256)


def device_encoders(x):
    """encode_e4m3 and encode_e5m2 on every value of 1-D float32 `x`, in one grid-stride kernel."""
    e4m3, e5m2 = np.zeros(x.size, np.uint8), np.zeros(x.size, np.uint8)
    encode_both_kernel[launch_shape()](x, e4m3, e5m2)
    return {"e4m3": e4m3, "e5m2": e5m2}


def device_decoders(codes, blocks, threads):
    """decode_e4m3 and decode_e5m2 on every code, one thread each, `blocks` blocks of `threads`."""
    e4m3, e5m2 = np.zeros(codes.size, np.float32), np.zeros(codes.size, np.float32)
    decode_both_kernel[int(blocks), int(threads)](codes, e4m3, e5m2)
    return {"e4m3": e4m3, "e5m2": e5m2}


def device_encoders_grid_stride(x, blocks, threads):
    """fp8.encode_kernel(encode_e4m3), then (encode_e5m2), on `blocks` blocks of `threads`, each
    into codes poisoned with 0xAA (an unwritten code shows)."""
    out = {}
    for name, encode_device in [("e4m3", fp8.encode_e4m3), ("e5m2", fp8.encode_e5m2)]:
        codes = np.full(x.size, 0xAA, np.uint8)
        fp8.encode_kernel(encode_device)[int(blocks), int(threads)](x, codes)
        out[name] = codes
    return out


def device_decoders_grid_stride(codes, blocks, threads):
    """fp8.decode_kernel(decode_e4m3), then (decode_e5m2), on `blocks` blocks of `threads`, each
    into values poisoned with 12345.0 (an unwritten value shows)."""
    out = {}
    for name, decode_device in [("e4m3", fp8.decode_e4m3), ("e5m2", fp8.decode_e5m2)]:
        values = np.full(codes.size, 12345.0, np.float32)
        fp8.decode_kernel(decode_device)[int(blocks), int(threads)](codes, values)
        out[name] = values
    return out
