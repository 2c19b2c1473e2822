"""Chapter 02's hidden graded tests: pack4 and the vectorized per-tensor kernel on inputs the
visible tests (tests/test_per_tensor.py) do not use.

Codes with the high bit of the word set, many words over several blocks, a grid-stride loop
whose last trip is partial, a tensor that is NaN but for one value, bfloat16 input, static
power-of-two scales with quotients exactly on FP8 midpoints: an answer tuned to the visible
tests does not pass them. Every input here takes the vectorized kernel (float32 or bfloat16,
a multiple of 4 elements). The instructor's grading runs them; a release leaves this file out.
"""

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

from tutorial import fp8
from tutorial.course import grading
from tutorial.reference import per_tensor_reference

from tutorial.quant import per_tensor  # the library, or chapter 02's exercise file under --impl exercise
from test_per_tensor import assert_same, hostile

pytestmark = [pytest.mark.chapter("02"), pytest.mark.hidden]
kernel_exercise = pytest.mark.graded("per_tensor_kernel_vec4")


# -- pack4 ------------------------------------------------------------------------------------------


@cuda.jit
def pack_kernel(codes, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = per_tensor.pack4(codes[4 * i], codes[4 * i + 1], codes[4 * i + 2], codes[4 * i + 3])


def packed(codes, blocks=1, threads=32):
    out = cuda.to_device(np.full(codes.size // 4, 0x5A5A5A5A, np.uint32))  # poisoned: an unwritten word shows
    pack_kernel[blocks, threads](cuda.to_device(codes), out)
    return out.copy_to_host()


@pytest.mark.graded("pack4")
@pytest.mark.parametrize("codes", [
    pytest.param(np.full(12, 0xFF, np.uint8), id="all codes 0xff"),
    pytest.param(np.uint8([0, 0, 0, 0x80, 0, 0, 0, 0xFF, 0x80, 0x80, 0x80, 0x80]), id="the high byte set: bit 31"),
    pytest.param(np.uint8([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), id="a single 1 in each byte in turn"),
])
def test_pack4_on_codes_that_set_the_words_top_bits(codes):
    """Words with bit 31 set, all bits set, or a lone 1 in each byte: each is the codes' little-endian uint32."""
    grading.assert_array_matches(packed(codes), codes.view("<u4"), what="packed words")


@pytest.mark.graded("pack4")
def test_pack4_over_96_words_in_three_blocks():
    """384 random codes, 96 words, packed by 3 blocks of 32 threads in a grid-stride loop."""
    codes = np.random.default_rng(200).integers(0, 256, 384).astype(np.uint8)
    grading.assert_array_matches(packed(codes, blocks=3, threads=32), codes.view("<u4"), what="packed words")


# -- per_tensor_kernel_vec4 -------------------------------------------------------------------------


@kernel_exercise
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_dynamic_scale_over_a_grid_stride_loop_with_a_partial_last_trip(fmt):
    """4112 values (1028 words): the grid's threads cover 256 words a trip, so the last trip holds only 4 words."""
    x = hostile((4112,), seed=201)
    assert_same(per_tensor.quantize_per_tensor(x, fmt), per_tensor_reference(x, fmt), x)


@kernel_exercise
def test_all_nan_but_one_value():
    """1024 NaNs and one -3.5 (element 777): the scale comes from 3.5 alone; NaN codes 0x7f, and -3.5 becomes -448."""
    x = np.full(1024, np.nan, np.float32)
    x[777] = -3.5
    q = per_tensor.quantize_per_tensor(x, "e4m3")
    assert_same(q, per_tensor_reference(x, "e4m3"), x)
    assert q.codes[777] == 0xFE, f"code of -3.5: {q.codes[777]:#04x}, expected 0xfe (-448)"


@kernel_exercise
@pytest.mark.parametrize("scale", [None, 0.05], ids=["dynamic scale", "static scale 0.05"])
def test_bfloat16_input(scale):
    """A (8, 36) bfloat16 tensor (8-byte loads of 4 values) quantizes like its exact float32 value."""
    x = hostile((8, 36), seed=202).astype(ml_dtypes.bfloat16)
    assert_same(per_tensor.quantize_per_tensor(x, "e4m3", scale=scale),
                per_tensor_reference(x.astype(np.float32), "e4m3", scale=scale), x.astype(np.float32))


@kernel_exercise
def test_static_power_of_two_scale_with_quotients_on_fp8_midpoints():
    """A (2, 3, 40) tensor of E5M2 midpoints times 2^-10 with the static scale 2^-10: every quotient an exact tie."""
    fmt = fp8.E5M2
    values = np.arange(0x80, dtype=np.uint8).view(fmt.ml_dtype).astype(np.float64)
    values = values[np.isfinite(values)]
    mids = (values[:-1] + values[1:]) / 2  # 123 midpoints
    exact = np.concatenate([mids, -mids[:116], [1.5 * fmt.max]]).reshape(2, 3, 40)  # 1.5 * max: saturates
    x = (exact * 2.0**-10).astype(np.float32)
    assert (x.astype(np.float64) == exact * 2.0**-10).all(), "the inputs must be exact for the quotients to be ties"
    q = per_tensor.quantize_per_tensor(x, "e5m2", scale=2.0**-10)
    assert_same(q, per_tensor_reference(x, "e5m2", scale=2.0**-10), x)
