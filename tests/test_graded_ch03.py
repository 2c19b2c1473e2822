"""Chapter 03's graded cases: the per-row kernel (per_row_kernel_vec4, which
quantize_per_channel(x, 0) runs on float32 rows a multiple of 4 long).

Each case draws its inputs, names the harness (tests/harness_ch03.py) that runs the learner's
code on them, and judges the outputs against the numpy reference bit for bit, codes and scales
(see tutorial.course.cases; the judges build on chapter 02's).
"""

import pytest

from tutorial.course import cases
from tutorial.course.cases import Case, output
from tutorial.reference import per_channel_reference

from test_graded_ch02 import assert_outputs_same, fmt_index, fmt_name, input_values
from test_per_channel import with_zero_row
from test_per_tensor import hostile

pytestmark = pytest.mark.chapter("03")
KERNEL = "per_row_kernel_vec4"


def matches_reference(inputs, outputs):
    """quantize_per_channel's codes and scales are the reference's, for the inputs' axis and format."""
    x = input_values(inputs)
    assert_outputs_same(outputs, per_channel_reference(x, int(inputs["axis"]), fmt_name(inputs)), x)


def stays_on_the_device(inputs, outputs):
    assert output(outputs, "codes_on_device"), "a host QTensor came back"
    matches_reference(inputs, outputs)


def rows(shape, fmt):
    def make(rng):
        return {"x": with_zero_row(hostile(shape, rng)), "axis": 0, "fmt": fmt_index(fmt)}
    return make


SHAPES = [((37, 300), "37x300"), ((5, 8), "rows of two words"), ((40, 4), "rows of one word"),
          ((3, 1028), "rows longer than a block's trip")]

CASES = [
    *(Case(KERNEL, f"{what}, {fmt}: rows with outliers, NaN, -inf and signed zeros, and one all-zero row (row 2): "
           "codes and scales", rows(shape, fmt), "harness_ch03:quantize", matches_reference, seed=shape[0])
      for shape, what in SHAPES for fmt in ("e4m3", "e5m2")),
    Case(KERNEL, "a device array in gives codes and scales that stay on the device",
         lambda rng: {"x": hostile((16, 64), rng), "axis": 0, "fmt": fmt_index("e4m3")},
         "harness_ch03:quantize_on_device", stays_on_the_device, seed=9),
]


@pytest.mark.parametrize("case", cases.params(CASES))
def test_graded(case):
    """What the case's input shows is its id (tutorial.course.cases)."""
    cases.check(case)
