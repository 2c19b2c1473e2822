"""Chapter 05: the GEMM kernels against float64 products, within float32's rounding bound."""

import numpy as np
import pytest
from numba import cuda

from tutorial import accuracy, grading
from tutorial.qtensor import QTensor
from tutorial.reference import blockwise_reference, scaled_matmul_reference

gemm = grading.load("tutorial.gemm")
pytestmark = pytest.mark.chapter("05")


def float32_bound(a, b):
    """The worst case of float32 accumulation: |C - exact| <= gamma_(K+3) (|A| @ |B|), with
    gamma_n = n u / (1 - n u), u = 2^-24 (K roundings of the running sum, a few of the products
    and scales). No more is allowed: a wrong index or a missed term is far larger."""
    k = a.shape[1]
    u = 2.0 ** -24
    gamma = (k + 3) * u / (1 - (k + 3) * u)
    return gamma * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))


def assert_within_bound(c, exact, bound, what):
    c = np.asarray(c, np.float64)
    over = np.abs(c - exact) > bound
    assert not over.any(), (f"{what}: {over.sum()} of {c.size} elements beyond float32's rounding bound; "
                            f"the first at {tuple(np.argwhere(over)[0])}: got {c[over][0]!r}, exact {exact[over][0]!r}")


def dequantized(q):
    from tutorial import fp8
    return fp8.decode(q.codes, q.fmt).astype(np.float64) * q.scale_per_element()


def operands(m, k, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[:, 3] *= 50  # an outlier channel along K
    return a, (rng.standard_normal((k, n)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("kernel", ["naive", pytest.param("tiled", marks=pytest.mark.graded("tiled_kernel")),
                                    "blocked"])
def test_float32_kernels_are_within_the_rounding_bound(kernel):
    a, b = operands(37, 70, 45, seed=1)  # no dimension a multiple of any tile
    c = gemm.matmul_float32(a, b, kernel)
    assert c.shape == (37, 45)
    assert_within_bound(c, a.astype(np.float64) @ b, float32_bound(a, b), f"matmul_float32 {kernel}")


GRANULARITIES = {
    "per-tensor": ((33, 300), (300, 47)),
    "per-row a, per-column b": ((1, 300), (300, 1)),
    "1x128 a, 128x128 b": ((1, 128), (128, 128)),
    "1x64 a, 64x32 b": ((1, 64), (64, 32)),
}
DEQUANTIZE_ON_LOAD = {"2x36 a, 24x5 b": ((2, 36), (24, 5))}  # 36 is no multiple of 24: no common K-block


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.graded("blocked_kernel")) for n in GRANULARITIES]
                         + list(DEQUANTIZE_ON_LOAD))
def test_scaled_matmul_matches_the_float64_formula(name):
    a, b = operands(33, 300, 47, seed=2)
    block_a, block_b = {**GRANULARITIES, **DEQUANTIZE_ON_LOAD}[name]
    qa, qb = blockwise_reference(a, block_a), blockwise_reference(b, block_b)
    c = gemm.scaled_matmul(qa, qb)
    assert_within_bound(c, scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb)), name)


@pytest.mark.graded("blocked_kernel")
def test_odd_shapes_129x257x300_with_deepgemm_scales():
    a, b = operands(129, 300, 257, seed=3)
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    for mode in ("promote", "dequant"):
        c = gemm.scaled_matmul(qa, qb, mode)
        assert_within_bound(c, scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb)), mode)


def test_epilogue_scaling_is_exact_only_for_scales_constant_along_k():
    a, b = operands(20, 256, 24, seed=4)
    rows, cols = blockwise_reference(a, (1, 256)), blockwise_reference(b, (256, 1))
    c = gemm.scaled_matmul(rows, cols, "epilogue")
    assert_within_bound(c, scaled_matmul_reference(rows, cols),
                        float32_bound(dequantized(rows), dequantized(cols)), "epilogue, per-row/per-column")
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    exact = scaled_matmul_reference(qa, qb)
    wrong = gemm.scaled_matmul(qa, qb, "epilogue")
    right = gemm.scaled_matmul(qa, qb, "promote")
    assert accuracy.gemm_errors(right, exact)["rel_fro"] < 1e-5
    assert accuracy.gemm_errors(wrong, exact)["rel_fro"] > 1e-2  # the second K-block used the first's scales


def test_device_qtensors_give_a_device_result():
    a, b = operands(16, 128, 16, seed=5)
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    dev = [QTensor(cuda.to_device(q.codes), cuda.to_device(q.scales), q.fmt, q.block) for q in (qa, qb)]
    c = gemm.scaled_matmul(*dev)
    assert hasattr(c, "copy_to_host")
    assert_within_bound(c.copy_to_host(), scaled_matmul_reference(qa, qb),
                        float32_bound(dequantized(qa), dequantized(qb)), "device operands")


def test_calc_diff_is_zero_for_equal_arrays_and_grows_with_the_error():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    assert accuracy.calc_diff(x, x) == 0.0
    assert 0 < accuracy.calc_diff(x, x * 1.01) < accuracy.calc_diff(x, x * 1.1)
    errors = accuracy.gemm_errors(x * 1.01, x)
    assert errors["rel_fro"] == pytest.approx(0.01)


@pytest.mark.parametrize("call, message", [
    (lambda: gemm.scaled_matmul(blockwise_reference(np.ones((4, 8)), (1, 8)), blockwise_reference(np.ones((6, 4)), (6, 4))),
     "inner dimensions differ: a is 4x8, b is 6x4"),
    (lambda: gemm.scaled_matmul(np.ones((4, 4)), blockwise_reference(np.ones((4, 4)), (4, 4))), "must be QTensors"),
    (lambda: gemm.scaled_matmul(blockwise_reference(np.ones((4, 96)), (1, 48)),
                                blockwise_reference(np.ones((96, 4)), (32, 4)), "promote"), "promote"),
    (lambda: gemm.scaled_matmul(blockwise_reference(np.ones((4, 4)), (4, 4)),
                                blockwise_reference(np.ones((4, 4)), (4, 4)), "fast"), "mode must be"),
    (lambda: gemm.matmul_float32(np.ones((3, 4)), np.ones((5, 2))), "inner dimensions differ"),
])
def test_bad_input_is_a_value_error_naming_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()
