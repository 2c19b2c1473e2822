"""Issue 16: hostile input to every public function gives a correct result or a clear error.

A clear error is a ValueError or TypeError raised where the public function is entered,
whose message names the function and the argument; never an exception from inside a
simulated thread (those carry "tid=[" and "ctaid=["), never a silently wrong answer.
Results are checked against tests/oracle.py, written from the definitions: codes and
scales bit for bit, GEMMs within float32's rounding bound of the exact product.

The property tests draw shapes (1 row, 1 column, odd sizes, sizes that are not multiples of
4 or 128), dtypes, memory layouts, blocks (tiny, odd, larger than the tensor) and special
values; the simulator runs one Python thread per CUDA thread, so the shapes stay tiny.
These are library tests: they carry no chapter mark.
"""

from __future__ import annotations

import functools
import math
import re
import time
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from numba import cuda

import tutorial
from tutorial import fp8
from tutorial.course import grading
from tutorial.gemm import MmaTiling, Tiling
from tutorial.gemm.wgmma import ACCUMULATION_BOUND
from tutorial.runtime.device import warpgroup_mma_available

import oracle

SIMULATED = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HOST_ONLY = settings(SIMULATED, max_examples=60)  # no kernel launches: cheap

FORMATS = {"e4m3": fp8.E4M3, "e5m2": fp8.E5M2}
DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
LAYOUTS = ["C", "Fortran", "reversed", "strided", "device"]
FLOAT32_MAX = oracle.FLOAT32_MAX

# Values where FP8 code goes wrong: non-finite, signed zeros, float32 and float16 subnormals
# and range ends, FP8 maxima, FP8 midpoints at scale 1 (ties: to even) and values a hair off
# them, float64 values that become a tie only once rounded to float32.
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0,
            2.0**-149, -(2.0**-140), 2.0**-126, 1e-30, -1e-38, 5.96e-8,
            FLOAT32_MAX, -3e38, 1e30, -65504.0, 7e4,
            448.0, -448.0, 57344.0, 240.0,
            1.0625, -1.1875, 1.125, 3.25, 0.0029296875, 1.5 * 2.0**-16, 2.0**-10,
            1.0625 * (1 + 2.0**-20), -1.0625 * (1 - 2.0**-20), 1.0625 + 2.0**-40, -(1.1875 - 2.0**-35)]
ELEMENTS = st.one_of(st.floats(-8.0, 8.0), st.sampled_from(SPECIALS))
COLUMNS = [1, 2, 3, 5, 7, 8, 13, 31, 33, 64, 127, 128, 129, 130, 257]


# -- helpers ----------------------------------------------------------------------------------


def clear_error(call, function, argument):
    """Call `call()`: it must raise a ValueError or TypeError whose message names `function`,
    then `argument` (a regex), raised before any kernel ran. Returns the message."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert "tid=[" not in message and "ctaid=[" not in message, f"raised inside a simulated thread: {message}"
    assert re.search(rf"{function}\b.*\b(?:{argument})\b", message, re.S), \
        f"the message does not name {function} and then {argument!r}: {message}"
    return message


def x_of(name):
    """The argument an error about the input array names: x (calibrate: x, or its batches)."""
    return "x|batch(es)?" if name == "calibrate" else "x"


def host(a):
    """A numpy copy of a numpy or device array."""
    return np.asarray(a.copy_to_host() if hasattr(a, "copy_to_host") else a)


def laid_out(x, layout):
    """`x`'s values in another memory layout: C, Fortran, reversed (negative strides in every
    dimension), strided (every other element of a wider array) or a device array."""
    if x.ndim == 0 or layout == "C":
        return np.ascontiguousarray(x) if x.ndim else x
    if layout == "Fortran":
        return np.asfortranarray(x)
    if layout == "reversed":
        flip = (slice(None, None, -1),) * x.ndim
        return np.ascontiguousarray(x[flip])[flip]
    if layout == "strided":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    assert layout == "device"
    return cuda.to_device(np.ascontiguousarray(x))


def _ties(fmt):
    """The midpoints between neighbouring values of an FP8 format (ties at scale 1)."""
    grid = oracle.FORMATS[fmt].grid
    return [float((lo + hi) / 2) for lo, hi in zip(grid, grid[1:])]


TIES = {fmt: st.builds(lambda v, negative: -v if negative else v, st.sampled_from(_ties(fmt)), st.booleans())
        for fmt in ("e4m3", "e5m2")}


@st.composite
def hostile(draw, shape):
    """An array of `shape` in a drawn dtype, times a drawn power of two 2^e (huge and tiny
    magnitudes), clipped to float32's range where finite. Its values: drawn values and
    specials, or ("ties") an FP8 format's max and midpoints between its values, so that
    blocks holding the max get the scale 2^e and their quotients are exact ties."""
    dtype = DTYPES[draw(st.sampled_from(list(DTYPES)), label="dtype")]
    ties = draw(st.sampled_from([None, None, "e4m3", "e5m2"]), label="ties of")
    values = draw(hnp.arrays(np.float64, shape, elements=TIES[ties] if ties else ELEMENTS), label="values")
    if ties:
        values.reshape(-1)[draw(st.integers(0, values.size - 1), label="where the max is")] = oracle.FORMATS[ties].max
    values = values * 2.0 ** draw(st.sampled_from([0, 0, 0, -40, 30, 100, -100]), label="power of two")
    values = np.where(np.isfinite(values), np.clip(values, -FLOAT32_MAX, FLOAT32_MAX), values)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


@st.composite
def hostile_laid_out(draw, shape):
    """(values, the same values in a drawn layout); bfloat16 only on the host (on the device it
    must be a torch tensor)."""
    x = draw(hostile(shape))
    layouts = [k for k in LAYOUTS if not (k == "device" and (x.dtype == ml_dtypes.bfloat16 or x.ndim == 0))]
    return x, laid_out(x, draw(st.sampled_from(layouts), label="layout"))


@st.composite
def matrix_shapes(draw, max_size=300, columns=COLUMNS):
    """(M, N): N odd, a power of two or next to one (1 column too); M from 1 row, M * N small."""
    n = draw(st.sampled_from(columns), label="N")
    return draw(st.integers(1, max(1, min(9, max_size // n))), label="M"), n


@st.composite
def blocks_for(draw, shape, max_tiles=12):
    """A block for a matrix of `shape`: tiny, odd, whole rows or columns, larger than the matrix;
    spelled as a tuple, a list or numpy integers. At most `max_tiles` tiles (the simulator)."""
    m, n = shape
    options = [(bm, bn) for bm in (1, 2, 3, m, m + 1, 2**20) for bn in (1, 3, 4, 16, 32, 128, n, n + 5, 2**20)
               if math.ceil(m / bm) * math.ceil(n / bn) <= max_tiles]
    bm, bn = draw(st.sampled_from(options), label="block")
    spelling = draw(st.sampled_from(["tuple", "list", "numpy"]), label="block spelling")
    return (bm, bn), {"tuple": (bm, bn), "list": [bm, bn], "numpy": (np.int64(bm), np.int32(bn))}[spelling]


def tiles_of(block, shape):
    """What a block means on a shape: the tile extents (a block past the edge is the edge)."""
    return tuple(min(int(b), n) for b, n in zip(block, shape))


def assert_quantized(q, want_codes, want_scales, block, fmt, x=None):
    """QTensor `q` holds these codes and scales, bit for bit, in tiles of `block` and format `fmt`."""
    q = q.to_host()
    assert q.fmt is FORMATS[fmt], f"format {q.fmt!r}, expected {FORMATS[fmt]!r}"
    assert isinstance(q.block, tuple), f"block stored as {type(q.block).__name__}"
    assert tiles_of(q.block, q.shape) == tiles_of(block, want_codes.shape), f"block {q.block}, expected {block}"
    grading.assert_array_matches(np.asarray(q.scales), want_scales, what="scales")
    grading.assert_array_matches(np.asarray(q.codes), want_codes, what="codes",
                                 inputs=None if x is None else oracle.as_float32(x))


def assert_floats(got, want, what):
    """Float results equal, NaN matching NaN, zeros positive."""
    got = np.asarray(got)
    assert got.dtype.kind == "f", f"{what}: dtype {got.dtype}, expected a float"
    grading.assert_array_matches(got.astype(np.float64), np.asarray(want, np.float64), what=what)


def qtensor(x, block, fmt="e4m3"):
    """A QTensor built by the oracle (not by the library's quantizers)."""
    codes, scales = oracle.quantize_blocks(x, block, fmt)
    return tutorial.QTensor(codes, scales, fmt, tuple(block))


# Every quantizer and reduction that takes an array x, with the oracle's answer.
def _absmax_rows_oracle(x):
    return oracle.absmax_blocks(x, (1, np.shape(x)[1])).reshape(np.shape(x)[0])


ENTRY = {  # name: (call, oracle) on a 2-D x with N a multiple of 16
    "absmax": (tutorial.absmax, oracle.absmax),
    "absmax_rows": (tutorial.absmax_rows, _absmax_rows_oracle),
    "absmax_blocks": (lambda x: tutorial.absmax_blocks(x, (2, 13)), lambda x: oracle.absmax_blocks(x, (2, 13))),
    "quantize_per_tensor": (tutorial.quantize_per_tensor, lambda x: oracle.quantize_blocks(x, np.shape(x))),
    "calibrate": (lambda x: tutorial.calibrate([x]), lambda x: oracle.calibrate([x], 99.9)),
    "quantize_per_channel": (lambda x: tutorial.quantize_per_channel(x, 0),
                             lambda x: oracle.quantize_blocks(x, (1, np.shape(x)[1]))),
    "quantize_blockwise": (lambda x: tutorial.quantize_blockwise(x, (2, 13)),
                           lambda x: oracle.quantize_blocks(x, (2, 13))),
    "quantize_groups_interleaved": (lambda x: tutorial.quantize_groups_interleaved(x, 16),
                                    lambda x: oracle.interleave(*oracle.quantize_blocks(x, (1, 16)), 16)),
}
TWO_D_ONLY = ["absmax_rows", "absmax_blocks", "quantize_per_channel", "quantize_blockwise",
              "quantize_groups_interleaved"]


BLOCKS = {"quantize_per_tensor": lambda shape: shape, "quantize_per_channel": lambda shape: (1, shape[1]),
          "quantize_blockwise": lambda shape: (2, 13)}  # the block of each quantizer's QTensor in ENTRY


def assert_entry_matches(name, got, x):
    """The result of ENTRY[name] on x is the oracle's."""
    want = ENTRY[name][1](np.asarray(x))
    if isinstance(want, tuple):
        assert_quantized(got, *want, block=BLOCKS[name](np.shape(x)), fmt="e4m3", x=x)
    elif name in ("absmax", "calibrate"):
        assert isinstance(got, float), f"{name} returned {type(got).__name__}, expected a float"
        assert_floats(got, want, name)
    elif name == "quantize_groups_interleaved":
        grading.assert_array_matches(host(got), want, what="interleaved buffer")
    else:
        assert_floats(host(got), want, name)


def fixed_hostile(dtype=np.float32, shape=(3, 32)):
    """A small matrix with NaN, +-inf, signed zeros, a subnormal, an FP8 tie, a huge and tiny value."""
    x = np.random.default_rng(16).standard_normal(shape) * 4
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 1.0625, 3e4, -1e-30, 448.0]
    x.reshape(-1)[:len(specials)] = specials[:x.size]
    with np.errstate(over="ignore"):
        return x.astype(dtype)


# -- 1, 2: input arrays -----------------------------------------------------------------------


BAD_ARRAYS = {
    "int64": np.ones((3, 32), np.int64),
    "bool": np.ones((3, 32), bool),
    "complex64": np.ones((3, 32), np.complex64),
    "strings": np.full((3, 32), "1.0"),
    "objects": np.full((3, 32), None),
    "ragged list": [[1.0] * 32, [1.0] * 31, [1.0] * 32],
}


@pytest.mark.parametrize("bad", list(BAD_ARRAYS))
@pytest.mark.parametrize("name", list(ENTRY))
def test_input_that_is_not_a_real_float_array_is_an_error_naming_x(name, bad):
    """int, bool, complex, strings, objects, a ragged nested list: an error naming the function and x."""
    clear_error(lambda: ENTRY[name][0](BAD_ARRAYS[bad]), name, x_of(name))


@pytest.mark.parametrize("shape", [(0, 32), (3, 0), (0,)], ids=["no rows", "no columns", "1-D empty"])
@pytest.mark.parametrize("name", list(ENTRY))
def test_empty_input_is_an_error_naming_x(name, shape):
    """An array with no elements: an error naming the function and x (never an empty result)."""
    clear_error(lambda: ENTRY[name][0](np.zeros(shape, np.float32)), name, x_of(name))


@pytest.mark.parametrize("shape", [(32,), (2, 3, 32), ()], ids=["1-D", "3-D", "0-D"])
@pytest.mark.parametrize("name", TWO_D_ONLY)
def test_functions_of_matrices_reject_other_ranks_naming_x(name, shape):
    """A 1-D, 3-D or 0-D array to a function of 2-D arrays: an error naming the function and x."""
    clear_error(lambda: ENTRY[name][0](np.ones(shape, np.float32)), name, "x")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", list(ENTRY))
def test_every_float_dtype_is_accepted_by_every_quantizer_and_reduction(name, dtype):
    """float16, bfloat16, float32, float64 with NaN, inf, signed zeros and an FP8 tie: the oracle's result."""
    x = fixed_hostile(DTYPES[dtype])
    assert_entry_matches(name, ENTRY[name][0](x), x)


@pytest.mark.parametrize("layout", ["Fortran", "reversed", "strided"])
@pytest.mark.parametrize("name", list(ENTRY))
def test_non_contiguous_input_gives_the_result_of_a_contiguous_copy(name, layout):
    """Fortran order, negative strides, every other column of a wider array: as a contiguous copy."""
    x = fixed_hostile()
    assert_entry_matches(name, ENTRY[name][0](laid_out(x, layout)), x)


@pytest.mark.parametrize("name", list(ENTRY))
def test_nested_lists_are_taken_like_arrays(name):
    """A nested list of Python floats is what np.asarray makes of it (float64)."""
    x = fixed_hostile(np.float64)
    assert_entry_matches(name, ENTRY[name][0](x.tolist()), x)


def test_quantizers_accept_device_arrays_and_return_device_results():
    """A device array in: a device QTensor out, with the codes and scales of the host array."""
    x = fixed_hostile()
    q = tutorial.quantize_blockwise(cuda.to_device(x), (2, 13))
    assert hasattr(q.codes, "copy_to_host") and hasattr(q.scales, "copy_to_host"), "a host QTensor came back"
    assert_quantized(q, *oracle.quantize_blocks(x, (2, 13)), block=(2, 13), fmt="e4m3", x=x)


# -- 3: float64 -------------------------------------------------------------------------------


def test_float64_is_rounded_to_float32_before_it_is_quantized():
    """[448, 1.0625 + 2^-40]: the second value is the tie 1.0625 in float32, which rounds to even (56, not 57)."""
    q = tutorial.quantize_per_tensor(np.array([448.0, 1.0625 + 2.0**-40]))
    grading.assert_array_matches(q.codes, np.array([126, 56], np.uint8), what="codes")
    assert fp8.encode(np.array([1.0625 + 2.0**-40]))[0] == 57  # what skipping the float32 step would give


BEYOND_FLOAT32 = {"1e39": 1e39, "-1e39": -1e39, "just past float32's max": float(np.nextafter(FLOAT32_MAX, np.inf))}


@pytest.mark.parametrize("value", list(BEYOND_FLOAT32))
@pytest.mark.parametrize("name", list(ENTRY))
def test_finite_float64_beyond_float32_range_is_an_error_naming_x(name, value):
    """One finite float64 value beyond float32's range in a matrix of ones: an error naming x and float32."""
    x = np.ones((3, 32))
    x[1, 5] = BEYOND_FLOAT32[value]
    message = clear_error(lambda: ENTRY[name][0](x), name, x_of(name))
    assert "float32" in message, f"the message does not name float32's range: {message}"


@pytest.mark.parametrize("name", list(ENTRY))
def test_float64_inf_nan_and_float32_max_are_data(name):
    """float64 +-inf, NaN and exactly float32's max are not out of range: the oracle's result."""
    x = np.ones((3, 32))
    x[0, :4] = [np.inf, -np.inf, np.nan, -FLOAT32_MAX]
    x[2, 7] = FLOAT32_MAX
    assert_entry_matches(name, ENTRY[name][0](x), x)


# -- 4: reductions ----------------------------------------------------------------------------


def test_absmax_of_negative_zeros_is_positive_zero():
    """All -0.0: the maximum magnitude is +0.0, not -0.0."""
    got = tutorial.absmax(np.full(5, -0.0, np.float32))
    assert got == 0.0 and math.copysign(1.0, got) == 1.0, f"absmax gave {got!r}"


def test_absmax_propagates_nan_and_counts_inf():
    """NaN anywhere gives NaN; without it, inf is the maximum (numpy's semantics, unlike a scale's amax)."""
    assert math.isnan(tutorial.absmax(np.array([1.0, np.nan, -np.inf], np.float32)))
    assert tutorial.absmax(np.array([1.0, 2.0, -np.inf], np.float32)) == math.inf


def test_absmax_rows_is_absmax_blocks_of_whole_rows():
    """absmax_rows(x) == absmax_blocks(x, (1, N)).reshape(M), NaN and inf rows included."""
    x = fixed_hostile(shape=(4, 37))
    assert_floats(tutorial.absmax_rows(x), tutorial.absmax_blocks(x, (1, 37)).reshape(4), "absmax_rows")


# -- 5: block and group -----------------------------------------------------------------------

BAD_BLOCKS = {"float": (1.5, 128), "zero": (0, 128), "negative": (-1, 4), "bool": (True, 4), "string": ("1", 128),
              "integral float": (2.0, 4), "one number": (128,), "three numbers": (1, 2, 3), "an int": 128,
              "None": None, "numpy float": (np.float64(2), 4), "a string": "1,128"}


@pytest.mark.parametrize("bad", list(BAD_BLOCKS))
@pytest.mark.parametrize("name", ["quantize_blockwise", "absmax_blocks"])
def test_a_block_that_is_not_two_positive_integers_is_an_error_naming_block(name, bad):
    """Floats, zero, negatives, bools, strings, the wrong count: an error naming block (never truncated)."""
    clear_error(lambda: getattr(tutorial, name)(np.ones((3, 8), np.float32), BAD_BLOCKS[bad]), name, "block")


@pytest.mark.parametrize("bad", [0, -128, 1.5, 128.0, True, "128", None, (1, 128)])
def test_a_group_that_is_not_a_positive_integer_is_an_error_naming_group(bad):
    """quantize_groups_interleaved's group: zero, negative, float, bool, string, None, a tuple."""
    clear_error(lambda: tutorial.quantize_groups_interleaved(np.ones((2, 128), np.float32), bad),
                "quantize_groups_interleaved", "group")


def test_a_group_that_does_not_divide_n_is_an_error():
    """N = 100 in groups of 16: no interleaved layout; an error naming the group (or N)."""
    clear_error(lambda: tutorial.quantize_groups_interleaved(np.ones((2, 100), np.float32), 16),
                "quantize_groups_interleaved", "group|N")


@pytest.mark.parametrize("group", [1, 3, 5, 8, 12])
def test_other_group_widths_give_the_right_buffer_or_a_clear_error(group):
    """Groups of 1, 3, 5, 8, 12 (scales not 4-byte aligned, or odd): the oracle's buffer, or an error naming group."""
    x = fixed_hostile(shape=(2, 4 * group))
    try:
        buf = tutorial.quantize_groups_interleaved(x, group)
    except (ValueError, TypeError):
        clear_error(lambda: tutorial.quantize_groups_interleaved(x, group), "quantize_groups_interleaved", "group")
        return
    grading.assert_array_matches(host(buf), oracle.interleave(*oracle.quantize_blocks(x, (1, group)), group),
                                 what="interleaved buffer")


def test_a_block_may_be_a_list_or_numpy_integers():
    """[2, 13] and (np.int64(2), np.int32(13)) mean (2, 13); the QTensor stores Python ints."""
    x = fixed_hostile()
    want = oracle.quantize_blocks(x, (2, 13))
    for block in ([2, 13], (np.int64(2), np.int32(13))):
        q = tutorial.quantize_blockwise(x, block)
        assert_quantized(q, *want, block=(2, 13), fmt="e4m3", x=x)
        assert all(type(b) is int for b in q.block), f"block stored as {q.block!r}"


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["quantize_blockwise", "absmax_blocks"])
@pytest.mark.parametrize("block", [(1, 2**28), (2**28, 1), (2**28, 2**28)], ids=["1 x 2^28", "2^28 x 1", "2^28 x 2^28"])
def test_a_block_larger_than_the_tensor_costs_what_the_tensor_costs(block, name):
    """A 2x3 matrix of ones in blocks of 2^28: right, in well under a second (or no slower than the
    same tiles spelled with the matrix's own sizes, on a busy machine) and in little memory."""
    x = np.ones((2, 3), np.float32)
    run = {"quantize_blockwise": lambda b: tutorial.quantize_blockwise(x, b).dequantize(),
           "absmax_blocks": lambda b: tutorial.absmax_blocks(x, b)}[name]
    want = x if name == "quantize_blockwise" else np.ones((2 if block[0] == 1 else 1, 3 if block[1] == 1 else 1))
    clipped = tiles_of(block, x.shape)
    run(clipped)  # first use: imports, caches
    _, baseline = _timed(lambda: run(clipped))
    got, elapsed = _timed(lambda: run(block))
    assert_floats(got, want, name)
    assert elapsed < max(1.0, 2 * baseline), \
        f"{elapsed:.2f} s for a 2x3 matrix ({baseline:.2f} s in blocks {clipped}): time follows the block"
    tracemalloc.start()
    try:
        run(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**24, f"{peak / 2**20:.0f} MiB for a 2x3 matrix: memory follows the block, not the tensor"


# -- 6: QTensor -------------------------------------------------------------------------------


CODES, SCALES = np.zeros((4, 6), np.uint8), np.ones((2, 2), np.float32)  # fit block (2, 3)
BAD_QTENSORS = {  # name: (codes, scales, fmt, block, the argument the error names)
    "float32 codes": (CODES.astype(np.float32), SCALES, "e4m3", (2, 3), "codes"),
    "int8 codes": (CODES.astype(np.int8), SCALES, "e4m3", (2, 3), "codes"),
    "codes a list": (CODES.tolist(), SCALES, "e4m3", (2, 3), "codes"),
    "float64 scales": (CODES, SCALES.astype(np.float64), "e4m3", (2, 3), "scales"),
    "scales one column too many": (CODES, np.ones((2, 3), np.float32), "e4m3", (2, 3), "scales"),
    "scales transposed": (CODES, np.ones((3, 2), np.float32), "e4m3", (2, 3), "scales"),
    "fmt int8": (CODES, SCALES, "int8", (2, 3), "fmt"),
    "fmt None": (CODES, SCALES, None, (2, 3), "fmt"),
    "block too short": (CODES, SCALES, "e4m3", (2,), "block"),
    "block too long": (CODES, SCALES, "e4m3", (2, 3, 1), "block"),
    "block with a zero": (CODES, SCALES, "e4m3", (0, 3), "block"),
    "block with a float": (CODES, SCALES, "e4m3", (2.0, 3), "block"),
    "block with a bool": (CODES, SCALES, "e4m3", (True, 3), "block"),
    "block a string": (CODES, SCALES, "e4m3", "23", "block"),
}


@pytest.mark.parametrize("case", list(BAD_QTENSORS))
def test_qtensor_rejects_parts_that_do_not_fit(case):
    """Codes not uint8, scales not float32 or of the wrong shape, a bad fmt or block: an error naming it."""
    *parts, argument = BAD_QTENSORS[case]
    clear_error(lambda: tutorial.QTensor(*parts), "QTensor", argument)


@pytest.mark.parametrize("name", ["e4m3", "E4M3", "float8_e4m3fn", "e5m2", "E5M2", "float8_e5m2"])
def test_qtensor_takes_a_format_name_and_stores_the_format(name):
    """Each spelling of a format's name: q.fmt is the Format itself."""
    q = tutorial.QTensor(np.zeros((2, 2), np.uint8), np.ones((1, 1), np.float32), name, (2, 2))
    assert q.fmt is (fp8.E4M3 if "4" in name else fp8.E5M2), f"{name!r} stored as {q.fmt!r}"


def test_qtensor_stores_its_block_as_a_tuple_of_python_ints():
    """A list of numpy integers in, a tuple of Python ints stored."""
    q = tutorial.QTensor(np.zeros((4, 6), np.uint8), np.ones((2, 2), np.float32), fp8.E4M3,
                         [np.int64(2), np.int32(3)])
    assert q.block == (2, 3) and all(type(b) is int for b in q.block), f"block stored as {q.block!r}"


def test_qtensor_takes_device_codes_and_scales():
    """Codes and scales on the device: accepted as they are, and dequantized on the host."""
    codes, scales = np.full((4, 6), 0x38, np.uint8), np.full((2, 2), 0.5, np.float32)
    q = tutorial.QTensor(cuda.to_device(codes), cuda.to_device(scales), "e4m3", (2, 3))
    grading.assert_array_matches(q.dequantize(), np.full((4, 6), 0.5, np.float32), what="dequantized value")


def test_a_zero_dimensional_qtensor_is_valid():
    """Codes of shape (), scales of shape (), block (): a scalar quantized."""
    q = tutorial.QTensor(np.array(0x38, np.uint8), np.array(0.5, np.float32), "e4m3", ())
    assert q.shape == () and q.block == ()
    assert float(q.dequantize()) == 0.5


@pytest.mark.parametrize("x", [np.float32(3.0), np.array(-448.0), 2.5], ids=["numpy scalar", "0-d array", "float"])
def test_per_tensor_of_a_scalar_has_0d_codes_and_scales(x):
    """A 0-d input: codes and scales of shape (), block (), the oracle's values."""
    q = tutorial.quantize_per_tensor(x)
    assert np.shape(q.codes) == () and np.shape(q.scales) == () and q.block == ()
    codes, scales = oracle.quantize_blocks(np.asarray(x), ())
    assert_quantized(q, codes, scales, (), "e4m3", np.asarray(x))


# -- 7: static scales -------------------------------------------------------------------------

BAD_SCALES = {"string": "1.0", "bool": True, "1-element 1-D array": np.array([1.0]), "NaN": np.nan, "zero": 0,
              "negative": -1.0, "inf": np.inf, "below 2^-126": 2.0**-127, "above 2^126": 2.0**127,
              "complex": 1 + 0j, "None in a list": [None], "numpy zero": np.float32(0)}


@pytest.mark.parametrize("bad", list(BAD_SCALES))
def test_a_static_scale_that_is_not_a_usable_positive_number_is_an_error_naming_scale(bad):
    """Strings, bools, 1-element arrays, NaN, 0, negatives, inf, scales outside [2^-126, 2^126]."""
    clear_error(lambda: tutorial.quantize_per_tensor(np.ones(8, np.float32), scale=BAD_SCALES[bad]),
                "quantize_per_tensor", "scale")


GOOD_SCALES = {"int": 1, "float": 0.01, "numpy float32": np.float32(0.25), "numpy float64": np.float64(3.0),
               "0-d array": np.array(0.5), "2^-126": 2.0**-126, "2^126": 2.0**126, "numpy int": np.int64(2)}


@pytest.mark.parametrize("scale", list(GOOD_SCALES))
def test_a_static_scale_may_be_any_real_number_in_range(scale):
    """Python and numpy numbers and 0-d arrays in [2^-126, 2^126]: used as float32(scale)."""
    x = fixed_hostile()
    q = tutorial.quantize_per_tensor(x, scale=GOOD_SCALES[scale])
    assert_quantized(q, *oracle.quantize_static(x, GOOD_SCALES[scale]), block=x.shape, fmt="e4m3", x=x)


# -- other arguments of the quantizers --------------------------------------------------------

QUANTIZERS = {
    "quantize_per_tensor": lambda x, **kw: tutorial.quantize_per_tensor(x, **kw),
    "quantize_per_channel": lambda x, **kw: tutorial.quantize_per_channel(x, 0, **kw),
    "quantize_blockwise": lambda x, **kw: tutorial.quantize_blockwise(x, (1, 16), **kw),
    "quantize_groups_interleaved": lambda x, **kw: tutorial.quantize_groups_interleaved(x, 16, **kw),
    "split_interleaved": lambda x, **kw: tutorial.split_interleaved(np.zeros((3, 40), np.uint8), 16, cols=32, **kw),
}


@pytest.mark.parametrize("bad", ["int8", "e4m3fnuz", None, 3])
@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_an_unknown_format_is_an_error_naming_fmt(name, bad):
    """'int8', 'e4m3fnuz', None, 3: an error naming the function and fmt."""
    clear_error(lambda: QUANTIZERS[name](np.ones((3, 32), np.float32), fmt=bad), name, "fmt")


@pytest.mark.parametrize("bad", [2, -2, 0.5, "0", None, (0,)])
def test_a_per_channel_axis_other_than_0_or_1_is_an_error_naming_axis(bad):
    """axis 2, -2, 0.5, '0', None, (0,): an error naming axis."""
    clear_error(lambda: tutorial.quantize_per_channel(np.ones((3, 4), np.float32), bad), "quantize_per_channel", "axis")


def test_an_unknown_encoder_is_an_error_naming_encoder():
    """encoder="auto" (not "exact", "fast", "software" or "hardware"): an error naming encoder."""
    clear_error(lambda: tutorial.quantize_blockwise(np.ones((2, 128), np.float32), encoder="auto"),
                "quantize_blockwise", "encoder")


@pytest.mark.parametrize("bad", [0, -1, 101, np.nan, "99", None])
def test_a_percentile_outside_0_to_100_is_an_error_naming_percentile(bad):
    """0, -1, 101, NaN, '99', None: an error naming percentile."""
    clear_error(lambda: tutorial.calibrate([np.ones(4, np.float32)], percentile=bad), "calibrate", "percentile")


@pytest.mark.parametrize("batches", [[], None, 3.0], ids=["no batches", "None", "a number"])
def test_calibrate_without_batches_is_an_error_naming_batches(batches):
    """No batches, None, a number: an error naming the batches (never a Python iteration error)."""
    clear_error(lambda: tutorial.calibrate(batches), "calibrate", "batch(es)?")


# -- 8: split_interleaved ---------------------------------------------------------------------


def test_split_interleaved_needs_cols():
    """Without cols (N), the buffer's shape does not say where groups end: an error saying cols is needed."""
    buf = tutorial.quantize_groups_interleaved(np.ones((2, 256), np.float32), 128)
    clear_error(lambda: tutorial.split_interleaved(buf, 128), "split_interleaved", "cols")


def test_split_interleaved_with_another_group_is_an_error_not_a_wrong_qtensor():
    """A buffer of groups of 128 split as groups of 62 (its width 264 = 2 x (62 + 4) x 2): an error."""
    x = fixed_hostile(shape=(2, 256))
    buf = tutorial.quantize_groups_interleaved(x, 128)
    clear_error(lambda: tutorial.split_interleaved(buf, 62, cols=x.shape[1]), "split_interleaved", "group|cols|buf")


BAD_BUFFERS = {
    "float32 buffer": (np.zeros((2, 264), np.float32), 128, 256, "buf"),
    "1-D buffer": (np.zeros(264, np.uint8), 128, 256, "buf"),
    "too narrow": (np.zeros((2, 263), np.uint8), 128, 256, "buf|cols"),
    "too wide": (np.zeros((2, 396), np.uint8), 128, 256, "buf|cols"),
    "cols not whole groups": (np.zeros((2, 264), np.uint8), 128, 250, "cols|group"),
    "cols zero": (np.zeros((2, 264), np.uint8), 128, 0, "cols"),
    "cols a float": (np.zeros((2, 264), np.uint8), 128, 256.0, "cols"),
    "group zero": (np.zeros((2, 264), np.uint8), 0, 256, "group"),
    "group a float": (np.zeros((2, 264), np.uint8), 128.0, 256, "group"),
}


@pytest.mark.parametrize("case", list(BAD_BUFFERS))
def test_split_interleaved_rejects_a_buffer_that_does_not_fit(case):
    """Wrong dtype, rank or width, cols not whole groups, bad sizes: an error naming the mismatch."""
    buf, group, cols, argument = BAD_BUFFERS[case]
    clear_error(lambda: tutorial.split_interleaved(buf, group, cols=cols), "split_interleaved", argument)


# -- 9: scaled_matmul -------------------------------------------------------------------------

@functools.cache
def operands():
    """A (3 x 32, one scale per row) and B (32 x 5, one scale per column), built by the oracle."""
    rng = np.random.default_rng(9)
    return (qtensor(rng.standard_normal((3, 32)).astype(np.float32), (1, 32)),
            qtensor(rng.standard_normal((32, 5)).astype(np.float32), (32, 1)))


def _scaled_matmul(a="A", b="B", *args, **kwargs):
    """scaled_matmul with "A" and "B" standing for operands()."""
    a = operands()[0] if isinstance(a, str) else a
    b = operands()[1] if isinstance(b, str) else b
    return tutorial.scaled_matmul(a, b, *args, **kwargs)


BAD_OPERANDS = {
    "a numpy array": (lambda: _scaled_matmul(operands()[0].dequantize()), "a"),
    "b numpy array": (lambda: _scaled_matmul("A", operands()[1].dequantize()), "b"),
    "b None": (lambda: _scaled_matmul("A", None), "b"),
    "a 1-D": (lambda: _scaled_matmul(tutorial.QTensor(np.zeros(32, np.uint8), np.ones(1, np.float32), "e4m3", (32,))),
              "a"),
    "b 3-D": (lambda: _scaled_matmul("A", tutorial.QTensor(np.zeros((32, 5, 1), np.uint8),
                                                           np.ones((1, 1, 1), np.float32), "e4m3", (32, 5, 1))), "b"),
    "inner dimensions differ": (lambda: _scaled_matmul("A", qtensor(np.ones((31, 5), np.float32), (31, 1))),
                                "a|b"),
    "unknown mode": (lambda: _scaled_matmul("A", "B", "fast"), "mode"),
    "unknown kernel": (lambda: _scaled_matmul("A", "B", kernel="gpu"), "kernel"),
    "tiling a tuple": (lambda: _scaled_matmul("A", "B", tiling=(64, 64, 32, 8, 8)), "tiling"),
    "MmaTiling on the CUDA cores": (lambda: _scaled_matmul("A", "B", "promote", kernel="cuda_core",
                                                           tiling=MmaTiling(32, 16, 64, 2, 1)), "tiling|kernel"),
    "out too large": (lambda: _scaled_matmul("A", "B", out=cuda.device_array((4, 5), np.float32)), "out"),
    "out too small": (lambda: _scaled_matmul("A", "B", out=cuda.device_array((3, 4), np.float32)), "out"),
    "out transposed": (lambda: _scaled_matmul("A", "B", out=cuda.device_array((5, 3), np.float32)), "out"),
    "out flat": (lambda: _scaled_matmul("A", "B", out=cuda.device_array(15, np.float32)), "out"),
    "out float64": (lambda: _scaled_matmul("A", "B", out=cuda.device_array((3, 5), np.float64)), "out"),
    "out float16": (lambda: _scaled_matmul("A", "B", out=cuda.device_array((3, 5), np.float16)), "out"),
}


@pytest.mark.parametrize("case", list(BAD_OPERANDS))
def test_scaled_matmul_rejects_bad_arguments_naming_them(case):
    """Non-QTensors, ranks other than 2, unequal K, unknown mode/kernel/tiling, an out of the wrong shape or dtype."""
    call, argument = BAD_OPERANDS[case]
    clear_error(call, "scaled_matmul", argument)


def test_scaled_matmul_writes_into_out_and_returns_it():
    """out poisoned with NaN: the result is out itself, every element written, within the bound."""
    a, b = operands()
    out = cuda.to_device(np.full((3, 5), np.nan, np.float32))
    assert tutorial.scaled_matmul(a, b, out=out) is out
    exact = [oracle.dequantized(q.codes, q.scales, q.block, q.fmt) for q in (a, b)]
    assert oracle.matmul_violations(out.copy_to_host(), *exact, roundings=roundings(None, 32, a, b),
                                    relative=wgmma_relative(None, "auto", a, b)) == []


MODES_KERNELS = [(None, "auto"), ("dequant", "cuda_core"), ("promote", "cuda_core"), ("epilogue", "cuda_core"),
                 ("promote", "tensor_core"), ("rescale", "tensor_core"), ("epilogue", "tensor_core")]


@pytest.mark.parametrize("mode, kernel", MODES_KERNELS)
def test_scaled_matmul_with_k_zero_is_all_zeros(mode, kernel):
    """(3 x 0) @ (0 x 5) into an out poisoned with NaN: all zeros, in every mode and kernel."""
    a = tutorial.QTensor(np.zeros((3, 0), np.uint8), np.zeros((3, 0), np.float32), "e4m3", (1, 128))
    b = tutorial.QTensor(np.zeros((0, 5), np.uint8), np.zeros((0, 1), np.float32), "e4m3", (128, 128))
    out = cuda.to_device(np.full((3, 5), np.nan, np.float32))
    got = tutorial.scaled_matmul(a, b, mode, kernel=kernel, out=out)
    grading.assert_array_matches(host(got), np.zeros((3, 5), np.float32), what="C")


# -- 10: tilings -------------------------------------------------------------------------------

BAD_TILINGS = {
    "Tiling(64, 64, 32, 6, 6): bm % tm": (lambda: Tiling(64, 64, 32, 6, 6), "Tiling", "bm|tm"),
    "Tiling(64, 60, 32, 8, 8): bn % tn": (lambda: Tiling(64, 60, 32, 8, 8), "Tiling", "bn|tn"),
    "Tiling(64, 64, 8, 1, 1): 4096 threads": (lambda: Tiling(64, 64, 8, 1, 1), "Tiling", "threads|1024"),
    "Tiling(0, 64, 8, 8, 8)": (lambda: Tiling(0, 64, 8, 8, 8), "Tiling", "bm"),
    "Tiling(64, 64, -8, 8, 8)": (lambda: Tiling(64, 64, -8, 8, 8), "Tiling", "bk"),
    "Tiling(64.0, 64, 8, 8, 8)": (lambda: Tiling(64.0, 64, 8, 8, 8), "Tiling", "bm"),
    "Tiling('64', 64, 8, 8, 8)": (lambda: Tiling("64", 64, 8, 8, 8), "Tiling", "bm"),
    "MmaTiling(16, 16, 64, 2, 1): (bm / wm) % 16": (lambda: MmaTiling(16, 16, 64, 2, 1), "MmaTiling", "bm|wm"),
    "MmaTiling(33, 16, 32, 2, 1): bm % wm": (lambda: MmaTiling(33, 16, 32, 2, 1), "MmaTiling", "bm|wm"),
    "MmaTiling(32, 8, 32, 1, 2): (bn / wn) % 8": (lambda: MmaTiling(32, 8, 32, 1, 2), "MmaTiling", "bn|wn"),
    "MmaTiling(32, 16, 48, 2, 1): bk % 32": (lambda: MmaTiling(32, 16, 48, 2, 1), "MmaTiling", "bk"),
    "MmaTiling(1024, 128, 32, 64, 1): 2048 threads": (lambda: MmaTiling(1024, 128, 32, 64, 1), "MmaTiling",
                                                      "threads|1024|wm|wn"),
    "MmaTiling(32, 16, 0, 2, 1)": (lambda: MmaTiling(32, 16, 0, 2, 1), "MmaTiling", "bk"),
    "MmaTiling(32, 16, 64, 2.0, 1)": (lambda: MmaTiling(32, 16, 64, 2.0, 1), "MmaTiling", "wm"),
}


@pytest.mark.parametrize("case", list(BAD_TILINGS))
def test_a_tiling_that_would_leave_part_of_c_uncomputed_is_rejected(case):
    """Each tiling breaks one constraint of its kernel: an error naming the class and what is broken."""
    call, cls, argument = BAD_TILINGS[case]
    clear_error(call, cls, argument)


TILING_SIZES = st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048])


@HOST_ONLY
@given(kind=st.sampled_from(["Tiling", "MmaTiling"]), sizes=st.tuples(*[TILING_SIZES] * 5))
def test_every_tiling_that_breaks_a_constraint_is_rejected(kind, sizes):
    """Tilings of drawn sizes: one that breaks a constraint is an error naming its class."""
    broken = oracle.tiling_constraints(kind, *sizes)
    cls = Tiling if kind == "Tiling" else MmaTiling
    if broken:
        clear_error(lambda: cls(*sizes), kind, r"b[mnk]|t[mn]|w[mn]|threads|1024")
    else:  # the constraints are met: if it is refused anyway, clearly
        try:
            cls(*sizes)
        except (ValueError, TypeError):
            clear_error(lambda: cls(*sizes), kind, r"b[mnk]|t[mn]|w[mn]|threads|1024")


SMALL_TILINGS = [Tiling(16, 16, 8, 4, 4), Tiling(32, 16, 8, 4, 2), MmaTiling(32, 16, 32, 2, 1),
                 MmaTiling(16, 16, 32, 1, 2)]


@pytest.mark.parametrize("tiling", SMALL_TILINGS, ids=repr)
@settings(SIMULATED, max_examples=4)
@given(data=st.data())
def test_an_accepted_tiling_computes_all_of_c(tiling, data):
    """Odd M, N, K with C poisoned with NaN: no NaN survives and every element is within the bound."""
    m, n = data.draw(st.integers(1, 40), label="M"), data.draw(st.integers(1, 40), label="N")
    k = data.draw(st.sampled_from([1, 7, 32, 33, 70]), label="K")
    along_k = data.draw(st.sampled_from(["constant", 32]), label="scales along K")
    tensor_core = isinstance(tiling, MmaTiling)
    modes = ["promote", "rescale"] if tensor_core else ["dequant", "promote"]
    mode = data.draw(st.sampled_from(modes + (["epilogue"] if along_k == "constant" else [])), label="mode")
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    kb = k if along_k == "constant" else 32
    a = qtensor(rng.standard_normal((m, k)).astype(np.float32), (1, kb))
    b = qtensor(rng.standard_normal((k, n)).astype(np.float32), (kb, 1 if along_k == "constant" else 32))
    out = cuda.to_device(np.full((m, n), np.nan, np.float32))
    tutorial.scaled_matmul(a, b, mode, out=out, kernel="tensor_core" if tensor_core else "cuda_core", tiling=tiling)
    c = out.copy_to_host()
    assert not np.isnan(c).any(), f"{int(np.isnan(c).sum())} elements of C never written"
    exact = [oracle.dequantized(q.codes, q.scales, q.block, q.fmt) for q in (a, b)]
    assert oracle.matmul_violations(c, *exact, roundings=roundings(mode, k, a, b)) == []


def wgmma_relative(mode, kernel, a, b):
    """Where "auto" picks the wgmma kernel (compute capability 9.0; mode None or "promote"; scales
    constant over each 128 of K), its K-blocks carry the tensor cores' own accumulation error,
    up to ACCUMULATION_BOUND of sum |a||b|: the allowance for it, else 0."""
    k = a.shape[1]
    chosen = kernel == "auto" and mode in (None, "promote") and all(e % 128 == 0 or e >= k
                                                                     for e in (a.block[1], b.block[0]))
    return ACCUMULATION_BOUND if chosen and warpgroup_mma_available() else 0.0


def roundings(mode, k, a, b):
    """The n of the bound gamma_n: K + 3, and for "rescale" (or a mode left to the library, which
    may pick it) 3 ceil(K / promote_k) more, promote_k the K-block: the smaller K extent of the
    blocks, or 128 where the scales are constant along K."""
    if mode not in (None, "rescale"):
        return k + 3
    extents = [e for e in (a.block[1], b.block[0]) if e < k]
    promote_k = min(extents) if extents else 128
    return k + 3 + 3 * math.ceil(k / promote_k)


# -- 11, 12: matmul_float32, warp_max, block_max ----------------------------------------------

BAD_FLOAT_MATMULS = {
    "a complex": (lambda: tutorial.matmul_float32(np.ones((3, 4), np.complex64), np.ones((4, 5), np.float32)), "a"),
    "b int": (lambda: tutorial.matmul_float32(np.ones((3, 4), np.float32), np.ones((4, 5), np.int32)), "b"),
    "a bool": (lambda: tutorial.matmul_float32(np.ones((3, 4), bool), np.ones((4, 5), np.float32)), "a"),
    "a 1-D": (lambda: tutorial.matmul_float32(np.ones(4, np.float32), np.ones((4, 5), np.float32)), "a"),
    "b 3-D": (lambda: tutorial.matmul_float32(np.ones((3, 4), np.float32), np.ones((4, 5, 1), np.float32)), "b"),
    "inner dimensions differ": (lambda: tutorial.matmul_float32(np.ones((3, 4), np.float32),
                                                                np.ones((5, 5), np.float32)), "a|b"),
    "a empty": (lambda: tutorial.matmul_float32(np.ones((0, 4), np.float32), np.ones((4, 5), np.float32)), "a"),
    "unknown kernel": (lambda: tutorial.matmul_float32(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32),
                                                       "fast"), "kernel"),
}


@pytest.mark.parametrize("case", list(BAD_FLOAT_MATMULS))
def test_matmul_float32_rejects_bad_operands_naming_them(case):
    """Complex, int, bool, ranks other than 2, unequal K, no rows, an unknown kernel: an error naming it."""
    call, argument = BAD_FLOAT_MATMULS[case]
    clear_error(call, "matmul_float32", argument)


@pytest.mark.parametrize("name", ["warp_max", "block_max"])
def test_device_functions_called_from_the_host_are_type_errors(name):
    """warp_max(1.0) on the host: a TypeError saying it is a device function, for use inside a kernel."""
    with pytest.raises(TypeError, match="device function") as info:
        getattr(tutorial, name)(1.0)
    assert "kernel" in str(info.value), str(info.value)


# -- property tests: one per public function, against the oracle ------------------------------


@SIMULATED
@given(data=st.data())
def test_property_absmax(data):
    """Any rank (0-d to 3-D), dtype, layout and special values: max |float32(x)|, NaN propagating, +0.0 for zeros."""
    shape = data.draw(st.one_of(st.just(()), hnp.array_shapes(min_dims=1, max_dims=3, max_side=7)), label="shape")
    x, given_x = data.draw(hostile_laid_out(shape))
    got = tutorial.absmax(given_x)
    got = float(host(got).reshape(-1)[0]) if hasattr(got, "copy_to_host") else got
    want = oracle.absmax(x)
    assert (math.isnan(got) and math.isnan(want)) or (got == want and math.copysign(1, got) == 1), \
        f"absmax {got!r}, expected {want!r}"


@SIMULATED
@given(data=st.data())
def test_property_absmax_rows(data):
    """Drawn matrices: the largest magnitude of each row, float, NaN propagating."""
    x, given_x = data.draw(matrix_shapes(max_size=200).flatmap(hostile_laid_out))
    assert_floats(host(tutorial.absmax_rows(given_x)), _absmax_rows_oracle(x), "absmax_rows")


@SIMULATED
@given(data=st.data())
def test_property_absmax_blocks(data):
    """Drawn matrices and blocks (larger than the matrix too): the largest magnitude of each tile."""
    shape = data.draw(matrix_shapes(max_size=200))
    x, given_x = data.draw(hostile_laid_out(shape))
    block, spelled = data.draw(blocks_for(shape, max_tiles=8))
    assert_floats(host(tutorial.absmax_blocks(given_x, spelled)), oracle.absmax_blocks(x, block), "absmax_blocks")


@SIMULATED
@given(data=st.data())
def test_property_quantize_per_tensor(data):
    """Any rank, dtype, layout, format; dynamic or a static scale: the oracle's codes and scale."""
    shape = data.draw(st.one_of(st.just(()), hnp.array_shapes(min_dims=1, max_dims=3, max_side=7)), label="shape")
    x, given_x = data.draw(hostile_laid_out(shape))
    fmt = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt")
    scale = data.draw(st.sampled_from([None, None, 1.0, 0.01, 2.0**-20, 3.0, 1e3, 2.0**100]), label="scale")
    q = tutorial.quantize_per_tensor(given_x, FORMATS[fmt] if data.draw(st.booleans()) else fmt, scale=scale)
    want = oracle.quantize_blocks(x, x.shape, fmt) if scale is None else oracle.quantize_static(x, scale, fmt)
    assert_quantized(q, *want, block=x.shape, fmt=fmt, x=x)


@settings(SIMULATED, max_examples=10)
@given(data=st.data())
def test_property_calibrate(data):
    """One to three batches of drawn shapes, dtypes and layouts: the percentile of their finite maxima."""
    batches, given_batches = [], []
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=9), label="shape")
        x, given_x = data.draw(hostile_laid_out(shape))
        batches.append(x)
        given_batches.append(given_x)
    percentile = data.draw(st.sampled_from([100, 99.9, 50, 37.5, 1e-3]), label="percentile")
    got = tutorial.calibrate(given_batches, percentile=percentile)
    assert isinstance(got, float)
    assert got == pytest.approx(oracle.calibrate(batches, percentile), rel=1e-12, abs=0)


@SIMULATED
@given(data=st.data())
def test_property_quantize_per_channel(data):
    """Drawn matrices, dtypes, layouts, formats, axis 0 or 1: one scale per row or column, bit for bit."""
    shape = data.draw(matrix_shapes(max_size=200))
    x, given_x = data.draw(hostile_laid_out(shape))
    fmt = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt")
    axis = data.draw(st.sampled_from([0, 1]), label="axis")
    block = (1, shape[1]) if axis == 0 else (shape[0], 1)
    assert_quantized(tutorial.quantize_per_channel(given_x, axis, fmt), *oracle.quantize_blocks(x, block, fmt),
                     block=block, fmt=fmt, x=x)


@SIMULATED
@given(data=st.data())
def test_property_quantize_blockwise(data):
    """Drawn matrices, dtypes, layouts, blocks (tiny, odd, larger than the matrix), formats, pow2 scales."""
    shape = data.draw(matrix_shapes(max_size=200))
    x, given_x = data.draw(hostile_laid_out(shape))
    block, spelled = data.draw(blocks_for(shape, max_tiles=8))
    fmt, pow2 = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt"), data.draw(st.booleans(), label="pow2")
    options = {}
    if block[0] == 1 and block[1] in (16, 32, 128) and shape[1] % block[1] == 0:
        options["scales_m_major"] = data.draw(st.booleans(), label="scales_m_major")
    # the exact encoders (the fast one rounds x * (fmax / amax): tests/test_encoders.py holds it to its own reference)
    options["encoder"] = data.draw(st.sampled_from(["exact", "software"]), label="encoder")
    q = tutorial.quantize_blockwise(given_x, spelled, fmt, pow2, **options)
    assert_quantized(q, *oracle.quantize_blocks(x, block, fmt, pow2), block=block, fmt=fmt, x=x)


@SIMULATED
@given(data=st.data())
def test_property_quantize_groups_interleaved(data):
    """Drawn rows, groups of 16 to 128, dtypes, layouts, formats, pow2: the oracle's buffer, byte for byte."""
    group = data.draw(st.sampled_from([16, 32, 64, 128]), label="group")
    groups = data.draw(st.integers(1, max(1, 256 // group)), label="groups")
    shape = (data.draw(st.integers(1, 3), label="M"), group * groups)
    x, given_x = data.draw(hostile_laid_out(shape))
    fmt, pow2 = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt"), data.draw(st.booleans(), label="pow2")
    buf = tutorial.quantize_groups_interleaved(given_x, group, fmt, pow2)
    grading.assert_array_matches(host(buf), oracle.interleave(*oracle.quantize_blocks(x, (1, group), fmt, pow2), group),
                                 what="interleaved buffer")


@HOST_ONLY
@given(data=st.data())
def test_property_split_interleaved(data):
    """Buffers the oracle interleaves from drawn codes (NaN codes too) and scales, any group: the same QTensor."""
    group = data.draw(st.sampled_from([1, 3, 4, 16, 62, 128]), label="group")
    m, groups = data.draw(st.integers(1, 4), label="M"), data.draw(st.integers(1, 3), label="groups")
    codes = data.draw(hnp.arrays(np.uint8, (m, groups * group)), label="codes")
    scales = data.draw(hnp.arrays(np.float32, (m, groups), elements=st.floats(2.0**-48, 2.0**120, width=32)),
                       label="scales")
    fmt = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt")
    buf = oracle.interleave(codes, scales, group)
    if data.draw(st.booleans(), label="on the device"):
        buf = cuda.to_device(buf)
    q = tutorial.split_interleaved(buf, group, fmt, cols=groups * group)
    assert_quantized(q, codes, scales, (1, group), fmt)


# Operand granularities for scaled_matmul: (a.block, b.block) from (M, K, N).
GRANULARITIES = {
    "per tensor": lambda m, k, n: ((m, k), (k, n)),
    "per row of a, per column of b": lambda m, k, n: ((1, k), (k, 1)),
    "1x32 with 32x32": lambda m, k, n: ((1, 32), (32, 32)),
    "1x128 with 128x128": lambda m, k, n: ((1, 128), (128, 128)),
    "2x64 with 32x3": lambda m, k, n: ((2, 64), (32, 3)),
    "odd blocks": lambda m, k, n: ((2, 3), (5, 2)),
}


@st.composite
def gemm_operand(draw, shape, row_powers, col_powers, fmt, block):
    """A QTensor (built by the oracle) of values in [-4, 4], signed zeros among them, scaled by
    2^row_power per row and 2^col_power per column: scales that vary along and across K."""
    values = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.floats(-4, 4), st.sampled_from([0.0, -0.0]))))
    x = (values * np.ldexp(1.0, row_powers)[:, None] * np.ldexp(1.0, col_powers)[None, :]).astype(np.float32)
    return qtensor(x, block, fmt)


@SIMULATED
@given(data=st.data())
def test_property_scaled_matmul(data):
    """Drawn M, N, K (odd, not multiples of 4 or 32), formats, granularities, modes and kernels, C
    poisoned: within gamma_(K+3) of the exact product (rescale, or no mode given: + 3 ceil(K /
    promote_k)), or, for promote/rescale on blocks whose K extents are not multiples of 32, a
    clear error."""
    m, n = data.draw(st.integers(1, 9), label="M"), data.draw(st.integers(1, 9), label="N")
    k = data.draw(st.sampled_from([1, 3, 17, 32, 33, 64, 65, 100, 130]), label="K")
    fmt = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt")
    granularity = data.draw(st.sampled_from(list(GRANULARITIES)), label="granularity")
    a_block, b_block = GRANULARITIES[granularity](m, k, n)
    extents = [e for e in (a_block[1], b_block[0]) if e < k]  # the K extents that split K
    constant_along_k = not extents  # epilogue is exact
    aligned = all(e % 32 == 0 and e % min(extents) == 0 for e in extents)  # promote and rescale must work
    powers = lambda size: data.draw(hnp.arrays(np.int64, size, elements=st.integers(-12, 12)))  # noqa: E731
    a = data.draw(gemm_operand((m, k), powers(m), powers(k), fmt, a_block), label="a")
    b = data.draw(gemm_operand((k, n), powers(k), powers(n), fmt, b_block), label="b")
    combos = [(None, "auto"), ("dequant", "cuda_core"), ("dequant", "auto"), ("promote", "cuda_core"),
              ("promote", "tensor_core"), ("rescale", "tensor_core"), ("rescale", "auto")]
    combos += [("epilogue", "cuda_core"), ("epilogue", "tensor_core")] if constant_along_k else []
    mode, kernel = data.draw(st.sampled_from(combos), label="mode, kernel")
    out = cuda.to_device(np.full((m, n), np.nan, np.float32)) if data.draw(st.booleans(), label="out") else None
    try:
        got = tutorial.scaled_matmul(a, b, mode, out=out, kernel=kernel)
    except (ValueError, TypeError):
        if aligned or mode not in ("promote", "rescale"):
            raise
        clear_error(lambda: tutorial.scaled_matmul(a, b, mode, out=out, kernel=kernel), "scaled_matmul", "mode|block")
        return
    if out is not None:
        assert got is out, "scaled_matmul did not return its out"
    exact = [oracle.dequantized(q.codes, q.scales, q.block, q.fmt) for q in (a, b)]
    assert oracle.matmul_violations(host(got), *exact, roundings=roundings(mode, k, a, b),
                                    relative=wgmma_relative(mode, kernel, a, b)) == []


@SIMULATED
@given(data=st.data())
def test_property_matmul_float32(data):
    """Drawn shapes, float16/32/64 operands in every layout, each kernel: within gamma_(K+2) of the
    exact product of the inputs (two roundings to float32 and the product's, then K - 1 sums).
    A float16 or float64 device array may instead be a clear error naming it."""
    m, n = data.draw(st.integers(1, 9), label="M"), data.draw(st.integers(1, 9), label="N")
    k = data.draw(st.sampled_from([1, 2, 3, 5, 16, 17, 33]), label="K")
    operands = []
    for shape in ((m, k), (k, n)):
        dtype = data.draw(st.sampled_from([np.float16, np.float32, np.float64]), label="dtype")
        values = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(
            st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3), st.sampled_from([0.0, -0.0]))))  # no underflow
        x = values.astype(dtype)
        operands.append((x, laid_out(x, data.draw(st.sampled_from(LAYOUTS), label="layout"))))
    kernel = data.draw(st.sampled_from(["naive", "tiled", "blocked"]), label="kernel")
    call = lambda: tutorial.matmul_float32(operands[0][1], operands[1][1], kernel)  # noqa: E731
    try:
        got = host(call())
    except (ValueError, TypeError):  # the spec names float16/32/64 arrays, but not device arrays other than float32
        if not any(hasattr(given_x, "copy_to_host") and x.dtype != np.float32 for x, given_x in operands):
            raise
        clear_error(call, "matmul_float32", "a|b")
        return
    assert got.shape == (m, n) and got.dtype == np.float32
    exact = [oracle.exact(x) for x, _ in operands]
    assert oracle.matmul_violations(got, *exact, roundings=k + 2) == []


@HOST_ONLY
@given(data=st.data())
def test_property_qtensor(data):
    """Drawn ranks 0 to 3 (empty dimensions too), blocks in every spelling, format names: accepted and
    normalized when scales fit; an error naming scales when their shape is off by one."""
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), label="shape")
    block = tuple(data.draw(st.integers(1, 8), label="block") for _ in shape)
    grid = tuple(-(-n // b) for n, b in zip(shape, block))
    spelled = data.draw(st.sampled_from([block, list(block), tuple(np.int64(b) for b in block)]), label="spelling")
    name = data.draw(st.sampled_from(["e4m3", "E4M3", "float8_e4m3fn", "e5m2", "E5M2", "float8_e5m2"]), label="fmt")
    codes = np.zeros(shape, np.uint8)
    q = tutorial.QTensor(codes, np.ones(grid, np.float32), name, spelled)
    assert q.fmt is (fp8.E4M3 if "4" in name else fp8.E5M2)
    assert q.block == block and all(type(b) is int for b in q.block), f"block stored as {q.block!r}"
    if shape:
        axis = data.draw(st.integers(0, len(shape) - 1), label="axis off by one")
        wrong = tuple(g + (1 if i == axis else 0) for i, g in enumerate(grid))
        clear_error(lambda: tutorial.QTensor(codes, np.ones(wrong, np.float32), name, spelled), "QTensor", "scales")


@settings(HOST_ONLY, max_examples=100)
@given(data=st.data())
def test_property_fp8_encode_and_decode(data):
    """Drawn float16/32/64 and bfloat16 arrays: encode gives the correctly rounded code of each value
    (rounded once, from its own dtype); decode gives each code's value (ml_dtypes')."""
    dtype = data.draw(st.sampled_from(list(DTYPES)), label="dtype")
    width = {"float16": 16, "bfloat16": 32, "float32": 32, "float64": 64}[dtype]
    values = data.draw(hnp.arrays(np.float64, data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=20)),
                                  elements=st.one_of(st.floats(width=width), st.sampled_from(SPECIALS),
                                                     TIES["e4m3"], TIES["e5m2"])), label="x")
    with np.errstate(over="ignore"):
        x = values.astype(DTYPES[dtype])
    fmt = data.draw(st.sampled_from(["e4m3", "e5m2"]), label="fmt")
    grading.assert_array_matches(fp8.encode(x, fmt), oracle.encode(x, fmt), what="codes", inputs=x)
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=20), label="codes shape")
    codes = data.draw(hnp.arrays(np.uint8, shape), label="codes")
    grading.assert_array_matches(fp8.decode(codes, fmt), oracle.decode(codes, fmt).astype(np.float32), what="values")
