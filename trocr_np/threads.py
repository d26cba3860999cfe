"""Worker threads that each run single-threaded BLAS, for splitting work into independent slices.

On a few cores, one multi-threaded GEMM followed by a serial Numba kernel leaves the kernel on one
core, and a *parallel* Numba kernel right after a GEMM fights OpenBLAS's still-spinning threads
(../shared/reference/performance.md, B2). Instead our own worker threads each take whole slices of
the work (GEMM with one BLAS thread, then the nogil Numba kernels on that slice), with no
synchronisation until the slices are done. That needs OpenBLAS's per-thread setting
`openblas_set_num_threads_local` (OpenBLAS >= 0.3.27, the one bundled with NumPy's wheels); without
it, or with TROCR_NP_THREADS=1, `run_parallel` runs the slices serially on the calling thread.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def find_openblas_local_setter():
    """ctypes handle on OpenBLAS's `openblas_set_num_threads_local(int)` in this process, or None."""
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
        for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local64_"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                return fn
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
_pool = None                     # (pid, executor or None); rebuilt after a fork
_pool_lock = threading.Lock()


def workers():
    """The shared executor (each worker set to 1 BLAS thread), or None to run serially."""
    global _pool
    if THREADS < 2:
        return None
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():                      # first use, or after a fork
            np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)      # make sure BLAS is loaded
            set_local = find_openblas_local_setter()
            ex = None
            if set_local is not None:
                ex = ThreadPoolExecutor(THREADS, thread_name_prefix="trocr_np", initializer=lambda: set_local(1))
            _pool = (os.getpid(), ex)
    return _pool[1]


def n_workers() -> int:
    return THREADS if workers() is not None else 1


def run_parallel(fn, items):
    """fn(item) for every item: on the worker threads, or serially here. Re-raises a worker's error."""
    ex = workers()
    if ex is None or len(items) < 2:
        for it in items:
            fn(it)
        return
    for f in [ex.submit(fn, it) for it in items]:
        f.result()


def split(n, parts):
    """[(start, stop), ...]: range(n) cut into at most `parts` near-equal contiguous pieces."""
    parts = max(1, min(parts, n))
    cuts = [n * i // parts for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))
