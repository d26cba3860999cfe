"""Worker threads that each run single-threaded BLAS, for splitting work into independent slices.

On a few cores, one multi-threaded GEMM followed by a serial Numba kernel leaves the kernel on one
core, and a *parallel* Numba kernel right after a GEMM fights OpenBLAS's still-spinning threads
(docs/architecture.md, "One owner of the cores"). Instead our own worker threads each take whole slices of
the work (GEMM with one BLAS thread, then the nogil Numba kernels on that slice), with no
synchronisation until the slices are done.

OpenBLAS's thread count is process-wide in NumPy's (pthreads) OpenBLAS: even
`openblas_set_num_threads_local` changes it for every thread (measured: after a worker called it
with 1, the main thread's 577x768x3072 GEMM ran at one thread, 8.4 -> 16.5 ms). So `run_parallel`
sets 1 thread while the slices run and puts the previous count back before it returns; the caller
must not run BLAS from other threads meanwhile. Without OpenBLAS's setter, or with
TROCR_NP_THREADS=1, the slices run serially on the calling thread with BLAS's own threading.

The hand-offs. A greedy decode step of one line makes ~80 calls per token that split 0.05-1 ms of
work each, so what a hand-off costs matters. Measured on a 2-core Intel Xeon VM (Emerald Rapids,
Firecracker: no cpuidle driver, so an idle vCPU halts and every futex wake-up is a VM exit and an
interrupt; 2026-12-02, load 0.1-0.7), `run_parts` of a no-op in two parts, per call:
ThreadPoolExecutor (submit, a queue, Future.result) 32-45 us; our own workers that poll a flag
without the GIL (`_poll`, native code, `pause` between reads) for SPIN_US before they sleep on an
Event: 25 us. What is left there is the GIL: a woken worker must take the GIL to run a Python
task while the caller, still in Python, holds it, and a thread that waits for the GIL sleeps on a
condition variable (a futex: the same wake-up again). So the decode step's kernels go as *native
tasks* (`run_native`): a Numba cfunc and an int64 block of addresses, which the polling worker
calls itself (`_serve`) without ever taking the GIL; the caller runs its own share through the
same njit and waits by polling: a no-op native hand-off 7.6-8.7 us (load 1.5; a Python task at
that moment 27.5-29, mostly the caller's own Python now: the lock, the posting, two Numba calls).
Base decoder, 1 row, 2 threads, old hand-off vs native,
alternating in one process (load 1.5-1.7): per token bf16 41.5 -> 36.6 ms, int8 27.7 -> 23.2
(minimum; medians bf16 44.2 -> 40.9, int8 32.4 -> 28.0), trocr_np/kernels_q.py has the rest.
A poller calls sched_yield every YIELD_EVERY reads, so that on a loaded machine it hands its core to
a thread with work (ours or another process's): same step, load 3-3.5 (two other processes at
~100%), medians bf16 81.6 -> 62.9 ms, int8 53.4 -> 36.3 without and with it; under that load the
native and old hand-offs were level within the noise (bf16 62.9-76.6 vs 52.3-71.6 ms, int8 36.3-41.0
vs 39.2-45.6; polling 30 or 100 us instead of 300 no better). SPIN_US bounds the polling: a
worker idle longer (between images, between pages) sleeps, and a caller waiting longer for a worker (an encoder slice) sleeps too, so no core is burnt while idle.
Errors: a Python task's exception is caught on the worker and re-raised by the caller once every
part is done; native tasks must not raise. At exit the workers are stopped (atexit) and are daemon
threads. One caller thread has the workers at a time (a lock); another thread's `run_parts` or
`run_native` meanwhile runs its parts itself, its `run_parallel` waits its turn.
"""
from __future__ import annotations

import atexit
import os
import platform
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def find_openblas_thread_setters():
    """ctypes (set_num_threads(int), get_num_threads()) of the OpenBLAS in this process, or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("", ""), ("scipy_", "64_"), ("scipy_", "")):
            set_n = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            get_n = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            if set_n is not None and get_n is not None:
                set_n.argtypes, set_n.restype = [ctypes.c_int], None
                get_n.argtypes, get_n.restype = [], ctypes.c_int
                return set_n, get_n
    return None


def default_threads() -> int:
    """TROCR_NP_THREADS, else the CPUs this process may run on."""
    env = os.environ.get("TROCR_NP_THREADS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


THREADS = default_threads()
SPIN_US = 300.0                  # how long an idle worker (and a caller waiting on one) polls before sleeping
_pool = None                     # (pid, _Pool, (set, get)) or (pid, None, None); rebuilt after a fork
_pool_lock = threading.Lock()
_PREFIX = "trocr_np_worker"


@intrinsic
def _load_acquire(typingctx, addr):
    """The int64 at address addr, read anew on every call (an atomic load: LLVM may not hoist it
    out of a polling loop)."""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(builder.inttoptr(args[0], ir.IntType(64).as_pointer()), "acquire", 8)
    return types.int64(types.intp), codegen


@intrinsic
def _store_sc(typingctx, addr, value):
    """*addr = value (int64), sequentially consistent (x86: xchg, a full barrier): every store this
    thread made before is visible first, and no later load is taken before it."""
    def codegen(context, builder, signature, args):
        builder.store_atomic(args[1], builder.inttoptr(args[0], ir.IntType(64).as_pointer()), "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(types.intp, types.int64), codegen


@intrinsic
def _void_ptr(typingctx, addr):
    """An address (intp) as a void pointer, for numba.carray (a native task's arguments)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(types.intp), codegen


@intrinsic
def _call_native(typingctx, fn_addr, arg_addr):
    """Call the C function at fn_addr, void f(intp), with arg_addr (a Numba cfunc's .address)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [args[1].type])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1]])
        return context.get_dummy_value()
    return types.void(types.intp, types.intp), codegen


@intrinsic
def _pause(typingctx):
    """x86 `pause` (a spin-wait hint: less power, no memory-order mis-speculation on exit); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _call_int(typingctx, fn_addr):
    """Call the C function int f(void) at fn_addr (sched_yield)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])
        return context.get_dummy_value()
    return types.void(types.intp), codegen


def _sched_yield_address():
    """Address of libc's sched_yield, or 0 (then a poller only pauses)."""
    import ctypes
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):
        return 0


_YIELD = _sched_yield_address()
YIELD_EVERY = 8  # polls between sched_yield calls: a poller hands its core to any other runnable thread


@numba.njit(cache=True, inline="always")
def _idle(i, yield_fn, every):
    _pause()
    if yield_fn != 0 and i % every == every - 1:
        _call_int(yield_fn)


@numba.njit(cache=True, nogil=True)
def _poll(addr, value, polls, yield_fn=0, every=8):
    """Wait while the int64 at addr equals value, at most `polls` pause-spaced reads, without the
    GIL; returns the last value read."""
    v = _load_acquire(addr)
    for i in range(polls):
        if v != value:
            break
        _idle(i, yield_fn, every)
        v = _load_acquire(addr)
    return v


_IDLE, _PYTHON_TASK, _NATIVE_DONE = 0, 1, 2  # what `_serve` returns for


@numba.njit(cache=True, nogil=True)
def _serve(addr, seen, polls, yield_fn, every):
    """A worker's wait, without the GIL: poll the task count at addr (flags[0]) for up to `polls`
    reads after the last task; run native tasks (flags[1]: a C function, flags[2]: its argument)
    here, each done published in flags[8]. Returns (what, count): (_PYTHON_TASK, its number) at a
    Python task (flags[1] == 0), for the caller to run; (_IDLE, the last task's number) when idle;
    (_NATIVE_DONE, its number) after a native task whose caller sleeps (flags[9] set), for the
    caller to wake it. The count is always returned: native tasks run here move it on."""
    idle = 0
    while True:
        v = _load_acquire(addr)
        if v == seen:
            if idle >= polls:
                return _IDLE, seen
            _idle(idle, yield_fn, every)
            idle += 1
            continue
        fn = _load_acquire(addr + 8)
        if fn == 0:
            return _PYTHON_TASK, v
        _call_native(fn, _load_acquire(addr + 16))
        seen = v
        _store_sc(addr + 64, v)
        if _load_acquire(addr + 72) != 0:
            return _NATIVE_DONE, v
        idle = 0


@numba.njit(cache=True)
def _publish(addr, value):
    _store_sc(addr, value)


def _polls_per_us():
    """How many `_poll` reads take a microsecond on this CPU (`pause` takes ~10 to ~150 cycles)."""
    flag = np.zeros(1, np.int64)
    _poll(flag.ctypes.data, 0, 10, _YIELD, YIELD_EVERY)
    n = 20000
    best = min(_timed(lambda: _poll(flag.ctypes.data, 0, n, _YIELD, YIELD_EVERY)) for _ in range(3))
    return max(1.0, n / (best * 1e6))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class _Worker:
    """One thread that runs fn(arg), or a native task, when posted. Handshake: flags[0] counts tasks
    posted, flags[8] tasks done (another cache line), flags[1:3] a native task's function and
    argument, flags[9] whether the caller sleeps. Idle, the thread polls flags[0] in native code
    without the GIL for SPIN_US (`_serve`, which also runs native tasks, so those never take the
    GIL), then sleeps on an Event; a caller waiting for flags[8] polls, then sleeps on another.
    `asleep` is set and read under the GIL, which orders it; flags[9] and flags[8] are written
    sequentially consistent (`_store_sc`) on both sides, so no wake-up is lost."""

    def __init__(self, name, polls):
        self.flags = np.zeros(16, np.int64)
        self.addr = self.flags.ctypes.data
        self.polls = polls
        self.fn = self.arg = self.error = None
        self.asleep = self.stopped = False
        self.wake, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self):
        seen = 0
        while True:
            # seen moves on with every return: native tasks run in _serve count too (comparing its
            # idle return with the old count instead made a Python task posted meanwhile run twice)
            what, seen = _serve(self.addr, seen, self.polls, _YIELD, YIELD_EVERY)
            if what == _NATIVE_DONE:                          # a native task done, its caller asleep
                self.done.set()
                continue
            if what == _IDLE:                                 # idle for SPIN_US: sleep until posted
                self.asleep = True
                while self.flags[0] == seen:
                    self.wake.wait()
                    self.wake.clear()
                self.asleep = False
                continue
            if self.stopped:
                return
            try:
                self.fn(self.arg)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which re-raises it
                self.error = e
            _publish(self.addr + 64, seen)
            if self.flags[9]:
                self.done.set()

    def post(self, fn, arg, native=0):
        """Run fn(arg) on this worker (after the previous task, if a caller interrupted left it
        running); native: fn is 0 and arg an address, the argument of the C function `native`."""
        if self.flags[8] != self.flags[0]:
            self.wait()
        self.fn, self.arg, self.error = fn, arg, None
        self.flags[1], self.flags[2] = native, arg if native else 0
        _publish(self.addr, self.flags[0] + 1)
        if self.asleep:
            self.wake.set()

    def wait(self):
        """Wait for the task posted last; returns its exception or None, and drops its references."""
        n = self.flags[0]
        if _poll(self.addr + 64, n - 1, self.polls, _YIELD, YIELD_EVERY) != n:
            _publish(self.addr + 72, 1)                     # then the worker sets `done`
            while _poll(self.addr + 64, n - 1, 0) != n:
                self.done.wait()
                self.done.clear()
            _publish(self.addr + 72, 0)
        err, self.fn, self.arg, self.error = self.error, None, None, None
        return err

    def stop(self):
        self.stopped = True
        self.post(None, None)


class _Pool:
    """`size` workers and a lock: one caller thread at a time hands off work (`owner`)."""

    def __init__(self, size):
        polls = int(SPIN_US * _polls_per_us())
        self.workers = [_Worker(f"{_PREFIX}_{i}", polls) for i in range(size)]
        self.size = size
        self.lock = threading.Lock()
        self.owner = None

    def run(self, fns):
        """fns[i](i) for i >= 1 on worker i-1 and fns[0](0) here (fns[0] None: nothing here); waits
        for all, then raises the first error (this thread's first). The lock must be held."""
        away = fns[1:self.size + 1]
        for i, fn in enumerate(away):
            self.workers[i].post(fn, i + 1)
        err = None
        try:
            for i, fn in enumerate(fns):
                if fn is not None and not 1 <= i <= len(away):  # more parts than workers: the rest here
                    fn(i)
        except BaseException as e:  # noqa: BLE001 - re-raised once every worker is done
            err = e
        errs = [w.wait() for w in self.workers[:len(away)]]
        err = err or next((e for e in errs if e is not None), None)
        if err is not None:
            raise err

    def run_native(self, fn_addr, here, blocks):
        """here(blocks[0]) on this thread and the C function fn_addr(blocks[i].ctypes.data) on
        worker i-1; `here` and fn_addr must raise nothing. The lock must be held."""
        away = blocks[1:self.size + 1]
        for i, b in enumerate(away):
            self.workers[i].post(None, b.ctypes.data, fn_addr)
        try:
            for i, b in enumerate(blocks):
                if not 1 <= i <= len(away):
                    here(b)
        finally:
            for w in self.workers[:len(away)]:
                w.wait()

    def acquire(self, blocking):
        """Take the pool for this thread; False if this thread already has it (a nested call) or,
        not blocking, another one does."""
        me = threading.get_ident()
        if self.owner == me or not self.lock.acquire(blocking):
            return False
        self.owner = me
        return True

    def release(self):
        self.owner = None
        self.lock.release()

    def shutdown(self):
        for w in self.workers:
            w.stop()


@atexit.register
def _stop_workers():
    """At interpreter exit: the workers leave their loops (none is left polling in native code)."""
    pool = _pool
    if pool is not None and pool[1] is not None and pool[0] == os.getpid():
        pool[1].shutdown()
        for w in pool[1].workers:
            w.thread.join(timeout=1.0)


def workers():
    """(pool, (set_num_threads, get_num_threads)) for OpenBLAS, or None to run serially."""
    global _pool
    if THREADS < 2:
        return None
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():                      # first use, or after a fork
            np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)      # make sure BLAS is loaded
            setters = find_openblas_thread_setters()
            _pool = (os.getpid(), _Pool(THREADS) if setters else None, setters)
    return _pool[1:] if _pool[1] is not None else None


def set_threads(n: int) -> None:
    """Use n worker threads from now on, and n OpenBLAS threads outside `run_parallel`.

    For a process that learns its share of the cores after import (a Spark task: spark.task.cpus);
    the pool is rebuilt at its next use. Not to be called while `run_parallel` runs.
    """
    global THREADS, _pool
    n = max(1, int(n))
    with _pool_lock:
        if _pool is not None and _pool[1] is not None and n != THREADS:
            _pool[1].shutdown()
            _pool = None
        THREADS = n
    np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)           # make sure BLAS is loaded
    setters = find_openblas_thread_setters()
    if setters is not None:
        setters[0](n)


def n_workers() -> int:
    return THREADS if workers() is not None else 1


def run_parallel(fn, items):
    """fn(item) for every item: on the worker threads with 1 BLAS thread each, or serially here.
    The workers take the items in order, each the next one left; an error stops them taking more,
    and is re-raised once all are done. Called from a worker thread (nested: a decode-step kernel
    inside an encoder slice, say), or while this thread's own call holds the workers, it runs
    serially there rather than wait on the pool it occupies; another thread's call waits its turn."""
    items = list(items)
    pool = workers()
    if pool is None or len(items) < 2 or threading.current_thread().name.startswith(_PREFIX) \
            or not pool[0].acquire(blocking=True):
        for it in items:
            fn(it)
        return
    ex, (set_blas_threads, get_blas_threads) = pool
    n = get_blas_threads()
    set_blas_threads(1)
    left, failed = iter(items), []

    def drain(_):
        for it in left:  # one shared iterator: next() is atomic under the GIL
            if failed:
                return
            try:
                fn(it)
            except BaseException:
                failed.append(True)
                raise
    try:
        ex.run([None] + [drain] * min(ex.size, len(items)))
    finally:
        set_blas_threads(n)
        ex.release()


def split(n, parts):
    """[(start, stop), ...]: range(n) cut into at most `parts` near-equal contiguous pieces."""
    parts = max(1, min(parts, n))
    cuts = [n * i // parts for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def run_parts(fn, parts):
    """fn(part) for every part, the first on the calling thread and the rest on the workers, for
    nogil kernels that call no BLAS (a decode step's packed matmuls and attention). Unlike
    `run_parallel` it leaves the BLAS thread count alone and hands off one part fewer: a decode
    step makes ~70 such calls per token, each only 0.05-1 ms of work. At most n_workers() parts
    (the caller and n_workers() - 1 workers); nested in a worker, with no workers, or while
    another call has them, all run here. Waits for every part, then re-raises the first error."""
    pool = workers()
    if pool is None or len(parts) < 2 or threading.current_thread().name.startswith(_PREFIX):
        for p in parts:
            fn(p)
        return
    if len(parts) > THREADS:
        raise ValueError(f"run_parts takes at most {THREADS} parts, got {len(parts)}")
    ex = pool[0]
    if not ex.acquire(blocking=False):
        for p in parts:
            fn(p)
        return
    try:
        ex.run([lambda i, p=p: fn(p) for p in parts])
    finally:
        ex.release()


def run_native(fn_addr, here, blocks):
    """`run_parts` for native parts: part i described by the int64 array blocks[i], run by a Numba
    cfunc of signature void(intp) at fn_addr given blocks[i].ctypes.data, and on the calling thread
    by here(blocks[0]), a nogil njit of the same work. The workers run these in native code without
    taking the GIL, so a hand-off costs ~8 us, not the 25-45 of a Python task (whose worker must
    wake for the GIL while the caller holds it; module docstring). The kernels must not raise."""
    pool = workers()
    if pool is None or len(blocks) < 2 or threading.current_thread().name.startswith(_PREFIX) \
            or not pool[0].acquire(blocking=False):
        for b in blocks:
            here(b)
        return
    try:
        pool[0].run_native(fn_addr, here, blocks)
    finally:
        pool[0].release()
