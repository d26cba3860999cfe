"""ocr_base.threads.set_threads: a process that learns its share of the cores after import (a Spark task)."""
from ocr_base import threads


def test_set_threads_sets_workers_and_openblas():
    old = threads.THREADS
    setters = threads.find_openblas_thread_setters()
    blas_old = setters[1]() if setters else None
    try:
        threads.set_threads(1)
        assert threads.THREADS == 1 and threads.workers() is None and threads.n_workers() == 1
        if setters:
            assert setters[1]() == 1
        threads.set_threads(3)
        assert threads.THREADS == 3
        if setters:
            assert setters[1]() == 3
            ex, _ = threads.workers()
            assert ex.size == len(ex.workers) == 3                                   # the pool was rebuilt at 3
            seen = []
            threads.run_parallel(seen.append, list(range(7)))
            assert sorted(seen) == list(range(7))
    finally:
        threads.set_threads(old)
        if setters:
            setters[0](blas_old)
