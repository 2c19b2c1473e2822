"""Chapter 06, first step: Hopper's warpgroup MMA (tutorial.gemm.wgmma) and the scaled GEMM built
on it (tutorial.gemm.warpgroup, `scaled_matmul(kernel="wgmma")`). On the simulator the
instruction is emulated from shared memory through its descriptors; on an H100 / H200 it is
the instruction. Small-integer codes and power-of-two scales make every product and sum
exact, so both must match the float64 reference bit for bit."""

import functools

import numpy as np
import pytest
from numba import cuda, uint8  # (module globals: the simulator swaps them inside kernels)

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


def test_the_tma_kernels_swizzled_descriptor_is_the_one_descriptor_gives():
    from tutorial.gemm import specialized

    assert specialized.SWIZZLED == wg.descriptor(0, 16, 1024, 1)


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
    # codes of both signs: within 2^-10 of sum |a||b| (half of wg.ACCUMULATION_BOUND, which
    # covers codes of one sign)
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


def _first_kernel(qa, qb):
    """C from the chapter's first kernel, as chapter 06's graded GEMMs run it."""
    from harness_ch06 import wgmma_gemm

    return wgmma_gemm(qa.codes, qa.scales, qa.block, qb.codes, qb.scales, qb.block)


def _swapped_registers(t, n, fragment_d=wg.fragment_d):  # registers 0 and 2 exchanged: rows g, g + 8
    places = fragment_d(t, n)
    places[0], places[2] = places[2], places[0]
    return places


def _swapped_strides(address, lbo, sbo, swizzle=0, descriptor=wg.descriptor):  # LBO and SBO exchanged
    return descriptor(address, sbo, lbo, swizzle)


@needs_wgmma
@pytest.mark.parametrize("name, wrong", [("fragment_d", _swapped_registers), ("descriptor", _swapped_strides)])
def test_the_first_kernel_runs_through_the_exercises_descriptor_and_fragment_d(monkeypatch, name, wrong):
    """On a GPU as on the simulator, the first kernel reads A and B through `descriptor`'s bits
    and places D with `fragment_d` (chapter 06's graded GEMMs rely on it): replace either with
    a wrong one and C is wrong."""
    qa, qb = _operands(np.random.default_rng(11), 70, 24, 300, (1, 128), (128, 128))
    exact = _exact(qa, qb).astype(np.float32)
    np.testing.assert_array_equal(_first_kernel(qa, qb), exact)
    monkeypatch.setattr(wg, name, wrong)
    assert (_first_kernel(qa, qb) != exact).mean() > 0.1


@pytest.mark.parametrize("bn", [8, 64, 256])
def test_exercise_tables_hold_the_hardwares_layout_and_descriptors(bn):
    """With the library's functions the first kernel's tables say what the hardware does: the
    places are those `store_tile` and `promote` index with (thread (warp w, lane l): row 16 w + l / 4,
    column 2 (l % 4), then + 8 for registers 2, 3 of each 4, + 8 columns every 4 registers, + 1
    for odd ones), and entry i is the descriptor of address 16 i. (On a GPU the kernel stores
    through these places, and its tensor cores read through these descriptors.)"""
    from tutorial.gemm import warpgroup

    descs, places = (x.copy_to_host() for x in warpgroup.exercise_tables(wg.descriptor, wg.fragment_d, bn))
    t, r = np.meshgrid(np.arange(wg.WARPGROUP), np.arange(bn // 2), indexing="ij")
    rows = 16 * (t // 32) + t % 32 // 4 + 8 * ((r % 4) // 2)
    cols = 2 * (t % 4) + 8 * (r // 4) + r % 2
    np.testing.assert_array_equal(places, np.stack([rows, cols], axis=-1))
    assert descs.size == warpgroup.SHARED_WINDOW // 16
    for i in (0, 1, 0x2A3, descs.size - 1):
        assert wg.descriptor_fields(int(descs[i])) == {"address": 16 * i, "lbo": warpgroup.LBO,
                                                       "sbo": warpgroup.SBO, "swizzle": 0}


@pytest.mark.parametrize("fragment_d, message", [
    (lambda t, n: [(0, 0)] * (n // 2 - 1), r"must give 32 \(row, column\) pairs"),
    (lambda t, n: [(64, 0)] * (n // 2), r"fragment_d\(0, 64\)\[0\] = \(64, 0\) is not a place in D \(64 x 64\)"),
    (lambda t, n: [("a", 0)] * (n // 2), "pairs of integers"),
])
def test_exercise_tables_name_a_fragment_d_that_is_not_a_layout(fragment_d, message):
    from tutorial.gemm import warpgroup

    with pytest.raises(ValueError, match=message):
        warpgroup.exercise_tables(wg.descriptor, fragment_d, 64)


@pytest.mark.parametrize("bits", [-1, 1 << 64, 0.5, None])
def test_exercise_tables_name_a_descriptor_that_is_not_64_bits(bits):
    from tutorial.gemm import warpgroup

    with pytest.raises(ValueError, match=r"wgmma.descriptor\(0, 128, 1024, 0\) returned .*unsigned 64-bit"):
        warpgroup.exercise_tables(lambda *args: bits, wg.fragment_d, 64)


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



needs_hopper = pytest.mark.skipif(ON_SIMULATOR or not warpgroup_mma_available(),
                                  reason="TMA and mbarriers: a GPU of compute capability 9.0")


def _device_operands(qa, qb, b_k_major=False):
    """The QTensors' codes and scales on the device; B's codes stored K-major (F-contiguous,
    torch._scaled_mm's layout) if asked."""
    from numba import cuda

    b_codes = cuda.to_device(np.asfortranarray(qb.codes)) if b_k_major else cuda.to_device(qb.codes)
    return (QTensor(cuda.to_device(qa.codes), cuda.to_device(qa.scales), qa.fmt, qa.block),
            QTensor(b_codes, cuda.to_device(qb.scales), qb.fmt, qb.block))


@needs_hopper
@pytest.mark.parametrize("m, n, k, a_block, b_block", [
    (200, 300, 512, (1, 128), (128, 128)),  # tails in M and N, an even number of K-blocks
    (130, 129, 1040, (1, 128), (128, 128)),  # a K tail: 9 K-blocks, the last one 16 wide
    (64, 136, 384, (1, 384), (384, 1)),  # per row / per column: B's scales in the epilogue
    (96, 72, 48, (96, 48), (48, 72)),  # per-tensor, K shorter than one block
    (256, 128, 768, (128, 256), (256, 256)),  # scales shared by 2 K-blocks, A's by 128 rows
])
def test_the_specialized_kernel_is_exact_on_small_integer_codes(m, n, k, a_block, b_block):
    from tutorial.gemm import specialized

    qa, qb = _operands(np.random.default_rng(m * n + k), m, n, k, a_block, b_block)
    da, db = _device_operands(qa, qb, b_k_major=k % 2 == 0)
    assert specialized.fits(da.codes, db.codes, da.block, db.block)
    got = scaled_matmul(da, db, kernel="wgmma").copy_to_host()
    np.testing.assert_array_equal(got, _exact(qa, qb).astype(np.float32))


@needs_hopper
def test_the_specialized_kernel_writes_bfloat16_rounded_to_nearest_even():
    import ml_dtypes

    qa, qb = _operands(np.random.default_rng(5), 136, 200, 256, (1, 128), (128, 128))
    qa = QTensor(qa.codes, qa.scales * np.float32(1 + 2.0**-12), qa.fmt, qa.block)  # not exact in bfloat16
    want = scaled_matmul(qa, qb, kernel="wgmma").astype(ml_dtypes.bfloat16)
    got = scaled_matmul(qa, qb, kernel="wgmma", out_dtype="bfloat16")
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    da, db = _device_operands(qa, qb)
    on_device = scaled_matmul(da, db, kernel="wgmma", out_dtype="bfloat16")
    np.testing.assert_array_equal(on_device.copy_to_host(), want.view(np.uint16))


@needs_hopper
def test_auto_chooses_the_warpgroup_kernel_on_hopper(monkeypatch):
    import tutorial.gemm as gemm

    chosen = []
    real = gemm._scaled_matmul_wgmma
    monkeypatch.setattr(gemm, "_scaled_matmul_wgmma", lambda *args: chosen.append(args[2]) or real(*args))
    qa, qb = _operands(np.random.default_rng(2), 64, 64, 256, (1, 128), (128, 128))
    np.testing.assert_array_equal(gemm.scaled_matmul(qa, qb), _exact(qa, qb).astype(np.float32))
    assert chosen == [None]
    gemm.scaled_matmul(qa, qb, "dequant")  # a mode wgmma does not have: another kernel
    assert chosen == [None]


@needs_hopper
def test_without_promotion_the_error_grows_with_k_and_promotion_holds_it():
    """Per-row / per-column scales on random codes: the tensor cores' own accumulation over
    all of K ("epilogue") loses more the longer K is; promoting every 128 does not."""
    rng = np.random.default_rng(9)

    def error(k, mode):
        codes = [rng.integers(0, 128, s, dtype=np.uint8) for s in ((128, k), (k, 128))]  # positive: errors add up
        for c in codes:
            c[~np.isfinite(table()[c])] = 0
        qa = QTensor(codes[0], np.ones((128, 1), np.float32), "e4m3", (1, k))
        qb = QTensor(codes[1], np.ones((1, 128), np.float32), "e4m3", (k, 1))
        got = scaled_matmul(qa, qb, mode, kernel="wgmma").astype(np.float64)
        a, b = (table()[q.codes].astype(np.float64) for q in (qa, qb))
        return np.max(np.abs(got - a @ b) / (np.abs(a) @ np.abs(b)))

    short, long = error(256, "epilogue"), error(8192, "epilogue")
    promoted_short, promoted_long = error(256, "promote"), error(8192, "promote")
    assert long > 4 * short, (short, long)
    assert promoted_long < min(2 * promoted_short, wg.ACCUMULATION_BOUND) < long, (promoted_short, promoted_long, long)


def test_bfloat16_bits_round_to_nearest_even_like_ml_dtypes():
    import ml_dtypes
    from numba import cuda

    from tutorial.gemm.operands import bfloat16_bits

    one = np.float32(1.0).view(np.uint32)
    values = np.array([1.0, -2.5, 3.4e38, np.inf, -np.inf, 1e-40, 0.0, -0.0,
                       (one + 0x8000).view(np.float32),  # a tie: to even (down)
                       (one + 0x18000).view(np.float32),  # a tie: to even (up)
                       (one + 0x8001).view(np.float32)], np.float32)  # just above a tie: up
    got = bfloat16_bits(cuda.to_device(values), cuda.device_array(values.shape, np.uint16)).copy_to_host()
    np.testing.assert_array_equal(got, values.astype(ml_dtypes.bfloat16).view(np.uint16))
    nan = bfloat16_bits(cuda.to_device(np.array([np.nan], np.float32)), cuda.device_array(1, np.uint16))
    assert np.isnan(nan.copy_to_host().view(ml_dtypes.bfloat16).astype(np.float32)[0])


@needs_wgmma
def test_bfloat16_output_is_the_float32_product_rounded_and_bad_out_dtypes_are_named():
    import ml_dtypes

    qa, qb = _operands(np.random.default_rng(4), 20, 12, 128, (1, 128), (128, 128))
    qa = QTensor(qa.codes, qa.scales * np.float32(1 + 2.0**-12), qa.fmt, qa.block)
    want = scaled_matmul(qa, qb, kernel="wgmma").astype(ml_dtypes.bfloat16)
    for kernel in ("wgmma", "cuda_core"):
        got = scaled_matmul(qa, qb, kernel=kernel, out_dtype="bfloat16")
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    out = np.zeros((20, 12), ml_dtypes.bfloat16)
    assert scaled_matmul(qa, qb, kernel="wgmma", out_dtype="bfloat16", out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), want.view(np.uint16))
    with pytest.raises(ValueError, match="out_dtype must be one of"):
        scaled_matmul(qa, qb, out_dtype="float16")
    with pytest.raises(ValueError, match="out must be uint16 or bfloat16"):
        scaled_matmul(qa, qb, kernel="wgmma", out_dtype="bfloat16", out=np.zeros((20, 12), np.float32))


def test_the_128_byte_swizzle_moves_chunk_c_of_row_r_to_chunk_c_xor_r():
    rows, chunks = np.meshgrid(np.arange(16), np.arange(8), indexing="ij")
    moved = wg.swizzled_128b(rows * 128 + chunks * 16) - rows * 128
    np.testing.assert_array_equal(moved // 16, chunks ^ (rows % 8))
    assert sorted((wg.swizzled_128b(np.arange(2048)))) == list(range(2048))  # a permutation of each atom


@functools.cache
def _swizzled_tile_kernel():
    mma = wg.wgmma("e4m3", "e4m3")

    @cuda.jit
    def kernel(a_swizzled, bt_swizzled, out):
        """One warpgroup: A (64 x 128) and B^T (16 x 128), each already laid out as TMA's 128-byte
        swizzle leaves it, copied to shared memory; D = A @ B over K = 128 through mode-1 descriptors."""
        sa = cuda.shared.array(8192, uint8, alignment=1024)
        sb = cuda.shared.array(2048, uint8, alignment=1024)
        t = cuda.threadIdx.x
        for i in range(t, 8192, 128):
            sa[i] = a_swizzled[i]
        for i in range(t, 2048, 128):
            sb[i] = bt_swizzled[i]
        wg.fence_proxy_async()
        cuda.syncthreads()
        acc = wg.fence(wg.accumulators(8))
        for ks in range(4):  # k32 steps: the start address moves 32 bytes inside the swizzled rows
            acc = mma(wg.smem_descriptor(sa, 32 * ks, 16, 1024, 1), wg.smem_descriptor(sb, 32 * ks, 16, 1024, 1), acc)
        wg.commit()
        acc = wg.wait_all(acc)
        lane = t % 32
        row, col = 16 * (t // 32) + lane // 4, 2 * (lane % 4)
        for r in range(8):
            out[row + 8 * ((r % 4) // 2), col + 8 * (r // 4) + r % 2] = acc[r]

    return kernel


@needs_wgmma
def test_wgmma_reads_a_128_byte_swizzled_tile_through_its_descriptor():
    """Emulated on the simulator, the instruction itself on an H100 / H200: the same answer."""
    from numba import cuda

    rng = np.random.default_rng(12)
    a, bt = small_int_codes(rng, (64, 128)), small_int_codes(rng, (16, 128))

    def swizzled(codes):
        out = np.empty(codes.size, np.uint8)
        out[wg.swizzled_128b(np.arange(codes.size))] = codes.reshape(-1)  # byte i of the rows lies at swizzled(i)
        return out

    out = cuda.to_device(np.full((64, 16), np.nan, np.float32))
    _swizzled_tile_kernel()[1, 128](cuda.to_device(swizzled(a)), cuda.to_device(swizzled(bt)), out)
    np.testing.assert_array_equal(out.copy_to_host(), (table()[a].astype(np.float64) @ table()[bt].T).astype(np.float32))
