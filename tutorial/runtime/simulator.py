"""What Numba's CUDA simulator lacks, added: warp-level operations, and cheap device calls.

The simulator runs every CUDA thread of a block as a Python thread, but it has no warp
shuffles or votes. This module adds them - `shfl_sync`, `shfl_up_sync`,
`shfl_down_sync`, `shfl_xor_sync`, `syncwarp`, `activemask`, `all_sync`,
`any_sync`, `eq_sync` and `ballot_sync` - with the semantics of the PTX
instructions numba-cuda emits, so that a kernel calls ``cuda.shfl_down_sync(0xffffffff,
v, 16)`` exactly as it would on a GPU.

How a warp is modelled:

* Lanes: a thread's linear index in the block is `x + y*bx + z*bx*by`; its warp is that
  index // 32 and its lane that index % 32. When the block size is not a multiple of 32 the
  last warp is partial: its missing lanes simply do not take part.
* Synchronisation: a call with `mask` waits until every lane named in the mask that
  exists and has not exited has made the same call, then all of them get their results.
  Lanes outside the mask are not waited for, so sub-groups of a warp (say two halves with
  masks 0x0000ffff and 0xffff0000) work independently, and other warps may sit at
  `syncthreads` meanwhile.
* Shuffle source lanes follow PTX `shfl.sync` with numba's clamp values: the lane
  operand uses its low 5 bits; `shfl_up` from a lane below 0 and `shfl_down` from a lane
  above 31 return the caller's own value; `shfl_sync` and `shfl_xor_sync` always name a
  lane in the warp. Reading a lane that is not taking part (outside the mask, missing or
  exited) is undefined on hardware; here it returns the caller's own value. Do not rely on it.
* Value types are those numba-cuda accepts: 32/64-bit ints and floats for shuffles.
* `activemask()` returns the lanes that reach the call together: those that call it
  before exiting or blocking elsewhere (see its docstring).
* Mistakes a GPU would hang on or leave undefined are reported as errors: a lane calling
  with a mask that leaves itself out, lanes of one mask calling different operations, and
  a deadlock (lanes waiting for a lane that is stuck at `syncthreads`).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

FULL_MASK = 0xFFFFFFFF
WARP_SIZE = 32
_POLL_S = 0.05  # how often a waiting lane wakes to look for a deadlock (checks are exact)

_state_lock = threading.Lock()


class WarpError(RuntimeError):
    """A warp-level call that is undefined or deadlocks on a GPU."""


# -- per-block bookkeeping ----------------------------------------------------------------


class _Round:
    """One collective call by the lanes of one mask: what each lane brought."""

    def __init__(self, op: str, mask: int):
        self.op = op
        self.mask = mask
        self.args: dict[int, tuple] = {}  # lane -> (value, operand)
        self.done = False


class _Warp:
    def __init__(self, block: "_Block", present: int):
        self.present = present  # bitmask of lanes that exist in this warp
        self.exited = 0  # bitmask of lanes whose thread has returned
        self.rounds: dict[int, _Round] = {}  # mask -> round being gathered
        self.cond = threading.Condition(block.lock)

    def live(self) -> int:
        return self.present & ~self.exited

    def complete(self, rnd: _Round) -> bool:
        needed = rnd.mask & self.live()
        arrived = sum(1 << lane for lane in rnd.args)
        return needed & ~arrived == 0


class _Block:
    """The warps of one block, and its threads as each one starts running.

    Numba's simulator starts a block's threads one at a time, so on a busy machine the first
    lanes can wait in a shuffle long before the last lanes exist. Each thread registers here
    itself, first thing, so a deadlock is only ever judged once the whole block is running.
    """

    def __init__(self, nthreads: int):
        self.lock = threading.Lock()
        self.nthreads = nthreads
        self.threads: dict[int, object] = {}  # thread_id -> BlockThread, once it has started
        nwarps = (nthreads + WARP_SIZE - 1) // WARP_SIZE
        self.warps = []
        for w in range(nwarps):
            lanes = min(WARP_SIZE, nthreads - w * WARP_SIZE)
            self.warps.append(_Warp(self, (1 << lanes) - 1))

    def has_exited(self, thread_id: int) -> bool:
        return bool(self.warps[thread_id // WARP_SIZE].exited >> (thread_id % WARP_SIZE) & 1)

    def deadlocked(self) -> bool:
        """True when no thread of the block can ever move again. Call with `lock` held.

        That is: every thread has started, and each one that has not exited waits either at
        `syncthreads` or in a warp round that is not complete. Rounds and exits change only
        under `lock`, so they cannot change under us. A thread seen at the barrier stays
        there: the simulator releases a barrier only when every live thread is at it, and the
        caller is not. A thread about to reach the barrier reads as running, which only
        postpones the verdict to the next look.
        """
        if len(self.threads) < self.nthreads:
            return False
        for tid, t in self.threads.items():
            if self.has_exited(tid) or t.syncthreads_blocked:
                continue
            rnd = getattr(t, "_warp_round", None)
            if rnd is None or rnd.done or rnd.op == "activemask":  # activemask polls: running
                return False
        return True


def _block_of(thread) -> _Block:
    manager = thread._manager
    block = getattr(manager, "_tutorial_warps", None)
    if block is None:
        with _state_lock:
            block = getattr(manager, "_tutorial_warps", None)
            if block is None:
                bx, by, bz = manager._block_dim
                block = _Block(bx * by * bz)
                manager._tutorial_warps = block
    return block


def _current():
    thread = threading.current_thread()
    if not hasattr(thread, "thread_id") or not hasattr(thread, "_manager"):
        raise WarpError("warp-level functions can only be called inside a simulated kernel")
    return thread


def _on_thread_start(thread) -> None:
    block = _block_of(thread)
    with block.lock:
        block.threads[thread.thread_id] = thread


def _on_thread_exit(thread) -> None:
    """An exited lane stops being waited for, as on hardware."""
    block = _block_of(thread)
    warp = block.warps[thread.thread_id // WARP_SIZE]
    with block.lock:
        warp.exited |= 1 << (thread.thread_id % WARP_SIZE)
        for mask, rnd in list(warp.rounds.items()):
            if warp.complete(rnd):
                _finish(warp, rnd)


def _finish(warp: _Warp, rnd: _Round) -> None:
    del warp.rounds[rnd.mask]
    rnd.done = True
    warp.cond.notify_all()


def _fmt_lanes(bits: int) -> str:
    return "{" + ", ".join(str(i) for i in range(WARP_SIZE) if bits >> i & 1) + "}"


def _deadlock_error(block: _Block, warp_index: int, rnd: _Round) -> WarpError:
    at_barrier = [tid % WARP_SIZE for tid, t in block.threads.items()
                  if tid // WARP_SIZE == warp_index and t.syncthreads_blocked
                  and not block.has_exited(tid)]
    arrived = sum(1 << lane for lane in rnd.args)
    return WarpError(
        f"deadlock in warp {warp_index}: lanes {_fmt_lanes(arrived)} wait in {rnd.op}"
        f"(mask={rnd.mask:#010x}) for lanes {_fmt_lanes(rnd.mask & ~arrived)}"
        + (f", of which {sorted(at_barrier)} wait at syncthreads()" if at_barrier else "")
        + "; on a GPU this hangs or is undefined")


def _gather(op: str, mask, value=None, operand=None):
    """Wait for every live lane of `mask` to make this call; return the finished round."""
    thread = _current()
    mask = int(mask) & FULL_MASK
    lane = thread.thread_id % WARP_SIZE
    warp_index = thread.thread_id // WARP_SIZE
    block = _block_of(thread)
    warp = block.warps[warp_index]
    if not mask >> lane & 1:
        raise WarpError(
            f"{op}: lane {lane} of warp {warp_index} (thread {tuple(thread.threadIdx)}) "
            f"called with mask {mask:#010x}, which leaves itself out (undefined on a GPU)")
    with block.lock:
        rnd = warp.rounds.get(mask)
        if rnd is None:
            rnd = warp.rounds[mask] = _Round(op, mask)
        elif rnd.op != op:
            raise WarpError(
                f"lanes of warp {warp_index} called different warp operations with mask "
                f"{mask:#010x}: {rnd.op} and {op} (lane {lane}); on a GPU this is undefined")
        rnd.args[lane] = (value, operand)
        if warp.complete(rnd):
            _finish(warp, rnd)
            return rnd
        thread._warp_round = rnd
        try:
            while not rnd.done:
                warp.cond.wait(_POLL_S)
                if thread.abort:
                    raise RuntimeError("abort flag set while waiting in a warp operation")
                if not rnd.done and block.deadlocked():
                    raise _deadlock_error(block, warp_index, rnd)
        finally:
            thread._warp_round = None
    return rnd


# -- the operations ---------------------------------------------------------------------

_SHUFFLE_TYPES = (np.int32, np.int64, np.float32, np.float64)


def _check_shuffle_value(op: str, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, *_SHUFFLE_TYPES)):
        raise TypeError(f"{op} only supports 32- and 64-bit ints and floats, "
                        f"got {type(value).__name__} (a GPU compile would fail too)")


def _shuffle(op: str, mask, value, operand, source_lane):
    _check_shuffle_value(op, value)
    rnd = _gather(op, mask, value, int(operand))
    lane = _current().thread_id % WARP_SIZE
    src = source_lane(lane, int(operand) & 0x1F)  # PTX uses the low 5 bits of the operand
    if src is None or src not in rnd.args:
        return value  # out of range: own value (PTX); not taking part: undefined, own value here
    return rnd.args[src][0]


def shfl_sync(mask, value, src_lane):
    """Return `value` from lane `src_lane` (mod 32) of the warp."""
    return _shuffle("shfl_sync", mask, value, src_lane, lambda lane, b: b)


def shfl_up_sync(mask, value, delta):
    """Return `value` from lane `lane - delta`; lanes below `delta` keep their own."""
    return _shuffle("shfl_up_sync", mask, value, delta,
                    lambda lane, b: lane - b if lane - b >= 0 else None)


def shfl_down_sync(mask, value, delta):
    """Return `value` from lane `lane + delta`; lanes whose source passes 31 keep their own."""
    return _shuffle("shfl_down_sync", mask, value, delta,
                    lambda lane, b: lane + b if lane + b < WARP_SIZE else None)


def shfl_xor_sync(mask, value, lane_mask):
    """Return `value` from lane `lane ^ lane_mask` (the butterfly pattern)."""
    return _shuffle("shfl_xor_sync", mask, value, lane_mask, lambda lane, b: lane ^ b)


def syncwarp(mask=FULL_MASK):
    """Wait until every live lane of `mask` arrives."""
    _gather("syncwarp", mask)


def _vote(op: str, mask, predicate):
    rnd = _gather(op, mask, bool(predicate))
    return [(lane, v) for lane, (v, _) in rnd.args.items()]


def all_sync(mask, predicate):
    """True when the predicate holds on every taking-part lane of `mask`."""
    return all(v for _, v in _vote("all_sync", mask, predicate))


def any_sync(mask, predicate):
    """True when the predicate holds on at least one taking-part lane of `mask`."""
    return any(v for _, v in _vote("any_sync", mask, predicate))


def eq_sync(mask, predicate):
    """True when the predicate is the same on every taking-part lane of `mask`."""
    return len({v for _, v in _vote("eq_sync", mask, predicate)}) == 1


def ballot_sync(mask, predicate):
    """Bit i set when lane i takes part and its predicate holds. An int32, as numba types it."""
    bits = sum(1 << lane for lane, v in _vote("ballot_sync", mask, predicate) if v)
    return np.array(bits, dtype=np.uint32).view(np.int32)[()]


_ACTIVEMASK = -1  # key of the activemask round (masks are never negative)


def _activemask_settled(block: _Block, warp_index: int, rnd: _Round) -> bool:
    """Every lane of the warp has arrived, exited, or is blocked elsewhere (diverged)."""
    warp = block.warps[warp_index]
    for lane in range(WARP_SIZE):
        if not warp.live() >> lane & 1 or lane in rnd.args:
            continue
        t = block.threads.get(warp_index * WARP_SIZE + lane)
        if t is None:
            return False  # not started yet
        if t.syncthreads_blocked:
            continue
        other = getattr(t, "_warp_round", None)
        if other is None or other.done or other is rnd:
            return False  # still running towards this call, or about to
    return True


def activemask():
    """Lanes of the caller's warp that reach this call together, as a uint32 bitmask.

    A GPU reports the lanes converged at the call. The simulator's threads run
    independently, so this waits until each lane of the warp has called `activemask`,
    exited, or blocked somewhere else (a barrier, another warp operation); the lanes that
    called are the active ones. Lanes still busy in a long divergent branch are waited for.
    """
    thread = _current()
    lane = thread.thread_id % WARP_SIZE
    warp_index = thread.thread_id // WARP_SIZE
    block = _block_of(thread)
    warp = block.warps[warp_index]
    with block.lock:
        rnd = warp.rounds.get(_ACTIVEMASK)
        if rnd is None:
            rnd = warp.rounds[_ACTIVEMASK] = _Round("activemask", _ACTIVEMASK)
        rnd.args[lane] = (None, None)
        thread._warp_round = rnd
        try:
            while not rnd.done:
                if _activemask_settled(block, warp_index, rnd):
                    _finish(warp, rnd)
                    break
                warp.cond.wait(0.002)  # lanes blocking at a barrier send no notice: poll
                if thread.abort:
                    raise RuntimeError("abort flag set while waiting in activemask")
        finally:
            thread._warp_round = None
    return np.uint32(sum(1 << lane for lane in rnd.args))


def exchange(op: str, value, mask=FULL_MASK) -> tuple[dict[int, object], int]:
    """A warp-wide operation of your own, for emulating an instruction the simulator lacks (a
    tensor-core `mma.sync`, say): wait until every live lane of `mask` has called `exchange`
    with the same `op`, then return every taking-part lane's `value`, by lane, and the
    caller's lane. Deadlocks and mismatched operations are reported as for the shuffles."""
    rnd = _gather(op, mask, value)
    return {lane: v for lane, (v, _) in rnd.args.items()}, _current().thread_id % WARP_SIZE


def thread_index() -> int:
    """The calling thread's linear index in its block (for emulating an instruction of a group
    of warps, whose thread's part depends on its place in the group)."""
    return _current().thread_id


OPERATIONS = {f.__name__: f for f in (
    shfl_sync, shfl_up_sync, shfl_down_sync, shfl_xor_sync, syncwarp,
    activemask, all_sync, any_sync, eq_sync, ballot_sync)}


# -- device-function calls without a lock convoy ------------------------------------------
#
# For every call of a device function the simulator swaps the fake `cuda` module into the
# function's module globals and back, under a lock per module. With a few dozen threads
# calling small device functions (an FP8 encoder per element), the threads queue on that
# lock, each hand-over waiting for the GIL: a launch that should take a second takes
# minutes. Instead, a module is swapped the first time one of its device functions runs in
# a launch and stays swapped until the launch ends.

_SWITCH_INTERVAL_S = 2e-4  # measured: a block_max launch runs ~4x faster than at 5 ms
_persistent_swaps: list = []
_swap_lock = threading.Lock()


def _patch_device_calls(kernel, kernelapi) -> None:
    original_call = kernel.FakeCUDAKernel.__call__
    swapped: dict = {}  # id(module globals) -> context manager, for the running launch

    def __call__(self, *args):
        context = kernel._get_kernel_context()
        if context is None or not self._device:
            if self._device:  # called from the host: a GPU cannot do that either
                raise TypeError(f"{self.fn.__name__} is a device function: call it from inside a kernel "
                                "(@cuda.jit), not from the host")
            # Simulated threads hand the GIL to each other at every shuffle and barrier; at
            # Python's default 5 ms switch interval most of a launch is spent waiting for it.
            interval = sys.getswitchinterval()
            sys.setswitchinterval(_SWITCH_INTERVAL_S)
            try:
                return original_call(self, *args)
            finally:  # the launch is over: give every module its real `cuda` back
                sys.setswitchinterval(interval)
                while _persistent_swaps:
                    _persistent_swaps.pop().__exit__(None, None, None)
                swapped.clear()
        key = id(self.fn.__globals__)
        if key not in swapped:
            with _swap_lock:
                if key not in swapped:
                    manager = kernelapi.swapped_cuda_module(self.fn, context)
                    manager.__enter__()
                    _persistent_swaps.append(manager)
                    swapped[key] = manager
        return self.fn(*args)

    kernel.FakeCUDAKernel.__call__ = __call__


# -- shared arrays without a race ---------------------------------------------------------
#
# The simulator gives every thread of a block the same shared array by looking its call site
# up in a dict and, if it is missing, creating it: two threads can both find it missing and
# each get its own array, after which they no longer share memory (seen as a wrong GEMM tile,
# about one run in ten, with the short GIL switch interval above). dict.setdefault makes the
# look-up and the insertion one step.


def _patch_shared_arrays(kernelapi) -> None:
    import traceback

    import numpy as np
    from numba.cuda import types
    from numba.np import numpy_support

    def array(self, shape, dtype, alignment=None):
        # An alignment (the 16 or 128 bytes a wgmma tile needs) is a promise about addresses,
        # which a numpy array has no use for: accepted and ignored, so one kernel source runs
        # on both (Numba's own simulator refuses it).
        if alignment is not None and (alignment <= 0 or alignment & (alignment - 1)):
            raise ValueError(f"shared array alignment must be a power of two, got {alignment}")
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        if shape == 0:  # dynamic shared memory: one buffer for all
            count = self._dynshared_size // dtype.itemsize
            return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]  # (file, line) of the call
        res = self._allocations.get(caller)
        if res is None:
            res = self._allocations.setdefault(caller, np.empty(shape, dtype))
        return res

    kernelapi.FakeCUDAShared.array = array


# -- installing into the simulator ----------------------------------------------------------


def install() -> None:
    """Add the warp operations to the simulator's `numba.cuda` and to the in-kernel fake
    module, and make device-function calls cheap."""
    import numba.cuda
    from numba.cuda.simulator import kernel, kernelapi

    if getattr(kernel.BlockThread, "_tutorial_patched", False):
        return
    _patch_device_calls(kernel, kernelapi)
    _patch_shared_arrays(kernelapi)
    for name, fn in OPERATIONS.items():
        # In a kernel, `cuda` is a FakeCUDAModule instance: plain functions would become
        # bound methods, so store them as static methods.
        setattr(kernelapi.FakeCUDAModule, name, staticmethod(fn))
        setattr(numba.cuda, name, fn)

    original_run = kernel.BlockThread.run

    def run(self):
        _on_thread_start(self)
        try:
            original_run(self)
        finally:
            _on_thread_exit(self)

    kernel.BlockThread.run = run
    kernel.BlockThread._tutorial_patched = True
