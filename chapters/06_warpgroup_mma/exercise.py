# Chapter 06 exercise: Hopper's warpgroup MMA, TMA and DeepSeek's promotion (tutorial.gemm.wgmma).
# Generated from tutorial.gemm.wgmma by `fp8-tutorial exercises`. Fill in every TODO, then run
# `fp8-tutorial grade 06`: the graded tests use this file as tutorial.gemm.wgmma.
# TODOs:
#   line   80: descriptor
#   line  105: fragment_d
# stub fingerprint: b01b73d021e1f8fc (tells `fp8-tutorial exercises` an untouched stub from your work)

"""Hopper's warpgroup MMA from Numba: `wgmma.mma_async` m64nNk32 with FP8 operands.

`mma.sync` (`tutorial.gemm.mma`) is a warp's instruction, and on sm_90 ptxas lowers its FP8
form to FP16 tensor-core work after unpacking the codes. Hopper's own FP8 instruction belongs
to a *warpgroup*: 4 warps, 128 threads, together compute D (64 x N, float32) += A (64 x 32)
@ B (32 x N), N a multiple of 8 up to 256. It differs from `mma.sync` in three ways:

* **The operands stay in shared memory.** A and B are not in registers: the instruction
  reads them from shared memory through two 64-bit *matrix descriptors*. Each descriptor
  holds an address, two strides and a swizzle mode ([`descriptor`][]). Only D lives in
  registers, N / 2 float32 per thread ([`fragment_d`][]).
* **It is asynchronous.** `wgmma.fence` orders the registers of D before the first
  instruction; `wgmma.commit_group` closes a group of instructions, and
  `wgmma.wait_group n` waits until at most n groups are in flight. Shared memory written by
  ordinary stores must be made visible to the tensor cores' "async proxy" first:
  `fence.proxy.async`.
* **FP8 operands must be K-major**, both of them: A as rows of K, and B as its transpose
  (a row per column of B, K contiguous). There is no transpose flag for 8-bit types.

Layout without swizzle ("interleaved"): the tile is cut into *core matrices* of 8 rows x 16
bytes (16 codes of K), each stored as 128 contiguous bytes. Element (row r, k) of a K-major
tile lies at byte

    (r // 8) * SBO + (k // 16) * LBO + (r % 8) * 16 + k % 16

where LBO (the "leading dimension byte offset") steps between core matrices along K and SBO
(the "stride byte offset") between core matrices along M or N ([`interleaved_offset`][]).

On the simulator there is no tensor core. There a descriptor is a small Python object
holding the shared array and the fields, and [`wgmma`][] computes each thread's own
fragment of D from shared memory through it: exact products and sums in float64 of the 32
terms, D rounded once to float32. The hardware adds the 32 products with fewer bits (about
2.5e-4 of sum |a||b| measured on an H200), so the two agree bit for bit on small-integer
codes, and the tests hold the hardware to a bound otherwise.
"""

from __future__ import annotations

import functools

import numpy as np

from tutorial import fp8
from tutorial.runtime.device import ON_SIMULATOR

M, K = 64, 32  # the instruction's rows of A and D, and its K
# The tensor cores add FP8 products with fewer bits than float32 (DeepSeek-V3's report: about 14
# kept). What a 128-wide K-block of them can lose, as a fraction of its sum of |a||b|, measured on
# an H200: 2.5e-4 to 5.1e-4 on codes of both signs, 1.0e-3 on codes of one sign, whose truncations
# all point the same way. Promoted K-blocks add in float32, so a promoted product stays within
# this fraction of sum |a||b| (plus float32's rounding) however long K is; the course holds the
# wgmma kernels to it.
ACCUMULATION_BOUND = 2.0**-9
WARPGROUP = 128  # threads
CORE_ROWS, CORE_BYTES = 8, 16  # a core matrix: 8 rows x 16 bytes


def interleaved_offset(row: int, k: int, lbo: int, sbo: int) -> int:
    """The byte of element (row, k) of a K-major FP8 tile stored without swizzle (see above)."""
    return (row // CORE_ROWS) * sbo + (k // CORE_BYTES) * lbo + (row % CORE_ROWS) * CORE_BYTES + k % CORE_BYTES


def descriptor(address: int, lbo: int, sbo: int, swizzle: int = 0) -> int:
    """The 64-bit matrix descriptor: bits 0-13 the shared-memory address >> 4, 16-29 LBO >> 4,
    32-45 SBO >> 4, 62-63 the swizzle mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte); the
    base offset (bits 49-51) is 0. Addresses and offsets are multiples of 16 bytes."""
    for name, value in (("address", address), ("lbo", lbo), ("sbo", sbo)):
        if value % 16 or not 0 <= value < 1 << 18:
            raise ValueError(f"descriptor: {name} must be a multiple of 16 below 2^18, got {value}")
    if swizzle not in (0, 1, 2, 3):
        raise ValueError(f"descriptor: swizzle must be 0, 1, 2 or 3, got {swizzle}")
    # TODO (descriptor): each field in its bits: address >> 4 from bit 0, lbo >> 4 from bit 16, sbo
    #   >> 4 from bit 32, swizzle from bit 62, or-ed together (roughly 1 line)
    raise NotImplementedError("descriptor: not yet attempted")


def swizzled_128b(address: int) -> int:
    """Where byte `address` of a 128-byte-swizzled tile really lies: its 16-byte chunk (bits
    4-6) xor-ed with its row within an 8-row, 1024-byte atom (bits 7-9). So chunk c of row r
    sits at chunk c ^ (r % 8): the eight rows' chunks of one column of 16 codes fall in eight
    different bank groups. TMA writes a box this way (CU_TENSOR_MAP_SWIZZLE_128B), and wgmma
    reads it this way (descriptor mode 1), with the tile's start 1024-byte aligned."""
    return address ^ ((address >> 7) & 7) << 4


def descriptor_fields(desc: int) -> dict:
    """The fields of a matrix descriptor, in bytes: address, lbo, sbo, and the swizzle mode."""
    desc = int(desc)
    return {"address": (desc & 0x3FFF) << 4, "lbo": (desc >> 16 & 0x3FFF) << 4, "sbo": (desc >> 32 & 0x3FFF) << 4,
            "swizzle": desc >> 62 & 3}


def fragment_d(thread: int, n: int) -> list[tuple[int, int]]:
    """(row, column) of D that each of the n / 2 registers of warpgroup thread `thread` holds:
    warp w = thread // 32 owns rows 16w .. 16w + 15, and within them the registers follow
    `mma.sync`'s C layout, one m16n8 piece per 8 columns."""
    # TODO (fragment_d): w = thread // 32, g = lane // 4, q = lane % 4; register r: row 16w + g (+ 8
    #   when r % 4 is 2 or 3), column 8 (r // 4) + 2q + r % 2 (roughly 3 lines)
    raise NotImplementedError("fragment_d: not yet attempted")


def wgmma_reference(a_codes, bt_codes, d, fmt_a=fp8.E4M3, fmt_b=fp8.E4M3) -> np.ndarray:
    """D + A @ B for A (64 x 32 codes) and B given K-major (`bt_codes`, N x 32), D (64 x N
    float32): exact products and sums, one rounding to float32."""
    a = fp8.decode(np.asarray(a_codes, np.uint8), fmt_a).astype(np.float64)
    b = fp8.decode(np.asarray(bt_codes, np.uint8), fmt_b).astype(np.float64)
    return (np.asarray(d, np.float64) + a @ b.T).astype(np.float32)


if ON_SIMULATOR:
    from tutorial.runtime import simulator

    class SimDescriptor:
        """A matrix descriptor on the simulator: the shared array it points into, and the 64 bits
        of [`descriptor`][], whose fields the emulated instruction reads back as the hardware
        would (addresses count from the array's first byte)."""

        def __init__(self, array, bits):
            self.bytes = np.asarray(array).reshape(-1).view(np.uint8)
            self.bits = int(bits)
            fields = descriptor_fields(self.bits)
            self.address, self.lbo, self.sbo, self.swizzle = (fields[f] for f in ("address", "lbo", "sbo", "swizzle"))
            if self.swizzle not in (0, 1):
                raise NotImplementedError("wgmma on the simulator: only no swizzle and the 128-byte one are emulated")

        def tile(self, rows: int) -> np.ndarray:
            """The (rows, 32) codes the descriptor addresses."""
            r, k = np.meshgrid(np.arange(rows), np.arange(K), indexing="ij")
            if self.swizzle == 1:  # rows of 128 bytes in 8-row atoms of SBO bytes; K steps move the start
                return self.bytes[swizzled_128b(self.address + (r // CORE_ROWS) * self.sbo + (r % CORE_ROWS) * 128 + k)]
            return self.bytes[self.address + interleaved_offset(r, k, self.lbo, self.sbo)]

    def smem_descriptor(array, offset, lbo, sbo, swizzle):
        """The descriptor of the shared array `array` + `offset` bytes (see [`descriptor`][])."""
        return SimDescriptor(array, descriptor(int(offset), int(lbo), int(sbo), int(swizzle)))

    def accumulators(n):
        """A tuple of n float32 zeros: a thread's registers of D."""
        return (np.float32(0.0),) * n

    def _emulated(fmt_a, fmt_b):
        def mma(desc_a, desc_b, acc):
            thread = simulator.thread_index() % WARPGROUP
            n = 2 * len(acc)
            places = fragment_d(thread, n)
            rows = sorted({r for r, _ in places})
            cols = sorted({c for _, c in places})
            a = fp8.decode(desc_a.tile(M)[rows], fmt_a).astype(np.float64)
            b = fp8.decode(desc_b.tile(n)[cols], fmt_b).astype(np.float64)
            products = a @ b.T
            return tuple(np.float32(np.float64(v) + products[rows.index(r), cols.index(c)])
                         for v, (r, c) in zip(acc, places))

        return mma

    def _emulated_fresh(fmt_a, fmt_b, n):
        mma = _emulated(fmt_a, fmt_b)

        def mma0(desc_a, desc_b):
            return mma(desc_a, desc_b, accumulators(n))

        return mma0

    def promote(total, part, s_row, s_col, row, col):
        """The totals plus each partial sum times its row's and column's scales (see the GPU's
        `tutorial.runtime.warpgroup_ptx.promote`)."""
        return tuple(np.float32(t + p * (s_row[row + 8 * ((r % 4) // 2)] * s_col[col + 8 * (r // 4) + r % 2]))
                     for r, (t, p) in enumerate(zip(total, part)))

    def cp_async16(dst, dst_word, src, src_index, src_bytes):
        """The 16 bytes `src[src_index:]` (the first `src_bytes` of them, zeros after) into words
        `dst_word` .. + 3 of `dst`, at once (the GPU's copy is asynchronous)."""
        chunk = np.zeros(16, np.uint8)
        if src_bytes:
            chunk[:src_bytes] = src[src_index:src_index + src_bytes]
        dst[dst_word:dst_word + 4] = chunk.view(np.uint32)

    def cp_async_wait(pending):
        return _nothing

    def _identity(acc):
        return acc

    def _nothing():
        return None

    fence = _identity  # the simulator's wgmma is synchronous: nothing to order
    fence_only = _nothing
    commit = _nothing
    wait_all = wait_older = _identity
    wait_all_but_one = _nothing
    fence_proxy_async = _nothing
    cp_async_commit = _nothing
    _WGMMA = {(fa.name, fb.name): _emulated(fa, fb) for fa in fp8.FORMATS.values() for fb in fp8.FORMATS.values()}

else:
    from tutorial.runtime.warpgroup_ptx import (accumulators, commit, cp_async16, cp_async_commit, cp_async_wait, fence,
                                         fence_only, fence_proxy_async, make_wgmma, make_wgmma_fresh, promote,
                                         smem_descriptor, wait_all,
                                         wait_all_but_one, wait_older)

    _WGMMA = {(fa.name, fb.name): make_wgmma(fa.name, fb.name) for fa in fp8.FORMATS.values()
              for fb in fp8.FORMATS.values()}
    _fresh = functools.cache(make_wgmma_fresh)


def wgmma_fresh(fmt_a, fmt_b, n: int):
    """The device function `acc = mma0(desc_a, desc_b)`: D = A (64 x 32) @ B (32 x n), a new
    sum (the instruction's scale-d false), the thread's n / 2 registers of D returned."""
    fmt_a, fmt_b = fp8.as_format(fmt_a), fp8.as_format(fmt_b)
    if ON_SIMULATOR:
        return _emulated_fresh(fmt_a, fmt_b, n // 2)
    return _fresh(fmt_a.name, fmt_b.name, n // 2)


def wgmma(fmt_a, fmt_b):
    """The device function `acc = mma(desc_a, desc_b, acc)`: D += A (64 x 32) @ B (32 x N) for
    the warpgroup, A and B in shared memory behind their descriptors, `acc` the thread's N / 2
    registers of D (a tuple, see [`fragment_d`][]). All 128 threads call it together."""
    fmt_a, fmt_b = fp8.as_format(fmt_a), fp8.as_format(fmt_b)
    return _WGMMA[(fmt_a.name, fmt_b.name)]


__all__ = ["wgmma", "wgmma_fresh", "fence_only", "swizzled_128b", "wgmma_reference", "descriptor", "descriptor_fields", "interleaved_offset", "fragment_d",
           "smem_descriptor", "accumulators", "fence", "commit", "wait_all", "wait_all_but_one", "wait_older", "fence_proxy_async", "promote", "cp_async16",
           "cp_async_commit", "cp_async_wait", "M", "K", "ACCUMULATION_BOUND",
           "WARPGROUP"]
