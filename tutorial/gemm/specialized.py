"""Chapter 06, the fast kernel: TMA, an mbarrier ring, 128-byte swizzle and warp specialization.

[`warpgroup.pipelined_kernel`][tutorial.gemm.warpgroup.pipelined_kernel] keeps the tensor
cores waiting: its 128 threads copy the tiles, issue the MMAs, wait for them and promote, one
after the other, on 64 x 64 tiles. This kernel gives each job to its own warps (DeepGEMM's
shape):

* **one producer warpgroup**, of which one thread works: it waits until a slot of the
  shared-memory ring is free, tells the slot's "full" mbarrier how many bytes to expect, and
  asks TMA for the slot's two boxes, A's 128 x 128 codes and B's 128 x 128, swizzled in
  128-byte rows. Its warpgroup then needs few registers and gives them back (`setmaxnreg`);
* **two consumer warpgroups**, 64 rows of the 128 x 128 tile each, take K-blocks in pairs:
  wait for both slots' "full" barriers, start four m64n128k32 `wgmma` on each (two commit
  groups, two partial sums), wait for the first group only, arrive on its slot's "empty"
  barrier (the producer may refill it) and promote its partial sums into the float32 totals
  with their scales, while the second group's MMAs run; then the same for the second. And
  while one warpgroup promotes, the other's MMAs run too.

Scales: A's per row (or per 1 x 128 block), B's per 128 x 128 block or per tensor (one value
per K-block for the whole tile), or B's per column, constant along K (per-row / per-column:
applied when C is stored). C is float32 or bfloat16 (its bits, rounded to nearest even),
written by an epilogue unrolled over the registers (`tutorial.runtime.fragment`).

GPU only (compute capability 9.0): TMA and mbarriers have no emulation on the simulator, where
[`warpgroup.warpgroup_kernel`][tutorial.gemm.warpgroup.warpgroup_kernel] teaches the same
instruction.
"""

from __future__ import annotations

import functools

from numba import cuda, float32, int64, uint8, uint64

from ..runtime import fragment, tma_ptx as tma
from ..runtime.tensor_map import allow_dynamic_shared, tensor_map_2d
from . import wgmma as wg
from .warpgroup import k_major

BM, BN, BK = 128, 128, 128  # the block's tile of C, and the K of a stage (one promotion's K-block)
A_BYTES = BM * BK  # A's box in a stage: 128 rows of 128 codes (B's: bn rows)
CONSUMERS = 2  # consumer warpgroups, 64 rows of the tile each
THREADS = wg.WARPGROUP * (CONSUMERS + 1)  # the producer warpgroup last
STAGES = 5  # ring slots: 5 x 32 KB of shared memory
PRODUCER_REGISTERS, CONSUMER_REGISTERS = 40, 232  # setmaxnreg: 128 x 40 + 256 x 232 <= 64K registers
# the 64-bit descriptor of a K-major tile in 128-byte swizzle, wgmma.descriptor(0, 16, 1024, 1): mode
# 1, stride between 8-row groups 1024 bytes, leading offset unused (16); the address is or-ed in.
# (Spelled out: in a student edition wgmma.descriptor is an exercise, and this kernel must not wait
# for it; tests/test_wgmma.py checks the two agree.)
SWIZZLED = 1 << 62 | (1024 >> 4) << 32 | (16 >> 4) << 16
K_STEP = wg.K // 16  # one k32 instruction further along K: 32 bytes, in the descriptor's 16-byte units


def shared_bytes(stages: int, bn: int = BN) -> int:
    """Dynamic shared memory of the kernel: the ring, two mbarriers per slot, and room to align
    the ring to 1024 bytes (the swizzle's period)."""
    return stages * (A_BYTES + bn * BK) + 16 * stages + 1024


@cuda.jit(device=True)
def advance(index, left, every):
    """A scale's index along K, moved on by one K-block: it changes every `every` K-blocks, and
    `left` K-blocks (this one included) still had the old one. (A counter: no division.)"""
    if left == 1:
        return index + 1, every
    return index, left - 1


@functools.cache
def specialized_kernel(fmt_a, fmt_b, stages: int = STAGES, promote: bool = True, column_scales: bool = False,
                       max_registers: bool = True, bn: int = BN, overlap: bool = True):
    """The kernel `kernel(map_a, map_b, m, n, k, sa, sb, bma, a_every, b_every, bnb, c)`: C =
    A @ B scaled, A (M, K) and B^T (N, K) codes behind their tensor maps
    (`tutorial.runtime.tensor_map.tensor_map_2d`, 128 x 128 boxes), scales `sa`
    (ceil(M / bma), ceil(K / bka)) and `sb` (ceil(K / bkb), ceil(N / bnb)), where `a_every`
    = bka / 128 and `b_every` = bkb / 128 K-blocks share a scale (or more than K has: the scales
    are constant along K), C (M, N) float32
    (or uint16 for bfloat16 bits). Launch with grid (ceil(N / 128), ceil(M / 128)),
    THREADS threads and `shared_bytes(stages)` of dynamic shared memory.

    `column_scales`: B has a scale per column (bnb = 1), constant along K; else B has one scale
    per K-block for the tile (bnb a multiple of the tile's width, or >= N). `promote=False`: the
    tensor cores accumulate all of K, scaled once at the end (scales constant along K).
    `max_registers`: the producer gives registers to the consumers (`setmaxnreg`). `bn`: the
    tile's width (256 leaves no registers for promotion: without it only). `overlap=False`:
    one K-block at a time, MMAs, wait, promote (the worklog's step before the last)."""
    mma, mma0 = wg.wgmma(fmt_a, fmt_b), wg.wgmma_fresh(fmt_a, fmt_b, bn)
    regs = bn // 2
    consumer_warps = CONSUMERS * wg.WARPGROUP // 32
    b_bytes = bn * BK
    ring_b = stages * A_BYTES  # B's slots follow A's
    barriers = stages * (A_BYTES + b_bytes)  # "full" barriers, then "empty" ones, 8 bytes each
    stage_bytes = A_BYTES + b_bytes
    wg_rows = wg.M * BK  # bytes of A's box per consumer warpgroup: its 64 rows
    give_back = tma.set_max_registers(PRODUCER_REGISTERS, False)
    take_more = tma.set_max_registers(CONSUMER_REGISTERS, True)

    @cuda.jit(device=True)
    def produce(map_a, map_b, ring, blocks_k, row0, col0):
        """The producer thread: fill the ring's slots, in order, as consumers free them."""
        full, empty = ring + barriers, ring + barriers + 8 * stages  # each slot's two mbarriers
        address_a, address_b = tma.global_address(map_a), tma.global_address(map_b)
        tma.tensormap_acquire(address_a)
        tma.tensormap_acquire(address_b)
        for kb in range(blocks_k):
            slot, use = kb % stages, kb // stages
            if use > 0:  # the consumers' arrivals after the slot's previous use
                tma.mbarrier_wait(empty + 8 * slot, (use - 1) & 1)
            bar = full + 8 * slot
            tma.mbarrier_arrive_expect_tx(bar, stage_bytes)  # (boxes past the edges still count whole)
            tma.tma_load_2d(ring + slot * A_BYTES, address_a, kb * BK, row0, bar)
            tma.tma_load_2d(ring + ring_b + slot * b_bytes, address_b, kb * BK, col0, bar)

    @cuda.jit(device=True)
    def descriptors(ring, group, kb):
        """Wait until K-block kb's slot is full; the descriptors of its A rows and its B."""
        slot = kb % stages
        tma.mbarrier_wait(ring + barriers + 8 * slot, (kb // stages) & 1)
        desc_a = uint64(SWIZZLED) | uint64((ring + slot * A_BYTES + group * wg_rows) >> 4)
        desc_b = uint64(SWIZZLED) | uint64((ring + ring_b + slot * b_bytes) >> 4)
        return desc_a, desc_b

    @cuda.jit(device=True)
    def issue(ring, group, kb, part):
        """Start K-block kb's four k32 MMAs adding to `part`, one commit group; return `part`,
        in flight."""
        desc_a, desc_b = descriptors(ring, group, kb)
        part = wg.fence(part)
        for ks in range(BK // wg.K):
            part = mma(desc_a + uint64(K_STEP * ks), desc_b + uint64(K_STEP * ks), part)
        wg.commit()
        return part

    @cuda.jit(device=True)
    def issue_fresh(ring, group, kb):
        """[issue][]'s MMAs into a new partial sum (the first one writes D without reading it)."""
        desc_a, desc_b = descriptors(ring, group, kb)
        wg.fence_only()
        part = mma0(desc_a, desc_b)
        for ks in range(1, BK // wg.K):
            part = mma(desc_a + uint64(K_STEP * ks), desc_b + uint64(K_STEP * ks), part)
        wg.commit()
        return part

    @cuda.jit(device=True)
    def release(ring, kb):
        """This warp is done with K-block kb's slot: one arrival on its "empty" barrier."""
        if cuda.threadIdx.x % 32 == 0:
            tma.mbarrier_arrive(ring + barriers + 8 * stages + 8 * (kb % stages))

    @cuda.jit(device=True)
    def factors(sa, sb, top, bottom, b_col, ka, kb):
        """The factors of the thread's two rows for a K-block whose scales are A's column ka and
        B's row kb: A's scale of the row, times B's of the tile unless B's are per column."""
        f_b = sb[kb, b_col] if not column_scales else float32(1)
        return sa[top, ka] * f_b, sa[bottom, ka] * f_b

    @cuda.jit(device=True)
    def take_factors(scales, place):
        """The factors of the thread's two rows for the next K-block, whose scales stand at
        `place` along K (A's column, the K-blocks it still serves, B's row, the same), and the
        place of the K-block after it."""
        sa, sb, top, bottom, b_col, a_every, b_every = scales
        ka, a_left, kb, b_left = place
        f_top, f_bottom = factors(sa, sb, top, bottom, b_col, ka, kb)
        ka, a_left = advance(ka, a_left, a_every)
        kb, b_left = advance(kb, b_left, b_every)
        return (f_top, f_bottom), (ka, a_left, kb, b_left)

    @cuda.jit(launch_bounds=(THREADS, 1))
    def kernel(map_a, map_b, m, n, k_total, sa, sb, bma, a_every, b_every, bnb, c):
        smem = cuda.shared.array(0, uint8)
        start = int64(tma.shared_address(smem))  # (addresses in int64: uint64 + int64 is a float in numba)
        ring = start + (1024 - start % 1024) % 1024  # aligned to the swizzle's period
        t = cuda.threadIdx.x
        group = t // wg.WARPGROUP
        row0, col0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * bn
        blocks_k = (k_total + BK - 1) // BK
        if t == 0:
            for slot in range(stages):
                tma.mbarrier_init(ring + barriers + 8 * slot, 1)  # "full": the producer's arrival (and bytes)
                tma.mbarrier_init(ring + barriers + 8 * (stages + slot), consumer_warps)  # "empty"
            tma.fence_barrier_init()
        cuda.syncthreads()
        if group == CONSUMERS:  # the producer warpgroup
            if max_registers:
                give_back()
            if t % wg.WARPGROUP == 0:
                produce(map_a, map_b, ring, blocks_k, row0, col0)
            return
        if max_registers:
            take_more()
        lane = t % 32
        row_t = wg.M * group + 16 * ((t % wg.WARPGROUP) // 32) + lane // 4  # first row and column of D
        col_t = 2 * (lane % 4)
        top, bottom = min(row0 + row_t, m - 1) // bma, min(row0 + row_t + 8, m - 1) // bma  # scale rows
        b_col = col0 // bnb
        total = wg.accumulators(regs)
        if not promote:  # one running sum: the next K-block's MMAs start before the last ones end
            for kb in range(blocks_k):
                total = issue(ring, group, kb, total)
                if kb > 0:
                    wg.wait_all_but_one()  # (total is still being written: not named)
                    release(ring, kb - 1)
            total = wg.wait_all(total)
            release(ring, blocks_k - 1)
            f_top, f_bottom = factors(sa, sb, top, bottom, b_col, 0, 0)
            total = fragment.promote_rows(wg.accumulators(regs), total, f_top, f_bottom)  # 0 + sum * scales
        elif not overlap:  # one K-block at a time: MMAs, wait, promote
            scales = (sa, sb, top, bottom, b_col, a_every, b_every)
            place = (0, a_every, 0, b_every)
            for kb in range(blocks_k):
                f_a, place = take_factors(scales, place)
                part_a = wg.wait_all(issue_fresh(ring, group, kb))
                release(ring, kb)
                total = fragment.promote_rows(total, part_a, f_a[0], f_a[1])
        else:  # K-blocks in pairs: the second's MMAs run while the first's sums are promoted
            scales = (sa, sb, top, bottom, b_col, a_every, b_every)
            place = (0, a_every, 0, b_every)  # where the scales stand along K
            # (nothing stays in flight from one trip to the next: an accumulator in flight that a
            # loop or branch joined would be copied, and ptxas would serialize the MMAs)
            for kb in range(0, blocks_k - 1, 2):
                f_a, place = take_factors(scales, place)  # (loaded before the waits below)
                f_b, place = take_factors(scales, place)
                part_a = issue_fresh(ring, group, kb)
                part_b = issue_fresh(ring, group, kb + 1)
                part_a = wg.wait_older(part_a)
                release(ring, kb)
                total = fragment.promote_rows(total, part_a, f_a[0], f_a[1])  # DeepSeek's promotion
                part_b = wg.wait_all(part_b)
                release(ring, kb + 1)
                total = fragment.promote_rows(total, part_b, f_b[0], f_b[1])
            if blocks_k % 2:
                f_a, place = take_factors(scales, place)
                part_a = wg.wait_all(issue_fresh(ring, group, blocks_k - 1))
                release(ring, blocks_k - 1)
                total = fragment.promote_rows(total, part_a, f_a[0], f_a[1])
        if column_scales:
            total = fragment.scale_columns(total, sb[0], col0 + col_t, n)
        fragment.store_fragment(c, total, row0 + row_t, col0 + col_t, m, n)

    return kernel


def _address(array) -> int:
    return array.__cuda_array_interface__["data"][0]


def fits(a_codes, b_codes, block_a, block_b) -> bool:
    """Whether [`launch_specialized`][] takes these operands (A (M, K), B (K, N) codes on the
    device): rows of a multiple of 16 bytes (TMA's rule), A C-contiguous and 16-byte aligned
    (B too, where it is used in place), and B's scales one per K-block for a 128-wide tile or
    one per column, constant along K. Scales along K every 128 or more (`_wgmma_blocks`) are
    checked by the caller."""
    k, n = b_codes.shape
    if k % 16 or not a_codes.is_c_contiguous() or _address(a_codes) % 16:
        return False
    if b_codes.is_f_contiguous() and _address(b_codes) % 16:
        return False
    bkb, bnb = int(block_b[0]), int(block_b[1])
    return bnb % BN == 0 or bnb >= n or (bnb == 1 and bkb >= k)


_ALLOWED: set = set()  # (kernel, argument types) given their dynamic shared memory


def launch_specialized(a_codes, bt_codes, sa, sb, block_a, block_b, c, fmt_a, fmt_b, promote: bool = True,
                       stages: int = STAGES, max_registers: bool = True, bn: int = BN, overlap: bool = True):
    """Launch [`specialized_kernel`][] on device arrays: A (M, K) and B^T (N, K) codes,
    C-contiguous, K % 16 == 0; scales and blocks as `scaled_matmul` has them; C (M, N)
    float32, or uint16 for bfloat16 bits. B's blocks must be one scale per K-block for a
    128-wide tile (bnb % 128 == 0 or bnb >= N), or per column and constant along K."""
    m, k = a_codes.shape
    n = bt_codes.shape[0]
    bnb = int(block_b[1])
    if bn not in (128, 256) or (bn == 256 and promote):
        raise ValueError(f"launch_specialized: bn must be 128, or 256 without promotion, got {bn}")
    for name, bk in (("a's block", block_a[1]), ("b's block", block_b[0])):
        if bk % BK and bk < k:
            raise ValueError(f"launch_specialized: {name} along K must be a multiple of {BK} or cover all of K "
                             f"({k}), got {bk}")
    column_scales = not (bnb % bn == 0 or bnb >= n)
    if column_scales and (bnb != 1 or block_b[0] < k):
        raise ValueError(f"launch_specialized: b's scales must be one per K-block for a {bn}-wide tile, or one per "
                         f"column constant along K ({k}); got block {tuple(block_b)}")
    if not promote and (block_a[1] < k or block_b[0] < k):
        raise ValueError("launch_specialized: promote=False needs scales constant along K")
    kernel = specialized_kernel(fmt_a, fmt_b, stages, promote, column_scales, max_registers, bn, overlap)
    blocks_k = -(-k // BK)
    a_every, b_every = (int(bk) // BK if bk < k else blocks_k for bk in (block_a[1], block_b[0]))  # K-blocks per scale
    args = (tensor_map_2d(a_codes, BM, BK), tensor_map_2d(bt_codes, bn, BK), m, n, k, sa, sb, int(block_a[0]),
            a_every, b_every, bnb, c)
    nbytes = shared_bytes(stages, bn)
    key = (kernel, str(c.dtype), sa.is_c_contiguous(), sb.is_c_contiguous())  # (what picks the overload)
    if key not in _ALLOWED:
        allow_dynamic_shared(kernel, tuple(kernel.typeof_pyval(x) for x in args), nbytes)
        _ALLOWED.add(key)
    kernel[(-(-n // bn), -(-m // BM)), THREADS, 0, nbytes](*args)
    return c


__all__ = ["specialized_kernel", "launch_specialized", "fits", "shared_bytes", "BM", "BN", "BK", "STAGES",
           "THREADS"]
