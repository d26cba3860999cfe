"""ocr_base.threads' hand-offs: Python tasks (run_parts, run_parallel) and native ones (run_native),
through the polling path and the sleeping one, many in a row, with errors, from two threads at once,
and at interpreter exit. No timings are asserted."""
from __future__ import annotations

import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from numba import types

from ocr_base import threads


@pytest.fixture(params=["polling", "sleeping"])
def pool(request):
    """A 2-worker pool whose idle workers poll (the default SPIN_US) or sleep at once (SPIN_US = 0:
    every hand-off and every wait goes through the Events)."""
    old_threads, old_spin = threads.THREADS, threads.SPIN_US
    threads.SPIN_US = old_spin if request.param == "polling" else 0.0
    threads.set_threads(3)  # a new pool at the next use, made with this SPIN_US
    threads.set_threads(2)
    if threads.workers() is None:
        pytest.skip("no worker threads here")
    yield threads.workers()[0]
    threads.SPIN_US = old_spin
    threads.set_threads(old_threads)


@numba.njit(nogil=True)
def _fill(block):
    """block = [address of an int64 array a, start, stop, value]: a[start:stop] = value."""
    a = numba.carray(threads._void_ptr(block[0]), (block[2],), np.int64)
    for i in range(block[1], block[2]):
        a[i] = block[3]


@numba.cfunc(types.void(types.intp))
def _fill_task(addr):
    _fill(numba.carray(threads._void_ptr(addr), (4,), np.int64))


def test_many_hand_offs_in_a_row(pool):
    """Hundreds of hand-offs back to back (a decode step makes ~80 per token), Python and native
    interleaved: every part runs once, on the thread it should, and each call waits for all."""
    seen = []
    a = np.zeros(64, np.int64)
    for n in range(300):
        threads.run_parts(lambda p: seen.append((n, p, threading.current_thread().name)), [0, 1])
        blocks = [np.array([a.ctypes.data, 0, 32, n], np.int64), np.array([a.ctypes.data, 32, 64, -n], np.int64)]
        threads.run_native(_fill_task.address, _fill, blocks)
        assert (a[:32] == n).all() and (a[32:] == -n).all()
    assert sorted((n, p) for n, p, _ in seen) == [(n, p) for n in range(300) for p in (0, 1)]
    assert all(name.startswith(threads._PREFIX) == (p == 1) for _, p, name in seen)
    assert all(w.thread.is_alive() for w in pool.workers)


def test_worker_error_is_raised_and_the_pool_goes_on(pool):
    """An exception in a worker's part comes back to the caller once every part is done; the
    workers keep serving (the next calls run normally); the caller's own error wins."""
    done = []

    def part(p):
        if p == 1:
            raise KeyError("worker")
        done.append(p)
    for _ in range(20):
        with pytest.raises(KeyError):
            threads.run_parts(part, [0, 1])
    assert done == [0] * 20

    def both(p):
        raise (ValueError if p == 0 else KeyError)(p)
    with pytest.raises(ValueError):
        threads.run_parts(both, [0, 1])
    seen = []
    threads.run_parts(seen.append, [0, 1])
    assert sorted(seen) == [0, 1]


def test_run_parallel_error_stops_the_items_and_waits(pool):
    """run_parallel: every item once without errors; with one, the workers take no more items
    after it, and the call returns only after the running items finish."""
    seen = []
    threads.run_parallel(seen.append, range(50))
    assert sorted(seen) == list(range(50))
    ran, running = [], []

    def item(i):
        running.append(i)
        if i == 3:
            raise ZeroDivisionError
        ran.append(i)
        running.remove(i)
    with pytest.raises(ZeroDivisionError):
        threads.run_parallel(item, range(1000))
    assert running == [3] and len(ran) < 999


def test_two_caller_threads_at_once(pool):
    """Two threads handing off at the same time: one has the workers, the other's call runs on its
    own thread meanwhile (run_parts) or waits its turn (run_parallel); every part runs once."""
    out = {}

    def caller(name):
        got = []
        for n in range(200):
            threads.run_parts(lambda p: got.append((n, p)), [0, 1])
            threads.run_parallel(lambda i: got.append((n, 10 + i)), [0, 1, 2])
        out[name] = sorted(got)
    ts = [threading.Thread(target=caller, args=(k,)) for k in "ab"]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    want = sorted((n, p) for n in range(200) for p in (0, 1, 10, 11, 12))
    assert out == {"a": want, "b": want}


def test_exit_while_workers_poll():
    """A process that hands off work and exits at once (its workers still polling) exits cleanly."""
    code = ("from ocr_base import threads; threads.set_threads(2); s = [];"
            "[threads.run_parts(s.append, [0, 1]) for _ in range(100)]; assert len(s) == 200; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_serve_reports_the_count_after_native_tasks():
    """A worker's native wait runs native tasks itself and must hand back the count it reached:
    the worker once compared an idle return with its old count, took it for a Python task and ran
    the task then posted a second time (a hand-off in ~1 of 6 runs of the test above, sleeping)."""
    a = np.zeros(4, np.int64)
    block = np.array([a.ctypes.data, 0, 4, 7], np.int64)
    flags = np.zeros(16, np.int64)
    flags[1], flags[2], flags[0] = _fill_task.address, block.ctypes.data, 1   # task 1: native
    what, count = threads._serve(flags.ctypes.data, 0, 0, 0, 8)
    assert (what, count) == (threads._IDLE, 1) and flags[8] == 1 and (a == 7).all()
    flags[9] = 1                                                                 # its caller asleep
    flags[0] = 2
    assert threads._serve(flags.ctypes.data, 1, 0, 0, 8) == (threads._NATIVE_DONE, 2)
    flags[1], flags[0] = 0, 3                                                    # task 3: Python
    assert threads._serve(flags.ctypes.data, 2, 0, 0, 8) == (threads._PYTHON_TASK, 3)
