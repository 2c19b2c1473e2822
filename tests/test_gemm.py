"""Chapter 05: the GEMM kernels against float64 products, within float32's rounding bound."""

import numpy as np
import pytest
from numba import cuda

from tutorial import accuracy, fp8
from tutorial.course import grading
from tutorial.gemm import mma
from tutorial.qtensor import QTensor
from tutorial.reference import blockwise_reference, scaled_matmul_reference

from tutorial import gemm  # noqa: E402  (chapter 05's exercise files are gemm.cuda_core and gemm.mma)
pytestmark = pytest.mark.chapter("05")
mma_e4m3 = mma.mma_fp8("e4m3", "e4m3")


@cuda.jit
def one_mma(a, b, c, d):
    """One warp, one instruction: lane l brings a[l], b[l], c[l] and writes its d to d[l]."""
    lane = cuda.threadIdx.x
    d[lane, 0], d[lane, 1], d[lane, 2], d[lane, 3] = mma_e4m3(a[lane, 0], a[lane, 1], a[lane, 2], a[lane, 3],
                                                              b[lane, 0], b[lane, 1],
                                                              c[lane, 0], c[lane, 1], c[lane, 2], c[lane, 3])


def float32_bound(a, b, extra=0):
    """The worst case of float32 accumulation: |C - exact| <= gamma_(K+3) (|A| @ |B|), with
    gamma_n = n u / (1 - n u), u = 2^-24 (K roundings of the running sum, a few of the products
    and scales; `extra` more where an algorithm rounds more). No more is allowed: a wrong index
    or a missed term is far larger."""
    k = a.shape[1] + extra
    u = 2.0 ** -24
    gamma = (k + 3) * u / (1 - (k + 3) * u)
    return gamma * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))


def assert_within_bound(c, exact, bound, what):
    c = np.asarray(c, np.float64)
    over = np.abs(c - exact) > bound
    where = ", ".join(str(int(i)) for i in np.argwhere(over)[0]) if over.any() else ""
    assert not over.any(), (f"{what}: {over.sum()} of {c.size} elements beyond float32's rounding bound; "
                            f"the first at [{where}]: got {c[over][0]!r}, exact {exact[over][0]!r}")


def dequantized(q):
    from tutorial import fp8
    return fp8.decode(q.codes, q.fmt).astype(np.float64) * q.scale_per_element()


def operands(m, k, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[:, 3] *= 50  # an outlier channel along K
    return a, (rng.standard_normal((k, n)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("kernel", ["naive", "blocked"])  # "tiled": a graded case, tests/test_graded_ch05.py
def test_float32_kernels_are_within_the_rounding_bound(kernel):
    """37x70 @ 70x45, no dimension a multiple of a tile: partial tiles on every edge."""
    a, b = operands(37, 70, 45, seed=1)  # no dimension a multiple of any tile
    c = gemm.matmul_float32(a, b, kernel)
    assert c.shape == (37, 45)
    assert_within_bound(c, a.astype(np.float64) @ b, float32_bound(a, b), f"matmul_float32 {kernel}")


# The other granularities are graded cases (tests/test_graded_ch05.py).
DEQUANTIZE_ON_LOAD = {"2x36 a, 24x5 b": ((2, 36), (24, 5))}  # 36 is no multiple of 24: no common K-block


@pytest.mark.parametrize("name", list(DEQUANTIZE_ON_LOAD))
def test_scaled_matmul_matches_the_float64_formula(name):
    """33x300 @ 300x47 FP8 operands with an outlier channel, scale blocks with no common K-block."""
    a, b = operands(33, 300, 47, seed=2)
    block_a, block_b = DEQUANTIZE_ON_LOAD[name]
    qa, qb = blockwise_reference(a, block_a), blockwise_reference(b, block_b)
    c = gemm.scaled_matmul(qa, qb, kernel="cuda_core")
    assert_within_bound(c, scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb)), name)


def test_epilogue_scaling_is_exact_only_for_scales_constant_along_k():
    a, b = operands(20, 256, 24, seed=4)
    rows, cols = blockwise_reference(a, (1, 256)), blockwise_reference(b, (256, 1))
    c = gemm.scaled_matmul(rows, cols, "epilogue", kernel="cuda_core")
    assert_within_bound(c, scaled_matmul_reference(rows, cols),
                        float32_bound(dequantized(rows), dequantized(cols)), "epilogue, per-row/per-column")
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    exact = scaled_matmul_reference(qa, qb)
    with pytest.warns(UserWarning, match="vary along K: the result is not the product"):
        wrong = gemm.scaled_matmul(qa, qb, "epilogue", kernel="cuda_core")
    right = gemm.scaled_matmul(qa, qb, "promote", kernel="cuda_core")
    assert accuracy.gemm_errors(right, exact)["rel_fro"] < 1e-5
    assert accuracy.gemm_errors(wrong, exact)["rel_fro"] > 1e-2  # the second K-block used the first's scales


def test_device_qtensors_give_a_device_result():
    a, b = operands(16, 128, 16, seed=5)
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    dev = [QTensor(cuda.to_device(q.codes), cuda.to_device(q.scales), q.fmt, q.block) for q in (qa, qb)]
    c = gemm.scaled_matmul(*dev, kernel="cuda_core")
    assert hasattr(c, "copy_to_host")
    assert_within_bound(c.copy_to_host(), scaled_matmul_reference(qa, qb),
                        float32_bound(dequantized(qa), dequantized(qb)), "device operands")


# -- tensor cores --------------------------------------------------------------------------------

small_integers = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4, 0.5, -0.5], np.float32)


def test_one_mma_instruction_puts_every_element_where_the_fragment_maps_say():
    """Codes of small integers: every sum is exact in float32 (and in the tensor cores), so the
    instruction must match the map-built reference to the bit; a lane or byte out of place
    changes some element."""
    rng = np.random.default_rng(6)
    codes = fp8.encode(small_integers)
    a = rng.choice(codes, (32, 16)).astype(np.uint8).view(np.uint32).reshape(32, 4)
    b = rng.choice(codes, (32, 8)).astype(np.uint8).view(np.uint32).reshape(32, 2)
    c = rng.integers(-8, 8, (32, 4)).astype(np.float32)
    d = np.full((32, 4), np.nan, np.float32)
    one_mma[1, 32](a, b, c, d)
    want = mma.mma_reference(a, b, c)
    expected = np.array([[want[r, n] for r, n in mma.fragment_c(lane)] for lane in range(32)], np.float32)
    grading.assert_array_matches(d, expected, what="mma_fp8 e4m3 x e4m3")


def test_fragment_maps_cover_each_matrix_once():
    """The 32 lanes' registers hold every element of A, B and C exactly once."""
    a, b, c = np.zeros((16, 32), int), np.zeros((32, 8), int), np.zeros((16, 8), int)
    for lane in range(32):
        for r, k in mma.fragment_a(lane):
            a[r, k:k + 4] += 1
        for k, n in mma.fragment_b(lane):
            b[k:k + 4, n] += 1
        for r, n in mma.fragment_c(lane):
            c[r, n] += 1
    assert (a == 1).all() and (b == 1).all() and (c == 1).all()


TENSOR_CORE_CASES = {  # (m, k, n), block of a, block of b: odd shapes, every granularity
    "1x128 a, 128x128 b": ((33, 300, 21), (1, 128), (128, 128)),
    "1x64 a, 64x32 b": ((19, 200, 40), (1, 64), (64, 32)),
    "1x32 a, 96x16 b": ((18, 160, 20), (1, 32), (96, 16)),  # K-blocks of 32: several in a staged tile
    "1x96 a, 96x8 b": ((20, 200, 24), (1, 96), (96, 8)),  # K-blocks that straddle staged tiles
    "per-row a, per-column b": ((17, 96, 13), (1, 96), (96, 1)),
    "per-tensor": ((16, 130, 9), (16, 130), (130, 9)),
}


def rescale_roundings(qa, qb):
    """"rescale" rounds 3 more times per K-block (the ratio of two scales, row ratio times
    column ratio, the accumulator times that): the bound grows by 3 per K-block."""
    return 3 * -(-qa.shape[1] // gemm.promotion_k(qa, qb, gemm.MMA_TILING))


@pytest.mark.parametrize("mode", ["promote", "rescale"])
@pytest.mark.parametrize("name", list(TENSOR_CORE_CASES))
def test_tensor_core_kernel_is_within_the_float32_bound(name, mode):
    """The tensor cores multiply FP8 codes exactly and add in float32 (on an H100, FP8 mma.sync
    runs as FP16 HMMA with float32 accumulation: every FP8 value is an FP16 one), and partial
    sums go to float32 accumulators each K-block: the same bound as the CUDA-core kernels."""
    (m, k, n), block_a, block_b = TENSOR_CORE_CASES[name]
    a, b = operands(m, k, n, seed=7)
    qa, qb = blockwise_reference(a, block_a), blockwise_reference(b, block_b)
    if name == "per-row a, per-column b" and mode == "promote":
        mode = "epilogue"
    c = gemm.scaled_matmul(qa, qb, mode, kernel="tensor_core")
    assert c.shape == (m, n)
    extra = rescale_roundings(qa, qb) if mode == "rescale" else 0
    assert_within_bound(c, scaled_matmul_reference(qa, qb),
                        float32_bound(dequantized(qa), dequantized(qb), extra), f"{name}, {mode}")


def launch_mma_kernel(qa, qb, rescale, unsafe=None):
    """One launch of the tensor-core kernel, rescaling or promoting (then computing only the
    blocks of C that `unsafe` flags), into a C poisoned with NaN."""
    tiling = gemm.MMA_TILING
    kb = gemm.promotion_k(qa, qb, tiling)
    grid = (-(-qb.shape[1] // tiling.bn), -(-qa.shape[0] // tiling.bm))
    c = cuda.to_device(np.full((qa.shape[0], qb.shape[1]), np.nan, np.float32))
    plan, flags = gemm.rescale_plan(qa, qb, kb)
    kernel = gemm.mma_kernel(gemm.MmaVariant(tiling, qa.fmt, qb.fmt, "rescale" if rescale else "promote", kb))
    kernel[grid, tiling.threads](gemm.operands.code_words(qa.codes), cuda.to_device(qa.scales),
                                 cuda.to_device(np.array(qa.block)), gemm.operands.code_words(qb.codes),
                                 cuda.to_device(qb.scales), cuda.to_device(np.array(qb.block)),
                                 qa.shape[1], c, plan, flags if unsafe is None else cuda.to_device(unsafe))
    return c.copy_to_host()


def far_apart_operands(scales_of_row_0):
    """A (64, 256) in 1x128 groups, B (256, 32) in 128x128 tiles; row 0 of A gets the scales
    given for its two K-blocks."""
    a, b = operands(64, 256, 32, seed=9)
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    scales = qa.scales.copy()
    scales[0] = scales_of_row_0
    return QTensor(qa.codes, scales, qa.fmt, qa.block), qb


SPANS = {"2^166 apart": [1e25, 1e-25], "2^-166 apart": [1e-25, 1e25], "a zero scale": [1.0, 0.0],
         "a negative scale": [1.0, -2.0]}


@pytest.mark.filterwarnings("ignore:.*encountered in scalar:RuntimeWarning")  # the simulator's numpy arithmetic
@pytest.mark.parametrize("name", list(SPANS))
def test_rescaling_flags_rows_it_cannot_rescale_and_promotion_redoes_them(name):
    """Scales too far apart along K (or zero, or negative): the rescaled accumulators would
    overflow or lose their digits. The plan flags that row of A, and only it; the other rows
    come out right from the rescaling kernel; scaled_matmul's promoting launch redoes the
    blocks of C that hold row 0."""
    qa, qb = far_apart_operands(SPANS[name])
    exact = scaled_matmul_reference(qa, qb)
    bound = float32_bound(dequantized(qa), dequantized(qb), rescale_roundings(qa, qb))
    unsafe = gemm.rescale_plan(qa, qb)[1].copy_to_host()
    assert unsafe.tolist() == [1] + [0] * (64 + 32 - 1)
    c = launch_mma_kernel(qa, qb, rescale=True)
    assert_within_bound(c[1:], exact[1:], bound[1:], f"{name}: the safe rows")
    assert_within_bound(gemm.scaled_matmul(qa, qb, "rescale"), exact, bound, f"{name}: after the redo")


@pytest.mark.parametrize("flagged", ["row 0", "the last column"])
def test_the_redo_computes_only_blocks_with_an_unsafe_row_or_column(flagged):
    qa, qb = far_apart_operands([1.0, 2.0])
    unsafe = np.zeros(64 + 32, np.int32)
    unsafe[0 if flagged == "row 0" else -1] = 1
    c = launch_mma_kernel(qa, qb, rescale=False, unsafe=unsafe)
    tiling = gemm.MMA_TILING
    redone = np.zeros(c.shape, bool)
    if flagged == "row 0":
        redone[:tiling.bm] = True
    else:
        redone[:, (31 // tiling.bn) * tiling.bn:] = True
    assert np.isnan(c[~redone]).all()  # untouched (none, if one block covers all of C)
    exact, bound = scaled_matmul_reference(qa, qb), float32_bound(dequantized(qa), dequantized(qb))
    assert_within_bound(c[redone], exact[redone], bound[redone], "redone blocks")


def test_rescaling_flags_nothing_for_ordinary_scales():
    """Quantized data, scales a few binades apart: every block stays on the fast path."""
    qa, qb = far_apart_operands([1e-3, 1e3])
    assert not gemm.rescale_plan(qa, qb)[1].copy_to_host().any()
    assert_within_bound(launch_mma_kernel(qa, qb, rescale=True), scaled_matmul_reference(qa, qb),
                        float32_bound(dequantized(qa), dequantized(qb), rescale_roundings(qa, qb)), "rescaled")


def test_tensor_core_epilogue_scaling_is_wrong_for_scales_that_vary_along_k():
    a, b = operands(16, 256, 16, seed=8)
    qa, qb = blockwise_reference(a, (1, 128)), blockwise_reference(b, (128, 128))
    exact = scaled_matmul_reference(qa, qb)
    right = gemm.scaled_matmul(qa, qb, "promote", kernel="tensor_core")
    with pytest.warns(UserWarning, match="vary along K"):
        wrong = gemm.scaled_matmul(qa, qb, "epilogue", kernel="tensor_core")
    assert accuracy.gemm_errors(right, exact)["rel_fro"] < 1e-5
    assert accuracy.gemm_errors(wrong, exact)["rel_fro"] > 1e-2


def test_tensor_cores_do_not_dequantize_on_load():
    qa = blockwise_reference(np.ones((4, 36)), (2, 36))
    qb = blockwise_reference(np.ones((36, 4)), (24, 5))
    with pytest.raises(ValueError, match="dequant"):
        gemm.scaled_matmul(qa, qb, "dequant", kernel="tensor_core")


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
    (lambda: gemm.scaled_matmul(blockwise_reference(np.ones((4, 4)), (4, 4)),
                                blockwise_reference(np.ones((4, 4)), (4, 4)), kernel="wmma"), "kernel must be"),
    (lambda: gemm.scaled_matmul(blockwise_reference(np.ones((4, 4)), (4, 4)), blockwise_reference(np.ones((4, 4)), (4, 4)),
                                kernel="tensor_core", tiling=gemm.TILING), "does not take a Tiling"),
])
def test_bad_input_is_an_error_naming_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
