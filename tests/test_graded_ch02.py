"""Chapter 02's graded cases: pack4 and the vectorized per-tensor kernel (per_tensor_kernel_vec4,
which quantize_per_tensor runs on float32 input a multiple of 4 long).

Each case draws its inputs, names the harness (tests/harness_ch02.py) that runs the learner's
code on them, and judges the outputs against the numpy reference bit for bit, codes and scales
(see tutorial.course.cases). The judges here are shared with chapter 03's and the hidden cases.
"""

import numpy as np
import pytest

from tutorial import fp8
from tutorial.course import cases, grading
from tutorial.course.cases import Case, output
from tutorial.qtensor import QTensor, scale_from_amax
from tutorial.reference import per_tensor_reference

from test_per_tensor import hostile

pytestmark = pytest.mark.chapter("02")
KERNEL = "per_tensor_kernel_vec4"


# -- inputs: numbers only --------------------------------------------------------------------------


def fmt_index(name):
    """A format as a harness takes it: its index in tutorial.fp8.FORMATS."""
    return list(fp8.FORMATS).index(name)


def fmt_name(inputs):
    return list(fp8.FORMATS)[int(inputs["fmt"])]


def bfloat16_bits(x):
    """A bfloat16 array as a harness takes it: its uint16 bit patterns."""
    return np.ascontiguousarray(x).view(np.uint16)


def input_values(inputs):
    """The values the harness quantized, as float32 where they came as bfloat16 bits (exact)."""
    if "bits" in inputs:
        return (inputs["bits"].astype(np.uint32) << 16).view(np.float32)
    return inputs["x"]


def static_scale(inputs):
    return float(inputs["scale"]) if "scale" in inputs else None


# -- judges ----------------------------------------------------------------------------------------


def output_format(outputs):
    i = int(output(outputs, "fmt"))
    formats = list(fp8.FORMATS.values())
    return formats[i] if 0 <= i < len(formats) else None


def quantized(outputs):
    """The learner's QTensor again, from the harness's outputs (to dequantize it with the library)."""
    block = tuple(int(b) for b in output(outputs, "block"))
    return QTensor(output(outputs, "codes"), output(outputs, "scales"), output_format(outputs), block)


def assert_outputs_same(outputs, ref, x=None):
    """The QTensor the harness returned is `ref`: block, format, scales and codes (codes named
    with their input `x`)."""
    block = tuple(int(b) for b in output(outputs, "block"))
    assert block == ref.block, f"block {block}, expected {ref.block}"
    fmt = output_format(outputs)
    assert fmt is ref.fmt, f"format {getattr(fmt, 'name', 'unknown')}, expected {ref.fmt.name}"
    grading.assert_array_matches(output(outputs, "scales"), ref.scales, what="scales")
    grading.assert_array_matches(output(outputs, "codes"), ref.codes, what="codes",
                                 inputs=None if x is None else np.asarray(x).astype(np.float32))


def matches_reference(inputs, outputs):
    """quantize_per_tensor's codes and scale are the reference's, for the inputs' format and scale."""
    x = input_values(inputs)
    assert_outputs_same(outputs, per_tensor_reference(x, fmt_name(inputs), scale=static_scale(inputs)), x)


def packed_words(inputs, outputs):
    # what a little-endian uint32 view of the codes holds: the packing must give exactly that
    grading.assert_array_matches(output(outputs), inputs["codes"].view("<u4"), what="packed words")


def saturates_beyond_the_static_scale(inputs, outputs):
    matches_reference(inputs, outputs)
    x, scale = inputs["x"], static_scale(inputs)
    scales = output(outputs, "scales")
    assert scales[0] == np.float32(scale), f"scale {scales[0]!r}, expected {scale}"
    assert (quantized(outputs).dequantize()[np.isfinite(x)] <= 448 * np.float32(scale)).all(), \
        "values beyond 448 * scale"


def exact_zeros(inputs, outputs):
    x = inputs["x"]
    grading.assert_array_matches(output(outputs, "codes"), np.zeros(x.shape, np.uint8), inputs=x, what="codes")
    scales = output(outputs, "scales")
    assert scales[0, 0] == scale_from_amax(0.0, "e4m3"), f"scale {scales[0, 0]!r}"
    assert (quantized(outputs).dequantize() == 0).all()


def nan_stays_inf_saturates(inputs, outputs):
    back = quantized(outputs).dequantize()
    grading.assert_array_matches(back, np.float32([[1.0, np.nan, 2.0, -2.0]]), inputs=inputs["x"],
                                 what="dequantized value")


def stays_on_the_device(inputs, outputs):
    assert output(outputs, "codes_on_device") and output(outputs, "scales_on_device"), "a host QTensor came back"
    matches_reference(inputs, outputs)


# -- pack4 -----------------------------------------------------------------------------------------


PACK4 = [
    Case("pack4", "two words of four codes each, sign bits and 0xff among them: c0 lands in the low byte",
         lambda rng: {"codes": np.array([0x01, 0x80, 0x7F, 0xFE, 0xFF, 0x00, 0x12, 0xA5], np.uint8),
                      "blocks": 1, "threads": 32},
         "harness_ch02:pack4_words", packed_words),
]


# -- per_tensor_kernel_vec4 ------------------------------------------------------------------------


def dynamic(shape, fmt):
    def make(rng):
        return {"x": hostile(shape, rng), "fmt": fmt_index(fmt)}
    return make


def static(rng):
    return {"x": hostile((500,), rng), "fmt": fmt_index("e4m3"), "scale": 0.01}


def nan_and_inf(rng):
    return {"x": np.array([[1.0, np.nan, np.inf, -2.0]], np.float32), "fmt": fmt_index("e4m3")}


SHAPES = [((1000,), "1000 values"), ((36, 300), "36x300"), ((4,), "one word")]

PER_TENSOR = [
    *(Case(KERNEL, f"{what}, {fmt}: normal values with outliers, NaN, -inf, signed zeros and an underflow: "
           "codes and scale", dynamic(shape, fmt), "harness_ch02:quantize", matches_reference, seed=sum(shape))
      for shape, what in SHAPES for fmt in ("e4m3", "e5m2")),
    Case(KERNEL, "a static scale of 0.01, far too small for these values: used as given, larger values saturate",
         static, "harness_ch02:quantize_static", saturates_beyond_the_static_scale, seed=4),
    Case(KERNEL, "an all-zero tensor: code 0 everywhere, and the scale of the smallest amax (no division by 0)",
         lambda rng: {"x": np.zeros((8, 8), np.float32), "fmt": fmt_index("e4m3")}, "harness_ch02:quantize",
         exact_zeros),
    Case(KERNEL, "[1, nan, inf, -2]: NaN stays NaN, inf saturates to the amax of the finite values (2)",
         nan_and_inf, "harness_ch02:quantize", nan_stays_inf_saturates),
    Case(KERNEL, "a device array in gives codes and scales that stay on the device",
         lambda rng: {"x": hostile((64, 64), rng), "fmt": fmt_index("e4m3")}, "harness_ch02:quantize_on_device",
         stays_on_the_device, seed=9),
]

CASES = PACK4 + PER_TENSOR


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """What the case's input shows is its id (tutorial.course.cases)."""
    cases.check(case)
