"""Chapter 06, first step: Hopper's warpgroup MMA (tutorial.gemm.wgmma) and the scaled GEMM built
on it (tutorial.gemm.warpgroup, `scaled_matmul(kernel="wgmma")`). On the simulator the
instruction is emulated from shared memory through its descriptors; on an H100 / H200 it is
the instruction. Small-integer codes and power-of-two scales make every product and sum
exact, so both must match the float64 reference bit for bit."""

import functools

import numpy as np
import pytest

from tutorial import fp8
from tutorial.gemm import scaled_matmul
from tutorial.gemm import wgmma as wg
from tutorial.qtensor import QTensor
from tutorial.runtime.device import ON_SIMULATOR, warpgroup_mma_available

needs_wgmma = pytest.mark.skipif(not (ON_SIMULATOR or warpgroup_mma_available()),
                                 reason="wgmma needs a GPU of compute capability 9.0 (or the simulator)")


@functools.cache
def table():
    """Every E4M3 code's value. (Not at import: the grader imports this file with a chapter's
    stubs in place, and chapter 00's decoder may be one.)"""
    return fp8.decode(np.arange(256, dtype=np.uint8), "e4m3")


def small_int_codes(rng, shape, bound=4):
    code_of = {int(v): c for c, v in enumerate(table()) if np.isfinite(v) and v == int(v) and abs(v) <= bound}
    return np.vectorize(code_of.__getitem__)(rng.integers(-bound, bound + 1, shape)).astype(np.uint8)


def test_a_descriptor_holds_its_fields_and_refuses_what_it_cannot_hold():
    d = wg.descriptor(0x4A30, 128, 1024, 1)
    assert wg.descriptor_fields(d) == {"address": 0x4A30, "lbo": 128, "sbo": 1024, "swizzle": 1}
    assert d & 0x3FFF == 0x4A30 >> 4 and d >> 16 & 0x3FFF == 8 and d >> 32 & 0x3FFF == 64 and d >> 62 == 1
    with pytest.raises(ValueError, match="lbo must be a multiple of 16"):
        wg.descriptor(0, 100, 256)
    with pytest.raises(ValueError, match="swizzle"):
        wg.descriptor(0, 128, 256, 4)


def test_the_interleaved_layout_places_every_code_of_a_tile_once():
    rows, k = np.meshgrid(np.arange(64), np.arange(32), indexing="ij")
    offsets = wg.interleaved_offset(rows, k, 128, 256)
    assert sorted(offsets.ravel()) == list(range(64 * 32))
    assert offsets[9, 17] == 1 * 256 + 1 * 128 + 1 * 16 + 1  # row group 1, K core matrix 1, row 1, byte 1


@pytest.mark.parametrize("n", [8, 64, 256])
def test_the_fragment_of_d_covers_the_tile_once(n):
    places = [p for t in range(wg.WARPGROUP) for p in wg.fragment_d(t, n)]
    assert len(places) == len(set(places)) == 64 * n
    assert wg.fragment_d(37, n)[:2] == [(16 + 1, 2), (16 + 1, 3)]  # warp 1, lane 5: g = 1, q = 1


def _operands(rng, m, n, k, a_block, b_block):
    a, b = small_int_codes(rng, (m, k)), small_int_codes(rng, (k, n))
    sa = rng.choice([0.5, 1.0, 2.0], (-(-m // a_block[0]), -(-k // a_block[1]))).astype(np.float32)
    sb = rng.choice([0.25, 1.0, 4.0], (-(-k // b_block[0]), -(-n // b_block[1]))).astype(np.float32)
    return QTensor(a, sa, "e4m3", a_block), QTensor(b, sb, "e4m3", b_block)


def _exact(qa, qb):
    a = table()[qa.codes].astype(np.float64) * np.asarray(qa.scale_per_element(), np.float64)
    b = table()[qb.codes].astype(np.float64) * np.asarray(qb.scale_per_element(), np.float64)
    return a @ b


@needs_wgmma
@pytest.mark.parametrize("m, n, k, a_block, b_block", [
    (70, 24, 300, (1, 128), (128, 128)),  # DeepSeek-V3's blocks, tails in M, N and K
    (64, 136, 256, (1, 256), (256, 1)),  # per row of A, per column of B
    (5, 9, 40, (5, 40), (40, 9)),  # per-tensor, K shorter than one block
])
def test_wgmma_gemm_is_exact_on_small_integer_codes(m, n, k, a_block, b_block):
    qa, qb = _operands(np.random.default_rng(m + n + k), m, n, k, a_block, b_block)
    got = scaled_matmul(qa, qb, kernel="wgmma")
    np.testing.assert_array_equal(got, _exact(qa, qb).astype(np.float32))


@needs_wgmma
def test_wgmma_kernel_says_what_it_cannot_do():
    qa, qb = _operands(np.random.default_rng(1), 8, 8, 256, (1, 64), (128, 128))
    with pytest.raises(ValueError, match="a's block along K must be a multiple of 128"):
        scaled_matmul(qa, qb, kernel="wgmma")
    qa, qb = _operands(np.random.default_rng(1), 8, 8, 256, (1, 128), (128, 128))
    for mode in ("dequant", "rescale"):
        with pytest.raises(ValueError, match="mode must be 'promote'"):
            scaled_matmul(qa, qb, mode, kernel="wgmma")
    with pytest.raises(ValueError, match="scales constant along K"):
        scaled_matmul(qa, qb, "epilogue", kernel="wgmma")  # 1 x 128 scales vary along K
    assert scaled_matmul(QTensor(np.zeros((3, 0), np.uint8), np.ones((3, 0), np.float32), "e4m3", (1, 128)),
                         QTensor(np.zeros((0, 5), np.uint8), np.ones((0, 5), np.float32), "e4m3", (128, 1)),
                         kernel="wgmma").tolist() == [[0.0] * 5] * 3


@pytest.mark.skipif(ON_SIMULATOR or not warpgroup_mma_available(), reason="the tensor cores' own rounding: an H100/H200")
def test_wgmma_gemm_on_random_codes_is_within_the_tensor_cores_accumulation_error():
    rng = np.random.default_rng(3)
    m, n, k = 128, 256, 1024
    codes = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((m, k), (k, n))]
    for c in codes:
        c[~np.isfinite(table()[c])] = 0
    qa = QTensor(codes[0], rng.uniform(0.5, 2, (m, k // 128)).astype(np.float32), "e4m3", (1, 128))
    qb = QTensor(codes[1], rng.uniform(0.5, 2, (k // 128, n // 128)).astype(np.float32), "e4m3", (128, 128))
    got = scaled_matmul(qa, qb, kernel="wgmma").astype(np.float64)
    a = np.abs(table()[qa.codes].astype(np.float64) * qa.scale_per_element())
    b = np.abs(table()[qb.codes].astype(np.float64) * qb.scale_per_element())
    # The probe measured max |err| / sum |a||b| of 2.5e-4 to 5.1e-4 for one instruction; the
    # promoted sum of 128-wide blocks must stay within 2^-10 of sum |a||b| (chapter 06 derives
    # the bound it teaches).
    assert np.max(np.abs(got - _exact(qa, qb)) / (a @ b)) < 2.0**-10


@needs_wgmma
def test_two_warpgroups_share_a_b_tile_and_stay_exact():
    from numba import cuda

    from tutorial.gemm import warpgroup

    qa, qb = _operands(np.random.default_rng(7), 130, 40, 256, (1, 128), (128, 128))  # a tail of 2 rows
    c = cuda.device_array((130, 40), np.float32)
    warpgroup.launch_warpgroup(cuda.to_device(qa.codes), cuda.to_device(qb.codes), cuda.to_device(qa.scales),
                               cuda.to_device(qb.scales), qa.block, qb.block, c, qa.fmt, qb.fmt, bn=32, warpgroups=2)
    np.testing.assert_array_equal(c.copy_to_host(), _exact(qa, qb).astype(np.float32))
    with pytest.raises(ValueError, match="warpgroups must be 1 or 2"):
        warpgroup.launch_warpgroup(cuda.to_device(qa.codes), cuda.to_device(qb.codes), cuda.to_device(qa.scales),
                                   cuda.to_device(qb.scales), qa.block, qb.block, c, qa.fmt, qb.fmt, warpgroups=3)


@needs_wgmma
@pytest.mark.parametrize("pipelined", [True, False])
@pytest.mark.parametrize("m, n, k", [(70, 24, 320), (64, 64, 448)])  # a last K-block of one stage; of 64 + 64 + 64
def test_the_pipelined_and_the_plain_kernel_give_the_same_exact_product(pipelined, m, n, k):
    from numba import cuda

    from tutorial.gemm import warpgroup

    qa, qb = _operands(np.random.default_rng(k), m, n, k, (1, 128), (128, 128))
    c = cuda.device_array((m, n), np.float32)
    warpgroup.launch_warpgroup(cuda.to_device(qa.codes), cuda.to_device(qb.codes), cuda.to_device(qa.scales),
                               cuda.to_device(qb.scales), qa.block, qb.block, c, qa.fmt, qb.fmt, bn=16,
                               pipelined=pipelined)
    np.testing.assert_array_equal(c.copy_to_host(), _exact(qa, qb).astype(np.float32))


@needs_wgmma
def test_without_promotion_per_row_and_column_scales_are_applied_once_exactly():
    qa, qb = _operands(np.random.default_rng(11), 40, 24, 384, (1, 384), (384, 1))
    got = scaled_matmul(qa, qb, "epilogue", kernel="wgmma")
    np.testing.assert_array_equal(got, _exact(qa, qb).astype(np.float32))

