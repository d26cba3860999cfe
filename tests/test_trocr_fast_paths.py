"""The encoder's fast paths against their readable references (no torch needed).

- `encoder_layer_fast` (sliced across worker threads) == `encoder_layer` (plain NumPy), threaded
  and serial, with and without attention probabilities and q/k/v biases, batch > 1, with float32
  and with int8 matrices (int8 x int8 products: both sides quantise the same rows the same way);
- the softmax kernel's lane-parallel row max at widths around its lane count, with masked (-inf) scores.
Parity of the whole encoder with transformers is tests/test_trocr_parity.py.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from ocr_base import threads
from trocr_np import kernels
from trocr_np.encoder import encoder_layer, encoder_layer_fast, layer_matrices
from trocr_np.kernels_i8 import I8Panels
from trocr_np.quant import ENCODER_MATRIX, PackedWeight, quantize_int8

TOL = 1e-5  # float32 max abs difference between two orderings of the same float32 arithmetic


def _maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _layer(D=64, H=4, F=128, qkv_bias=False, act="gelu", seed=0):
    """Random params for encoder layer 0 (checkpoint names) and a minimal config."""
    rng = np.random.default_rng(seed)
    p = "encoder.encoder.layer.0."
    shapes = {"attention.attention.query.weight": (D, D), "attention.attention.key.weight": (D, D),
              "attention.attention.value.weight": (D, D), "attention.output.dense.weight": (D, D),
              "attention.output.dense.bias": (D,), "intermediate.dense.weight": (F, D),
              "intermediate.dense.bias": (F,), "output.dense.weight": (D, F), "output.dense.bias": (D,)}
    if qkv_bias:
        shapes.update({f"attention.attention.{n}.bias": (D,) for n in ("query", "key", "value")})
    params = {p + k: (rng.standard_normal(s) * (0.5 / np.sqrt(s[-1]) if len(s) == 2 else 0.1)).astype(np.float32)
              for k, s in shapes.items()}
    for ln in ("layernorm_before", "layernorm_after"):
        params[p + ln + ".weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        params[p + ln + ".bias"] = (0.1 * rng.standard_normal(D)).astype(np.float32)
    enc = types.SimpleNamespace(num_attention_heads=H, qkv_bias=qkv_bias, layer_norm_eps=1e-12, hidden_act=act)
    return params, types.SimpleNamespace(encoder=enc)


def _int8(params):
    """The layer's matrices as an int8 --quantize-encoder folder holds them, made ready to run
    (I8Panels: int8 x int8 products, trocr_np/kernels_i8.py)."""
    packed = {}
    for k, v in params.items():
        q, scale = quantize_int8(v) if ENCODER_MATRIX.match(k) else (None, None)
        packed[k] = v if q is None else PackedWeight(q, "int8", scale)
    return layer_matrices(packed, "encoder.encoder.layer.0.")


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("qkv_bias,act,B,S", [(False, "gelu", 1, 37), (True, "relu", 3, 50)])
@pytest.mark.parametrize("int8", [False, True])
def test_encoder_layer_fast_equals_reference(n_threads, qkv_bias, act, B, S, int8, monkeypatch):
    monkeypatch.setattr(threads, "THREADS", n_threads)
    if n_threads > 1 and threads.workers() is None:
        pytest.skip("no OpenBLAS per-thread setting here: the fast path runs serially")
    params, cfg = _layer(qkv_bias=qkv_bias, act=act)
    if int8:
        params = _int8(params)
        assert sum(isinstance(v, I8Panels) for v in params.values()) == 6
    x = (np.random.default_rng(1).standard_normal((B, S, 64)) * 2).astype(np.float32)
    x0 = x.copy()
    want, want_p = encoder_layer(params, cfg, 0, x.copy(), output_attentions=True)
    got, got_p = encoder_layer_fast(params, cfg, 0, x, output_attentions=True)
    assert np.array_equal(x, x0)  # the input is not modified
    assert _maxdiff(got, want) < TOL and _maxdiff(got_p, want_p) < TOL
    got2, none = encoder_layer_fast(params, cfg, 0, x)
    assert none is None and np.array_equal(got2, got)  # same result without the probabilities


def test_encoder_layer_fast_threaded_equals_serial(monkeypatch):
    if threads.workers() is None:
        pytest.skip("no worker threads here")
    params, cfg = _layer(D=96, H=6, F=192)
    x = np.random.default_rng(2).standard_normal((2, 41, 96)).astype(np.float32)
    par = encoder_layer_fast(params, cfg, 0, x, output_attentions=True)
    monkeypatch.setattr(threads, "THREADS", 1)
    ser = encoder_layer_fast(params, cfg, 0, x, output_attentions=True)
    for a, b in zip(par, ser):
        assert _maxdiff(a, b) < 1e-6


@pytest.mark.parametrize("int8", [False, True])
def test_encoder_layers_reusing_one_workspace_equal_fresh_arrays(int8):
    """encoder_forward hands every layer the same `work` dict (its arrays reused, the output
    ping-ponging between two): four layers in a row give the numbers of four with fresh arrays."""
    params, cfg = {}, None
    for i in range(4):
        layer, cfg = _layer(seed=10 + i)
        layer = _int8(layer) if int8 else layer
        params.update({k.replace("layer.0.", f"layer.{i}."): v for k, v in layer.items()})
    x0 = np.random.default_rng(3).standard_normal((2, 29, 64)).astype(np.float32)
    fresh, reused, work = x0, x0, {}
    for i in range(4):
        fresh, _ = encoder_layer_fast(params, cfg, i, fresh)
        reused, _ = encoder_layer_fast(params, cfg, i, reused, work=work)
        assert np.array_equal(fresh, reused), i
    assert {"qkv", "o", "out0", "out1", "fc1"} <= set(work)


@pytest.mark.parametrize("d", [1, 2, 15, 16, 17, 31, 33, 577])
def test_softmax_row_max_all_widths(d):
    rng = np.random.default_rng(d)
    s = (rng.standard_normal((6, d)) * 8).astype(np.float32)
    s[1, -1] = 50                                  # the max in the tail after the lanes
    s[2, 0] = 50                                   # the max in the first element
    if d > 3:
        s[3, :d // 2] = -np.inf                    # masked scores
    got = kernels.softmax_(s.copy(), 0.125)
    assert _maxdiff(got, kernels.softmax_ref(s * np.float32(0.125))) < 1e-6
    if d > 3:
        assert np.all(got[3, :d // 2] == 0)


def test_split_covers_range():
    for n in (1, 5, 577):
        for parts in (1, 2, 3, 8):
            pieces = threads.split(n, parts)
            assert pieces[0][0] == 0 and pieces[-1][1] == n and len(pieces) == min(parts, n)
            assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_gelu_dense_grid_accuracy():
    """bias+GELU (rational erf in float64) within 1e-6 of exact GELU everywhere, tails included."""
    x = np.concatenate([np.linspace(-12, 12, 480001), [-1e4, -50, -5.7, 5.7, 50, 1e4]]).astype(np.float32)
    want = kernels.gelu_ref(x).astype(np.float64)
    got = kernels.bias_act_(x[None].copy(), np.zeros(x.size, np.float32), "gelu")[0]
    assert float(np.abs(got - want).max()) < 5e-7


def test_run_parallel_one_blas_thread_inside_and_restores_it():
    """OpenBLAS's thread count is process-wide: the workers see 1, the caller gets its count back."""
    pool = threads.workers()
    if pool is None:
        pytest.skip("no worker threads here")
    set_n, get_n = pool[1]
    before = get_n()
    seen = []

    def work(_):
        seen.append(get_n())
        return np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)
    threads.run_parallel(work, range(4))
    assert seen == [1, 1, 1, 1] and get_n() == before
    with pytest.raises(ZeroDivisionError):
        threads.run_parallel(lambda i: 1 // i, [1, 0])
    assert get_n() == before


def test_detector_bands_restore_blas_threads():
    """detector_np's band workers also leave the process-wide OpenBLAS thread count as they found it
    (they used to set it to 1 for good, so the recogniser after the detector ran single-threaded)."""
    from detector_np import layers

    pool = threads.workers()
    if pool is None:
        pytest.skip("no worker threads here")
    _, get_n = pool[1]
    before = get_n()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 20, 8)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    got = layers.conv2d_im2col(x, w, np.zeros(16, np.float32))
    assert got.shape == (24, 20, 16) and get_n() == before


@pytest.mark.parametrize("m", [2, 5, 16])
def test_matmul_wt_small_m_threaded_equals_serial_and_reference(m, monkeypatch):
    """The few-row GEMV kernel split over the workers (forced for a small matrix) == serial == float64."""
    rng = np.random.default_rng(20 + m)
    x = rng.standard_normal((m, 200)).astype(np.float32)
    w = (rng.standard_normal((301, 200)) * 0.05).astype(np.float32)  # 301: ragged 4-row blocks and halves
    monkeypatch.setattr(kernels, "PARALLEL_MIN_BYTES", 0)
    par = kernels.matmul_wt(x, w)
    assert _maxdiff(par, x.astype(np.float64) @ w.T.astype(np.float64)) < TOL
    monkeypatch.setattr(threads, "THREADS", 1)
    assert np.array_equal(kernels.matmul_wt(x, w), par)  # each output column is computed the same way


def test_attend_one_threaded_equals_reference(monkeypatch):
    monkeypatch.setattr(kernels, "ATTEND_PARALLEL_MIN_BYTES", 0)
    rng = np.random.default_rng(21)
    q = rng.standard_normal((3, 5, 16)).astype(np.float32)
    k, v = rng.standard_normal((2, 3, 5, 40, 16)).astype(np.float32)
    for n in (1, 9, 40):
        o, p = kernels.attend_one(q, k, v, n)
        o_ref, p_ref = kernels.attend_one_ref(q, k, v, n)
        assert _maxdiff(o, o_ref) < TOL and _maxdiff(p, p_ref) < 1e-6


def test_attend_one_native_hand_off_equals_serial(monkeypatch):
    """The (batch, head) pairs split over the workers as native tasks (ocr_base.threads.run_native)
    give the serial kernel's out and probs bit for bit, call after call."""
    rng = np.random.default_rng(23)
    q = rng.standard_normal((2, 3, 16)).astype(np.float32)
    k, v = rng.standard_normal((2, 2, 3, 50, 16)).astype(np.float32)
    for n in (1, 9, 50):
        monkeypatch.setattr(kernels, "ATTEND_NATIVE_MIN_BYTES", 1 << 60)
        o0, p0 = kernels.attend_one(q, k, v, n)
        monkeypatch.setattr(kernels, "ATTEND_NATIVE_MIN_BYTES", 0)
        for _ in range(30):
            o, p = kernels.attend_one(q, k, v, n)
            assert np.array_equal(o, o0) and np.array_equal(p, p0)
        monkeypatch.setattr(kernels, "ATTEND_NATIVE_MIN_BYTES", 1 << 60)
        monkeypatch.setattr(kernels, "ATTEND_NO_BLAS_MIN_BYTES", 0)  # a step of 8/16-bit weights
        o, p = kernels.attend_one(q, k, v, n, no_blas=True)
        assert np.array_equal(o, o0) and np.array_equal(p, p0)


@pytest.mark.parametrize("split", ["serial", "python", "native"])
def test_attend_one_shared_rows_equal_copied_rows(split, monkeypatch):
    """rows=: batch rows reading other rows' K/V (the beams of one image, KVCache.cross_rows) give,
    bit for bit, what the same K/V copied per row give, serially and split over the workers (the
    pairs then go in (K/V row, head, row) order), and match the reference."""
    monkeypatch.setattr(kernels, "ATTEND_PARALLEL_MIN_BYTES", 1 << 60 if split == "serial" else 0)
    monkeypatch.setattr(kernels, "ATTEND_NATIVE_MIN_BYTES", 0 if split == "native" else 1 << 60)
    rng = np.random.default_rng(24)
    k, v = rng.standard_normal((2, 3, 5, 40, 16)).astype(np.float32)
    for rows in ([0, 0, 0, 1, 1, 1], [2, 0, 2, 1], [1], [0, 1, 2]):
        rows = np.array(rows)
        q = rng.standard_normal((len(rows), 5, 16)).astype(np.float32)
        for n in (1, 9, 40):
            o, p = kernels.attend_one(q, k, v, n, rows=rows)
            o1, p1 = kernels.attend_one(q, np.ascontiguousarray(k[rows]), np.ascontiguousarray(v[rows]), n)
            assert np.array_equal(o, o1) and np.array_equal(p, p1)
            o_ref, p_ref = kernels.attend_one_ref(q, k[rows], v[rows], n)
            assert _maxdiff(o, o_ref) < TOL and _maxdiff(p, p_ref) < 1e-6
    q = rng.standard_normal((2, 5, 16)).astype(np.float32)
    for bad in ([0, 3], [-1, 0], [0]):  # past the K/V rows, negative, not one per row: an error, no stray read
        with pytest.raises(ValueError, match="K/V row"):
            kernels.attend_one(q, k, v, 9, rows=np.array(bad))


@pytest.mark.parametrize("threaded", [True, False])
def test_attend_one_prefetch_changes_nothing(threaded, monkeypatch):
    """The K/V prefetch hints (ahead of the keys, into the values, into the next head) move only
    cache lines: out and probs are the same float32 as without them, also across a worker split."""
    monkeypatch.setattr(kernels, "ATTEND_PARALLEL_MIN_BYTES", 0 if threaded else 1 << 60)
    rng = np.random.default_rng(22)
    q = rng.standard_normal((2, 3, 16)).astype(np.float32)
    k, v = rng.standard_normal((2, 2, 3, 50, 16)).astype(np.float32)
    for n in (1, 9, 50):
        monkeypatch.setattr(kernels, "ATTEND_PREFETCH_BYTES", 0)
        o0, p0 = kernels.attend_one(q, k, v, n)
        for ahead in (64, 640, 1 << 20):
            monkeypatch.setattr(kernels, "ATTEND_PREFETCH_BYTES", ahead)
            o, p = kernels.attend_one(q, k, v, n)
            assert np.array_equal(o, o0) and np.array_equal(p, p0)


def test_run_parts_first_part_here_rest_on_workers():
    """run_parts runs its first part on the calling thread, the others on the workers, leaves the
    BLAS thread count alone, waits for every part before re-raising one's error, and nested in a
    worker runs serially there."""
    if threads.workers() is None:
        pytest.skip("no worker threads here")
    import threading

    here = threading.current_thread().name
    parts = list(range(threads.THREADS))
    seen = {}
    threads.run_parts(lambda p: seen.__setitem__(p, threading.current_thread().name), parts)
    assert sorted(seen) == parts and seen[0] == here
    assert all(seen[p].startswith(threads._PREFIX) for p in parts[1:])
    done = []

    def slow_or_fail(p):
        if p == 0:
            raise ZeroDivisionError
        import time
        time.sleep(0.05)
        done.append(p)
    with pytest.raises(ZeroDivisionError):
        threads.run_parts(slow_or_fail, parts)
    assert sorted(done) == parts[1:]  # the workers' parts finished before the error came back
    nested = []
    threads.run_parts(lambda p: threads.run_parts(lambda q: nested.append((p, q)), [10, 11]) if p else None, [0, 1])
    assert sorted(nested) == [(1, 10), (1, 11)]
    with pytest.raises(ValueError):
        threads.run_parts(lambda p: None, list(range(threads.THREADS + 1)))


def test_run_parallel_covers_items_and_nests_serially():
    """Every item runs once on a worker; a nested call inside a worker (a decode-step kernel inside
    an encoder slice) runs serially in that worker instead of waiting on the pool it occupies,
    which could deadlock once every worker waits."""
    if threads.workers() is None:
        pytest.skip("no worker threads here")
    import threading

    done = []

    def inner(i):
        done.append((threading.current_thread().name, i))

    def outer(i):
        threads.run_parallel(inner, [10 * i, 10 * i + 1])
        return threading.current_thread().name

    names = {}
    threads.run_parallel(lambda i: names.__setitem__(i, outer(i)), [1, 2, 3, 4])
    assert sorted(j for _, j in done) == [10, 11, 20, 21, 30, 31, 40, 41]
    for name, j in done:
        assert name == names[j // 10] and name.startswith(threads._PREFIX)
