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
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


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
_pool = None                     # (pid, executor, (set, get)) or (pid, None, None); rebuilt after a fork
_pool_lock = threading.Lock()
_PREFIX = "trocr_np_worker"


def workers():
    """(executor, (set_num_threads, get_num_threads)) for OpenBLAS, or None to run serially."""
    global _pool
    if THREADS < 2:
        return None
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():                      # first use, or after a fork
            np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)      # make sure BLAS is loaded
            setters = find_openblas_thread_setters()
            ex = ThreadPoolExecutor(THREADS, thread_name_prefix=_PREFIX) if setters else None
            _pool = (os.getpid(), ex, setters)
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
            _pool[1].shutdown(wait=False)
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
    Re-raises a worker's error. Called from a worker thread (nested: a decode-step kernel inside
    an encoder slice, say), it runs serially there rather than wait on the pool it occupies."""
    pool = workers()
    if pool is None or len(items) < 2 or threading.current_thread().name.startswith(_PREFIX):
        for it in items:
            fn(it)
        return
    ex, (set_blas_threads, get_blas_threads) = pool
    n = get_blas_threads()
    set_blas_threads(1)
    try:
        for f in [ex.submit(fn, it) for it in items]:
            f.result()
    finally:
        set_blas_threads(n)


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
    (the caller and n_workers() - 1 workers); nested in a worker, or with no workers, all run here."""
    pool = workers()
    if pool is None or len(parts) < 2 or threading.current_thread().name.startswith(_PREFIX):
        for p in parts:
            fn(p)
        return
    if len(parts) > THREADS:
        raise ValueError(f"run_parts takes at most {THREADS} parts, got {len(parts)}")
    futures = [pool[0].submit(fn, p) for p in parts[1:]]
    try:
        fn(parts[0])
    finally:
        for f in futures:  # wait for every part before returning (or re-raising), then raise a worker's error
            f.exception()
    for f in futures:
        f.result()
