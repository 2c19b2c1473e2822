"""Chapter 06, first step: a scaled FP8 GEMM on Hopper's warpgroup MMA (`tutorial.gemm.wgmma`).

One block is one warpgroup (128 threads) and computes a 64 x `bn` tile of C. For each
128-wide block of K it:

1. stages A's 64 x 128 codes and B's 128 x `bn` codes in shared memory, K-major and without
   swizzle (B transposed on the way in), with zero codes past the matrix's edges;
2. runs four `wgmma` m64n`bn`k32 into fresh accumulators (one commit group) and waits;
3. *promotes* the partial sums: adds each one to the thread's float32 total, times its
   row's scale of A and its column's scale of B for this K-block.

Step 3 is DeepSeek-V3's promotion: the tensor cores add the 128-term partial sums with
their reduced precision, and every partial enters a float32 sum scaled. It needs scales that
are constant over each 128-wide block of K: 1 x 128 (A) and 128 x 128 (B) blocks,
per-row / per-column, per-tensor.

No TMA, no pipeline, one warpgroup: the later steps of the chapter add those. This kernel
checks the instruction, its descriptors and its fragment layout, in a whole GEMM.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float32, uint8, uint32

from ..runtime.device import ON_SIMULATOR
from ..runtime.loads import load16_bytes
from . import wgmma as wg

KB = 128  # K per promotion: four k32 instructions
LBO = 128  # bytes between core matrices along K: adjacent
SBO = KB // wg.CORE_BYTES * 128  # bytes between 8-row groups: a row group's 8 core matrices along K


@cuda.jit(device=True)
def tile_offset(row, k):
    """The byte of (row, k) in a staged K-major tile of KB codes per row (no swizzle)."""
    return (row // 8) * SBO + (k // 16) * LBO + (row % 8) * 16 + k % 16


@cuda.jit(device=True)
def stage_chunk(src, cols, row, k, rows, vec, tile, word):
    """Copy codes `src[row, k : k + 16]` (src flattened, `cols` codes per row; zero codes past
    `rows` or `cols`) into the uint32 shared tile at `word`: one 16-byte load where the chunk
    is whole and `vec` (rows 16-byte aligned), else byte by byte."""
    if row < rows and k + 16 <= cols and vec:
        w0, w1, w2, w3 = load16_bytes(src, row * cols + k)
    else:
        w0 = w1 = w2 = w3 = uint32(0)
        if row < rows:
            for j in range(16):
                if k + j < cols:
                    byte = uint32(src[row * cols + k + j]) << uint32(8 * (j % 4))
                    if j < 4:
                        w0 |= byte
                    elif j < 8:
                        w1 |= byte
                    elif j < 12:
                        w2 |= byte
                    else:
                        w3 |= byte
    tile[word] = w0
    tile[word + 1] = w1
    tile[word + 2] = w2
    tile[word + 3] = w3


@cuda.jit(device=True)
def stage_scales(sa, sb, bma, bka, bkb, bnb, k0, row0, col0, m, n, s_row, s_col, threads):
    """The scales of the K-block at k0 for the tile's rows (into s_row) and columns (s_col),
    one load per thread per value; rows and columns past the matrix repeat its last."""
    rows, cols = s_row.shape[0], s_col.shape[0]
    for i in range(cuda.threadIdx.x, rows + cols, threads):
        if i < rows:
            s_row[i] = sa[min(row0 + i, m - 1) // bma, k0 // bka]
        else:
            s_col[i - rows] = sb[k0 // bkb, min(col0 + i - rows, n - 1) // bnb]


@cuda.jit(device=True)
def store_tile(c, total, row, col, m, n):
    """A thread's float32 totals into C: register r at its place in the fragment of D, from the
    thread's first row and column (row, col); nothing past the matrix's edges."""
    for r in range(len(total)):
        i = row + 8 * ((r % 4) // 2)
        j = col + 8 * (r // 4) + r % 2
        if i < m and j < n:
            c[i, j] = total[r]


# -- the first kernel's descriptors and fragment layout: the exercise's functions, on both ----
#
# This kernel is the chapter's check of `wgmma.descriptor` and `wgmma.fragment_d`, so it takes
# both from those Python functions, evaluated on the host: a descriptor for every 16-byte
# address of the shared window (the table is indexed by address / 16), and every thread's
# (row, column) of each register. On a GPU the tensor cores then read A and B through the
# exercise's bits and the kernel stores each register where `fragment_d` says. (The simulator's
# emulated instruction already places D with `fragment_d`, so there the store uses the
# hardware's layout; either way C is right only when `fragment_d` is.)

SHARED_WINDOW = 1 << 18  # bytes a descriptor's 14-bit address field (in 16-byte units) can name


@functools.cache
def exercise_tables(descriptor, fragment_d, bn: int):
    """(descriptors, places) on the device: `descriptor(16 i, LBO, SBO, 0)` for every i of the
    shared window (uint64), and `fragment_d(t, bn)` for every thread t of a warpgroup (int32,
    (128, bn / 2, 2)). Keyed by the functions, so a replaced one (the grader's) takes effect."""
    return cuda.to_device(_descriptor_table(descriptor)), cuda.to_device(_fragment_places(fragment_d, bn))


def _descriptor_table(descriptor) -> np.ndarray:
    descs = np.empty(SHARED_WINDOW // 16, np.uint64)
    for i in range(descs.size):
        bits = descriptor(16 * i, LBO, SBO, 0)
        if not isinstance(bits, (int, np.integer)) or not 0 <= int(bits) < 1 << 64:
            raise ValueError(f"wgmma.descriptor({16 * i}, {LBO}, {SBO}, 0) returned {bits!r}: a descriptor is an "
                             "unsigned 64-bit integer")
        descs[i] = int(bits)
    return descs


def _fragment_places(fragment_d, bn: int) -> np.ndarray:
    places = [fragment_d(t, bn) for t in range(wg.WARPGROUP)]  # (its own errors are the learner's to see)
    try:
        places = np.array(places, np.int64)
    except (TypeError, ValueError, OverflowError):
        places = None
    if places is None or places.shape != (wg.WARPGROUP, bn // 2, 2):
        raise ValueError(f"wgmma.fragment_d(t, {bn}) must give {bn // 2} (row, column) pairs of integers for each "
                         f"thread t")
    outside = (places < 0) | (places >= (wg.M, bn))
    if outside.any():
        t, r, _ = np.argwhere(outside)[0]
        raise ValueError(f"wgmma.fragment_d({t}, {bn})[{r}] = {tuple(places[t, r].tolist())} is not a place in D "
                         f"({wg.M} x {bn})")
    return places.astype(np.int32)


if ON_SIMULATOR:
    def table_descriptor(descs, tile, offset):
        """The descriptor of `tile` + `offset` bytes from the table (addresses count from the
        tile's first byte on the simulator)."""
        return wg.SimDescriptor(tile, descs[offset >> 4])

    @cuda.jit(device=True)
    def store_placed(c, total, places, tg, row, col, m, n):
        """The totals into C from the tile's corner (row, col): at the hardware's places, where
        the emulated instruction put what `fragment_d` named (see above)."""
        store_tile(c, total, row + 16 * (tg // 32) + tg % 32 // 4, col + 2 * (tg % 4), m, n)
else:
    from ..runtime.warpgroup_ptx import shared_address

    @cuda.jit(device=True)
    def table_descriptor(descs, tile, offset):
        """The descriptor of `tile` + `offset` bytes from the table."""
        return descs[(shared_address(tile) + offset) >> 4]

    @cuda.jit(device=True)
    def store_placed(c, total, places, tg, row, col, m, n):
        """Thread tg's totals into C from the tile's corner (row, col): register r at the
        place `fragment_d` gave it; nothing past the matrix's edges."""
        for r in range(len(total)):
            i, j = row + places[tg, r, 0], col + places[tg, r, 1]
            if i < m and j < n:
                c[i, j] = total[r]


@functools.cache
def warpgroup_kernel(fmt_a, fmt_b, bn: int, vec: bool, warpgroups: int = 1):
    """The kernel `kernel(a, bt, m, n, k, sa, sb, bma, bka, bkb, bnb, c, descs, places)`: C =
    A @ B scaled, for A (M, K) codes and B given transposed, `bt` (N, K) codes (both K-major, as
    FP8 wgmma wants them; flattened), scales `sa` (ceil(M / bma), ceil(K / bka)) and `sb`
    (ceil(K / bkb), ceil(N / bnb)), C (M, N) float32; `descs` and `places` from
    [`exercise_tables`][]. `vec`: K % 16 == 0, so rows are 16-byte aligned.
    `warpgroups` warpgroups share the block's B tile, each with its own 64 rows of A: the tile
    is 64 * warpgroups x bn. Launch with grid (ceil(N / bn), ceil(M / (64 * warpgroups))) and
    128 * warpgroups threads. bka and bkb must be multiples of 128 or at least K (scales
    constant over each 128-wide block of K)."""
    mma = wg.wgmma(fmt_a, fmt_b)
    regs = bn // 2
    tile_rows, threads = wg.M * warpgroups, wg.WARPGROUP * warpgroups
    a_chunks, b_chunks = tile_rows * KB // 16, bn * KB // 16  # 16-byte chunks per K-block
    a_words, b_words = 4 * a_chunks, 4 * b_chunks  # (shared array sizes: constants, not expressions)
    a_slice = wg.M // 8 * SBO  # bytes of A's tile per warpgroup: its 64 rows

    @cuda.jit
    def kernel(a, bt, m, n, k_total, sa, sb, bma, bka, bkb, bnb, c, descs, places):
        tile_a = cuda.shared.array(a_words, uint32, alignment=128)
        tile_b = cuda.shared.array(b_words, uint32, alignment=128)
        s_row = cuda.shared.array(tile_rows, float32)  # this K-block's scales of the tile's rows ...
        s_col = cuda.shared.array(bn, float32)  # ... and columns
        t = cuda.threadIdx.x
        group, tg = t // wg.WARPGROUP, t % wg.WARPGROUP  # this thread's warpgroup, and its place in it
        row0, col0 = cuda.blockIdx.y * tile_rows, cuda.blockIdx.x * bn
        lane = tg % 32
        row_t = wg.M * group + 16 * (tg // 32) + lane // 4  # this thread's first row and column of D, in the tile
        col_t = 2 * (lane % 4)
        total = wg.accumulators(regs)
        for k0 in range(0, k_total, KB):
            # A chunk (r, c) is row r's codes 16c .. 16c + 15 of the K-block: one row of a core
            # matrix, 16 contiguous bytes of the tile at tile_offset(r, 16c)
            for i in range(t, a_chunks, threads):
                r, ch = i // (KB // 16), i % (KB // 16)
                stage_chunk(a, k_total, row0 + r, k0 + 16 * ch, m, vec, tile_a, tile_offset(r, 16 * ch) // 4)
            for i in range(t, b_chunks, threads):
                r, ch = i // (KB // 16), i % (KB // 16)
                stage_chunk(bt, k_total, col0 + r, k0 + 16 * ch, n, vec, tile_b, tile_offset(r, 16 * ch) // 4)
            stage_scales(sa, sb, bma, bka, bkb, bnb, k0, row0, col0, m, n, s_row, s_col, threads)
            wg.fence_proxy_async()  # the stores above, visible to the tensor cores
            cuda.syncthreads()
            part = wg.fence(wg.accumulators(regs))
            for ks in range(KB // wg.K):  # 32 codes of K: two core matrices further along
                part = mma(table_descriptor(descs, tile_a, group * a_slice + ks * 2 * LBO),
                           table_descriptor(descs, tile_b, ks * 2 * LBO), part)
            wg.commit()
            part = wg.wait_all(part)
            total = wg.promote(total, part, s_row, s_col, row_t, col_t)  # DeepSeek's promotion
            cuda.syncthreads()  # every thread done with this K-block's tiles before the next
        store_placed(c, total, places, tg, row0 + wg.M * group, col0, m, n)

    return kernel


KS = 64  # K per pipeline stage: two k32 instructions
SBO_STAGE = KS // wg.CORE_BYTES * 128  # bytes between 8-row groups of a stage's tile
STAGES = 4  # stages in flight: a ring of 4 x (64 + bn) x 64 codes


@cuda.jit(device=True)
def stage_offset(row, k):
    """The byte of (row, k) in a staged K-major tile of KS codes per row (no swizzle)."""
    return (row // 8) * SBO_STAGE + (k // 16) * LBO + (row % 8) * 16 + k % 16


@functools.cache
def pipelined_kernel(fmt_a, fmt_b, bn: int, stages: int = STAGES, promote: bool = True):
    """[`warpgroup_kernel`][]'s GEMM (same arguments, one warpgroup, K % 16 == 0) with the
    staging made asynchronous: each thread's `cp.async` copies global memory straight into a
    ring of `stages` shared-memory tiles of 64 codes of K, `stages` - 1 of them in flight
    while the tensor cores work on the oldest. Two stages make a 128-wide K-block, whose
    partial sums are promoted as before. `promote=False`: the tensor cores accumulate the
    whole of K, scaled once at the end with the first K-block's scales (right only for scales
    constant along K: per-tensor, per-row / per-column), to measure what promotion buys."""
    mma = wg.wgmma(fmt_a, fmt_b)
    regs = bn // 2
    a_chunks, b_chunks = wg.M * KS // 16, bn * KS // 16  # 16-byte chunks per stage
    a_words, b_words = 4 * a_chunks, 4 * b_chunks
    ring_a_words, ring_b_words, tile_rows = stages * a_words, stages * b_words, wg.M
    a_bytes, b_bytes = 4 * a_words, 4 * b_words
    per_block = KB // KS
    wait_for_oldest = wg.cp_async_wait(stages - 2)

    @cuda.jit(device=True)
    def issue(a, bt, m, n, k_total, st, row0, col0, ring_a, ring_b):
        """Start copying stage `st`'s codes into its slot of the ring (zeros past the edges)."""
        t = cuda.threadIdx.x
        k0, slot = st * KS, st % stages
        for i in range(t, a_chunks, wg.WARPGROUP):
            r, ch = i // (KS // 16), i % (KS // 16)
            inside = row0 + r < m and k0 + 16 * ch < k_total
            wg.cp_async16(ring_a, slot * a_words + stage_offset(r, 16 * ch) // 4, a,
                          (row0 + r) * k_total + k0 + 16 * ch if inside else 0, 16 if inside else 0)
        for i in range(t, b_chunks, wg.WARPGROUP):
            r, ch = i // (KS // 16), i % (KS // 16)
            inside = col0 + r < n and k0 + 16 * ch < k_total
            wg.cp_async16(ring_b, slot * b_words + stage_offset(r, 16 * ch) // 4, bt,
                          (col0 + r) * k_total + k0 + 16 * ch if inside else 0, 16 if inside else 0)

    @cuda.jit
    def kernel(a, bt, m, n, k_total, sa, sb, bma, bka, bkb, bnb, c):
        ring_a = cuda.shared.array(ring_a_words, uint32, alignment=128)
        ring_b = cuda.shared.array(ring_b_words, uint32, alignment=128)
        s_row = cuda.shared.array(tile_rows, float32)  # the K-block's scales of the tile's rows ...
        s_col = cuda.shared.array(bn, float32)  # ... and columns
        t = cuda.threadIdx.x
        row0, col0 = cuda.blockIdx.y * wg.M, cuda.blockIdx.x * bn
        lane = t % 32
        row_t = 16 * (t // 32) + lane // 4  # this thread's first row and column of D, in the tile
        col_t = 2 * (lane % 4)
        count = (k_total + KS - 1) // KS
        for st in range(stages - 1):  # the ring's first stages in flight
            if st < count:
                issue(a, bt, m, n, k_total, st, row0, col0, ring_a, ring_b)
            wg.cp_async_commit()  # (a group per stage, empty or not: the wait counts groups)
        total = wg.accumulators(regs)
        part = wg.accumulators(regs)
        for st in range(count):
            wait_for_oldest()  # this thread's copies of stage st have landed ...
            wg.fence_proxy_async()  # ... are visible to the tensor cores ...
            cuda.syncthreads()  # ... and so are everyone's; everyone is done with stage st - 1
            if (st % per_block == 0) if promote else st == 0:  # a new K-block: its scales, fresh partial sums
                k0 = st * KS
                stage_scales(sa, sb, bma, bka, bkb, bnb, k0, row0, col0, m, n, s_row, s_col, wg.WARPGROUP)
                part = wg.accumulators(regs)
            if st + stages - 1 < count:  # refill the slot stage st - 1 used
                issue(a, bt, m, n, k_total, st + stages - 1, row0, col0, ring_a, ring_b)
            wg.cp_async_commit()
            slot = st % stages
            part = wg.fence(part)
            for ks in range(KS // wg.K):
                part = mma(wg.smem_descriptor(ring_a, slot * a_bytes + ks * 2 * LBO, LBO, SBO_STAGE, 0),
                           wg.smem_descriptor(ring_b, slot * b_bytes + ks * 2 * LBO, LBO, SBO_STAGE, 0), part)
            wg.commit()
            part = wg.wait_all(part)
            if (st % per_block == per_block - 1 or st == count - 1) if promote else st == count - 1:  # promote
                cuda.syncthreads()  # (the scales other threads stored this K-block)
                total = wg.promote(total, part, s_row, s_col, row_t, col_t)
        store_tile(c, total, row0 + row_t, col0 + col_t, m, n)

    return kernel


@cuda.jit
def _transpose_codes(src, dst):
    """dst (N, K) = src (K, N).T, uint8, through 32 x 32 shared tiles (both sides coalesced)."""
    tile = cuda.shared.array((32, 33), uint8)  # 33: no bank conflicts on the transposed read
    x, y = cuda.threadIdx.x, cuda.threadIdx.y
    k0, n0 = cuda.blockIdx.y * 32, cuda.blockIdx.x * 32
    for dy in range(y, 32, cuda.blockDim.y):
        if k0 + dy < src.shape[0] and n0 + x < src.shape[1]:
            tile[dy, x] = src[k0 + dy, n0 + x]
    cuda.syncthreads()
    for dy in range(y, 32, cuda.blockDim.y):
        if n0 + dy < dst.shape[0] and k0 + x < dst.shape[1]:
            dst[n0 + dy, k0 + x] = tile[x, dy]


def transposed_codes(codes):
    """A device copy of (K, N) codes transposed to (N, K): B as wgmma reads it, K-major."""
    k, n = codes.shape
    out = cuda.device_array((n, k), np.uint8)
    if out.size:
        _transpose_codes[(-(-n // 32), -(-k // 32)), (32, 8)](codes, out)
    return out


def transposed_view(array):
    """The transpose of a 2-D device array, as a view of the same memory. (Numba's `.T` on a
    device array is a copy, made by a transpose kernel; the simulator's is numpy's view.)"""
    if ON_SIMULATOR:
        return array.T
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(tuple(array.shape[::-1]), tuple(array.strides[::-1]), array.dtype, stream=array.stream,
                         gpu_data=array.gpu_data)


def k_major(b_codes):
    """B (K, N) codes as the kernels read them, (N, K) C-contiguous: a view where B is already
    stored that way (the transposed view of an (N, K) array, [`transposed_view`][], the layout
    `torch._scaled_mm` also takes B in), else a transposed copy ([`transposed_codes`][])."""
    if b_codes.ndim == 2 and b_codes.is_f_contiguous() and not b_codes.is_c_contiguous():
        return transposed_view(b_codes)
    return transposed_codes(b_codes)


def launch_warpgroup(a_codes, b_codes, sa, sb, block_a, block_b, c, fmt_a, fmt_b, bn: int = 64, warpgroups: int = 1,
                     pipelined: bool = True, promote: bool = True):
    """Launch the GEMM on device arrays: A (M, K) and B (K, N) codes (B is transposed first, on
    the device), their scales and blocks, C (M, N) float32. [`pipelined_kernel`][] where K %
    16 == 0 and one warpgroup (unless `pipelined=False`), else [`warpgroup_kernel`][].
    `promote=False` (the pipelined kernel only): no promotion, scales applied once at the end."""
    m, k = a_codes.shape
    n = b_codes.shape[1]
    for name, bk in (("a's block", block_a[1]), ("b's block", block_b[0])):
        if bk % KB and bk < k:
            raise ValueError(f"scaled_matmul(kernel='wgmma'): {name} along K must be a multiple of {KB} or cover "
                             f"all of K ({k}), got {bk}")
    if bn % 8 or not 8 <= bn <= 256:
        raise ValueError(f"launch_warpgroup: bn must be a multiple of 8 from 8 to 256, got {bn}")
    bt = k_major(b_codes)
    if warpgroups not in (1, 2):
        raise ValueError(f"launch_warpgroup: warpgroups must be 1 or 2, got {warpgroups}")
    grid = (-(-n // bn), -(-m // (wg.M * warpgroups)))
    if not promote and not (pipelined and k % 16 == 0 and warpgroups == 1):
        raise ValueError("launch_warpgroup: promote=False needs the pipelined kernel (K % 16 == 0, one warpgroup)")
    if pipelined and k % 16 == 0 and warpgroups == 1:
        kernel, tables = pipelined_kernel(fmt_a, fmt_b, bn, STAGES, promote), ()
    else:
        kernel = warpgroup_kernel(fmt_a, fmt_b, bn, k % 16 == 0, warpgroups)
        tables = exercise_tables(wg.descriptor, wg.fragment_d, bn)
    kernel[grid, wg.WARPGROUP * warpgroups](
        a_codes.reshape(m * k), bt.reshape(n * k), m, n, k, sa, sb, int(block_a[0]), int(block_a[1]),
        int(block_b[0]), int(block_b[1]), c, *tables)
    return c


__all__ = ["warpgroup_kernel", "pipelined_kernel", "launch_warpgroup", "tile_offset", "stage_offset", "stage_chunk",
           "stage_scales", "store_tile", "exercise_tables", "table_descriptor", "store_placed", "transposed_codes",
           "transposed_view", "k_major", "KB", "KS", "STAGES", "SHARED_WINDOW"]
