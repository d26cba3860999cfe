"""Elementwise and small-attention kernels: a readable NumPy reference and a Numba fast path.

Every op has a `*_ref` NumPy version (what the math is; for `matmul_wt` it is plain `x @ w.T`)
and a fast version used by the model; `tests/test_trocr_parity.py` holds each fast version
equal to its reference.

Why Numba at all: NumPy has no erf, and its softmax takes five passes with temporaries. The
fast kernels use `exp32`/`erf_rational`, written out so LLVM vectorises them (Numba's math.exp/erf
are scalar libm calls: no SVML in pip builds), which made bias+GELU ~8x and softmax ~2x faster
than the first versions.

Threading: big matmuls stay in BLAS (OpenBLAS runs its own threads). The Numba kernels are
*serial* on purpose: on 2 cores a parallel Numba loop right after an OpenBLAS GEMM fights
OpenBLAS's still-spinning threads; measured here, GEMM + parallel GELU took 13.0-13.6 ms
against 11.3-11.6 ms with the serial GELU (docs/architecture.md, "One owner of the cores").
They are `nogil`, so the encoder runs them on slices in its own worker threads, each with
single-threaded BLAS (ocr_base.threads, encoder.encoder_layer_fast). Decode steps of several rows
(a batch, or beams) split their big weight matrices and their cross-attention heads over the same
workers (`matmul_wt`, `attend_one`); one row stays in OpenBLAS's own threads, which are faster
for a single GEMV than any hand-off of ours.

`attend_one` reads a decode step's cached K/V as one stream per worker (a pair's keys, its values,
the next pair's keys) and prefetches ATTEND_PREFETCH_BYTES ahead in it (`prefetch`): on an Intel
Xeon VM one core's demand misses alone streamed only ~6-8 GB/s. Cross-attention is the largest
cost of a decode step after the matrices: 57 MB of float32 K/V per image per token at base size,
20-27% of a 4-row step with 8/16-bit weights (trocr_np/decoder.py).

References: transformers 5.24 `activations.py` (GELUActivation = exact erf form),
`torch.nn.LayerNorm`, `models/trocr/modeling_trocr.py` (decoder attention).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ocr_base.threads import _void_ptr, n_workers, run_native, run_parallel, run_parts, split

_SQRT1_2 = 0.7071067811865476


# --------------------------------------------------------------------------- references

def layer_norm_ref(x, g, b, eps):
    """(..., D) -> (..., D): (x - mean) / sqrt(var + eps) * g + b, biased variance."""
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps) * g + b).astype(np.float32)


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu_ref(x):
    """Exact GELU x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); the tanh approximation breaks parity."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _erf(x64 * _SQRT1_2).astype(np.float64))).astype(np.float32)


def relu_ref(x):
    return np.maximum(x, 0).astype(np.float32)


ACT_REF = {"gelu": gelu_ref, "relu": relu_ref}


def softmax_ref(x):
    """Softmax over the last axis."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attend_one_ref(q, k, v, n):
    """One query per (batch, head) against the first n cached keys.

    q (B, H, hd) already scaled, k/v (B, H, T_max, hd) -> out (B, H, hd), probs (B, H, n)
    """
    s = np.einsum("bhd,bhtd->bht", q, k[:, :, :n])
    p = softmax_ref(s)
    return np.einsum("bht,bhtd->bhd", p, v[:, :, :n]).astype(np.float32), p.astype(np.float32)


# --------------------------------------------------------------------------- fast path

# reassoc: the float64 sums may be vectorised (lanes summed in another order; still float64)
@numba.njit(cache=True, fastmath={"reassoc"}, nogil=True)
def _layer_norm_rows(x, g, b, eps, out):
    n, d = x.shape
    for i in range(n):
        s = 0.0
        for j in range(d):
            s += x[i, j]
        mu = s / d
        s2 = 0.0
        for j in range(d):
            t = x[i, j] - mu
            s2 += t * t
        r = 1.0 / math.sqrt(s2 / d + eps)
        for j in range(d):
            out[i, j] = (x[i, j] - mu) * r * g[j] + b[j]


def layer_norm(x, g, b, eps):
    """Fast layer_norm_ref: one serial pass per row, float64 accumulators. (..., D) -> (..., D)"""
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    _layer_norm_rows(x2, np.asarray(g, np.float32), np.asarray(b, np.float32), float(eps), out)
    return out.reshape(x.shape)


@intrinsic
def prefer_512(typingctx):
    """Call first in a kernel: LLVM may vectorise its loops with 512-bit registers. On Intel server
    CPUs LLVM's tuning prefers 256-bit vectors (prefer-256-bit), so a loop Numba leaves to LLVM gets
    8 float32 lanes although the CPU has 16; this sets the function's own "prefer-vector-width"
    attribute, the per-function form of that choice (a process-wide NUMBA_CPU_FEATURES would be
    the user's call, not ours). Where the CPU has no AVX-512 it changes nothing (and on AMD Zen 4/5
    LLVM already prefers 512). It also changes which lanes a reassociated sum adds in which order:
    float32 rounding, within every fast kernel's stated tolerance. (llvmlite's attribute set
    accepts only its known names, so the string attribute goes in through set.add.)"""
    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _int32_bits_as_float32(typingctx, v):
    """Reinterpret int32 bits as float32 (an LLVM bitcast: free, and it vectorises)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return sig, codegen


@intrinsic
def fma64(typingctx, a, b, c):
    """a * b + c in float64 with one rounding (llvm.fma.f64, which vectorises: vfmadd on x86).
    A Horner step as one instruction: GELU's rational was bound by its separate multiplies and adds
    (bias + GELU, 7.1M values, one core of the AMD VM: 8.5 -> 6.3 ms)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d] * 3),
                                                           "llvm.fma.f64"), args)
    return sig, codegen


@intrinsic
def prefetch(typingctx, row, i):
    """A hint to bring the cache line holding row[i] (a 1-D array) into L2 ahead of its use:
    llvm.prefetch (read, locality 1), `prefetcht2` on x86. It changes no value and never faults,
    so i may point past the end. Measured on an Intel Xeon VM (AVX-512): one core's stream through
    a packed weight matrix went ~7 -> ~10-12 GB/s with it (trocr_np/kernels_q.py)."""
    sig = types.void(row, i)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        # llvmlite mangles the name for the pointer type: llvm.prefetch.p0i8 (typed-pointer LLVM); the
        # opaque-pointer LLVM of numba 0.68 (LLVM 22, checked here) upgrades it to .p0 itself
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 1), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(cache=True, inline="always")
def prefetch_row(row):
    """prefetch every 64-byte line of a contiguous 1-D row."""
    step = max(1, 64 // row.itemsize)
    for c in range(0, row.shape[0], step):
        prefetch(row, c)


@numba.njit(cache=True, inline="always")
def exp32(x):
    """float32 exp for x <= 88, ~1e-7 relative error, 0 below -87.3. Written out (range reduction
    x = k ln2 + r, degree-7 Taylor for e^r, 2^k built from its exponent bits) because Numba's
    math.exp is a scalar libm call that blocks SIMD; this one vectorises (AVX2/AVX-512)."""
    xc = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))
    r = xc - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)  # ln2 split hi + lo
    p = np.float32(1 / 5040)
    p = p * r + np.float32(1 / 720)
    p = p * r + np.float32(1 / 120)
    p = p * r + np.float32(1 / 24)
    p = p * r + np.float32(1 / 6)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    y = p * _int32_bits_as_float32((np.int32(k) + np.int32(127)) << 23)
    return y if x > np.float32(-87.3) else np.float32(0.0)


# erf(z) ~ z P(z^2) / Q(z^2) on |z| <= 4: a (5, 5) rational fitted to math.erf in float64 by
# linearised least squares (Sanathanan-Koerner iterations, reweighted toward minimax) on 4000
# Chebyshev nodes; max abs error 2.2e-8 on [0, 4]. Beyond 4, float32 erf is exactly +-1.
_ERF_P = (1.1283789773288804, 0.1962405070763461, 0.053466267903611225, 0.004003233640907857,
          0.00028802359999903786, 1.9747977284823636e-06)
_ERF_Q = (1.0, 0.5072447881226547, 0.11647283155996765, 0.015443637347662078,
          0.001216241998156439, 3.747956306953961e-05)


@numba.njit(cache=True, inline="always", error_model="numpy")
def erf_rational(z):
    """erf(z) for float64 z, abs error < 3e-8. No exp and one division, so LLVM vectorises it; in
    float64 because the same rational in float32 rounds to ~4e-7 near erf = 1 (GELU error 1.2e-6)."""
    zc = min(max(z, -4.0), 4.0)
    u = zc * zc
    p0, p1, p2, p3, p4, p5 = _ERF_P
    q0, q1, q2, q3, q4, q5 = _ERF_Q
    num = fma64(fma64(fma64(fma64(fma64(p5, u, p4), u, p3), u, p2), u, p1), u, p0)
    den = fma64(fma64(fma64(fma64(fma64(q5, u, q4), u, q3), u, q2), u, q1), u, q0)
    r = zc * num / den
    return r if abs(z) < 4.0 else (1.0 if z > 0 else -1.0)


ACT_CODE = {None: 0, "gelu": 1, "relu": 2}  # activations by number, for kernels that apply them in passing


@numba.njit(cache=True, inline="always", error_model="numpy")
def gelu32(t):
    """GELU of one float32 t (x + b, added in float32 as torch does), computed in float64."""
    v = np.float64(t)
    return np.float32(0.5 * v * (1.0 + erf_rational(v * _SQRT1_2)))


@numba.njit(cache=True, inline="always")
def relu32(t):
    return t if t > 0 else np.float32(0.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_row_(row, code):
    """row <- act(row) in place, code as ACT_CODE (0: unchanged). One branch per row, none per
    element: a branch on `code` inside the loop kept LLVM from vectorising it (2x slower)."""
    if code == 1:
        for j in range(row.shape[0]):
            row[j] = gelu32(row[j])
    elif code == 2:
        for j in range(row.shape[0]):
            row[j] = relu32(row[j])


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _bias_act_rows(x, b, code):
    n, d = x.shape
    for i in range(n):
        row = x[i]
        for j in range(d):
            row[j] += b[j]
        act_row_(row, code)


def bias_act_(x, b, act):
    """In place x <- act(x + b) for a C-contiguous float32 (..., F); returns x. act: gelu|relu."""
    x2 = x.reshape(-1, x.shape[-1])  # a view: x must be contiguous
    _bias_act_rows(x2, np.asarray(b, np.float32), ACT_CODE[act])
    return x


# reassoc lets LLVM vectorise the max/sum reductions; no nnan/ninf: masked scores are -inf
_REDUCE_FM = {"reassoc", "contract", "arcp"}


_MAX_LANES = 16


@numba.njit(cache=True, inline="always")
def _row_max(row, acc):
    """max(row) for a float32 row, using acc (_MAX_LANES,) as scratch. A single running max is a
    serial chain LLVM will not vectorise (~2.5 cycles per element); _MAX_LANES independent running
    maxima become SIMD compares, 4x faster on a 577-wide attention row. The max is exact in any order."""
    d = row.shape[0]
    acc[:] = row[0]
    j = 0
    while j + _MAX_LANES <= d:
        for k in range(_MAX_LANES):
            v = row[j + k]
            acc[k] = v if v > acc[k] else acc[k]
        j += _MAX_LANES
    m = acc[0]
    for k in range(1, _MAX_LANES):
        m = acc[k] if acc[k] > m else m
    for k in range(j, d):
        m = row[k] if row[k] > m else m
    return m


@numba.njit(cache=True, fastmath=_REDUCE_FM, error_model="numpy", nogil=True)
def _softmax_rows(x, scale):
    prefer_512()
    n, d = x.shape
    acc = np.empty(_MAX_LANES, np.float32)
    for i in range(n):
        m = _row_max(x[i], acc)
        s = np.float32(0.0)
        for j in range(d):
            e = exp32((x[i, j] - m) * scale)
            x[i, j] = e
            s += e
        inv = np.float32(1.0) / s
        for j in range(d):
            x[i, j] *= inv


def softmax_(x, scale=1.0):
    """In place x <- softmax(scale * x) over the last axis of a C-contiguous float32 array
    (scale > 0 folds the attention 1/sqrt(hd) into the same pass). Returns x."""
    _softmax_rows(x.reshape(-1, x.shape[-1]), np.float32(scale))
    return x


@numba.njit(cache=True, fastmath=_REDUCE_FM, nogil=True)
def _matmul_rows_wt(x, w, out, n0, n1):
    """out[:, n0:n1] = x @ w[n0:n1].T, four weight rows at a time: each block of rows is read
    from memory once and stays in L1 while every input row (and one load of x[m, k] for all
    four sums) uses it."""
    M, K = x.shape
    n = n0
    while n + 4 <= n1:
        for m in range(M):
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for k in range(K):
                xv = x[m, k]
                s0 += xv * w[n, k]
                s1 += xv * w[n + 1, k]
                s2 += xv * w[n + 2, k]
                s3 += xv * w[n + 3, k]
            out[m, n] = s0
            out[m, n + 1] = s1
            out[m, n + 2] = s2
            out[m, n + 3] = s3
        n += 4
    for r in range(n, n1):
        for m in range(M):
            s = np.float32(0.0)
            for k in range(K):
                s += x[m, k] * w[r, k]
            out[m, r] = s


SMALL_M = (2, 16)           # row counts where streaming the weights once beats OpenBLAS
PARALLEL_MIN_BYTES = 4 << 20  # below this a matrix is not worth the thread hand-offs


def matmul_wt(x, w):
    """x (M, K) @ w(N, K).T -> (M, N) float32.

    Decode steps of a batch or of beams have a few rows. OpenBLAS's small-M sgemm packs the
    whole weight matrix for them and reaches ~11 GB/s here, against 21-25 GB/s for the Numba
    kernel above with the output columns split over the worker threads (4096x1024 weights out of
    cache, M = 2..4; the 4-row step of benchmarks/bench_trocr.py went 104 -> 66 ms). One row
    (greedy, batch 1) stays in OpenBLAS, whose sgemv is already at the memory-bandwidth floor,
    as do big M (the encoder)."""
    M, N = x.shape[0], w.shape[0]
    if not (SMALL_M[0] <= M <= SMALL_M[1] and w.flags.c_contiguous and w.dtype == np.float32):
        return x @ w.T
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((M, N), np.float32)
    parts = n_workers() if w.nbytes >= PARALLEL_MIN_BYTES else 1
    run_parallel(lambda r: _matmul_rows_wt(x, w, out, r[0], r[1]), split(N, parts))
    return out


@numba.njit(cache=True, fastmath=_REDUCE_FM, error_model="numpy", nogil=True)
def _attend_one(q, k, v, n, out, probs, r0, r1, ahead, kv_row, order):
    """(batch, head) pairs order[r0 .. r1-1] of the flattened B*H, each on its own: scores,
    softmax, weighted sum of the values; batch row b reads K/V row kv_row[b]. ahead > 0: the
    key/value row `ahead` rows on in the order they are read (this pair's keys, its values, the
    next pair's keys) is prefetched."""
    B, H, hd = q.shape
    acc = np.empty(hd, np.float32)  # a private accumulator LLVM can keep in registers
    for r in range(r0, r1):
        bi = order[r] // H
        h = order[r] % H
        qv = q[bi, h]
        kk = k[kv_row[bi], h]
        vv = v[kv_row[bi], h]
        pr = probs[bi, h]
        nxt = order[r + 1] if r + 1 < r1 else order[r]
        nk = k[kv_row[nxt // H], nxt % H]  # the next pair's keys
        m = np.float32(-np.inf)
        for t in range(n):
            if ahead > 0:
                prefetch_row(kk[t + ahead] if t + ahead < n else vv[min(t + ahead - n, n - 1)])
            s = np.float32(0.0)
            for j in range(hd):
                s += qv[j] * kk[t, j]
            pr[t] = s
            m = max(m, s)
        z = np.float32(0.0)
        for t in range(n):
            e = exp32(pr[t] - m)
            pr[t] = e
            z += e
        inv = np.float32(1.0) / z
        acc[:] = 0.0
        for t in range(n):
            if ahead > 0:
                prefetch_row(vv[t + ahead] if t + ahead < n else nk[min(t + ahead - n, n - 1)])
            p = pr[t] * inv
            pr[t] = p
            for j in range(hd):
                acc[j] += p * vv[t, j]
        out[bi, h, :] = acc


ATTEND_PARALLEL_MIN_BYTES = 8 << 20  # K/V read per call above which the heads are split
ATTEND_NATIVE_MIN_BYTES = 8 << 20    # the same for the native hand-off (ocr_base.threads.run_native)
ATTEND_NO_BLAS_MIN_BYTES = 2 << 20   # ... in a step that called no OpenBLAS (8/16-bit weights: no_blas=True)
# Measured on the Intel VM, 2026-12-02, base decoder, 1 row, 2 threads, alternating in one process
# (load 1.1-1.5), one image's cross-attention (4.7 MB a call) split at 2 MB against serial: per token
# bf16 31.8 -> 30.4 ms (median 43.1 -> 38.1), int8 22.1 -> 18.9 (31.8 -> 25.0), but float32 39.0 ->
# 39.6 (47.8 -> 59.6): right after its sgemv OpenBLAS's threads still spin and take the worker's core
# (docs/architecture.md, "One owner of the cores"). Under load 3.6, 12 such calls alone took 7-12 ms
# split against 2.8-4.7 serially; 4 images (19 MB a call) 2.0-2.3 ms native or Python hand-off.
ATTEND_PREFETCH_BYTES = 8 << 10      # how far ahead the K/V rows are prefetched (0: not at all)


@numba.njit(cache=True, nogil=True)
def _attend_block(b):
    """`_attend_one` described by addresses: b = [q, B, H, hd, k, v, T_max, n, out, probs, r0, r1,
    ahead, B_kv, kv_row, order], int64 (q/out (B, H, hd), k/v (B_kv, H, T_max, hd), probs (B, H, n)
    float32, kv_row (B,) and order (B H,) int64, C-contiguous)."""
    B, H, hd, T = b[1], b[2], b[3], b[6]
    q = numba.carray(_void_ptr(b[0]), (B, H, hd), np.float32)
    k = numba.carray(_void_ptr(b[4]), (b[13], H, T, hd), np.float32)
    v = numba.carray(_void_ptr(b[5]), (b[13], H, T, hd), np.float32)
    out = numba.carray(_void_ptr(b[8]), (B, H, hd), np.float32)
    probs = numba.carray(_void_ptr(b[9]), (B, H, b[7]), np.float32)
    kv_row = numba.carray(_void_ptr(b[14]), (B,), np.int64)
    order = numba.carray(_void_ptr(b[15]), (B * H,), np.int64)
    _attend_one(q, k, v, b[7], out, probs, b[10], b[11], b[12], kv_row, order)


@numba.cfunc(types.void(types.intp), cache=True)
def _attend_task(addr):
    """_attend_block of the block at addr, as a C function for a worker (ocr_base.threads.run_native)."""
    _attend_block(numba.carray(_void_ptr(addr), (16,), np.int64))


def attend_one(q, k, v, n, no_blas=False, rows=None):
    """Fast attend_one_ref: fused scores + softmax + weighted sum for a one-token decode step.
    When a call reads many megabytes of cached K/V (cross-attention of a batch or of beams),
    the (batch, head) pairs are split over the worker threads: 12 layers of 4 x 16 heads over
    577 keys took 16.6 ms against 23.2 ms serially. For one image (4.7 MB per call at base
    size) the hand-offs cost what they save, so that stays serial, unless no_blas (a step of
    8/16-bit weights, which calls no OpenBLAS): then it is split as native tasks from
    ATTEND_NO_BLAS_MIN_BYTES on (measured above).
    rows (B,): row b attends to K/V row rows[b] (the beams of one image share theirs); the pairs
    sharing K/V then run one after another, so the keys and values come from memory once.

    q (B, H, hd), k/v (B_kv, H, T_max, hd) -> out (B, H, hd), probs (B, H, n)
    """
    B, H, hd = q.shape
    out = np.empty((B, H, hd), np.float32)
    probs = np.empty((B, H, n), np.float32)
    q = np.ascontiguousarray(q, np.float32)
    if rows is None:
        kv_row, order = np.arange(B, dtype=np.int64), np.arange(B * H, dtype=np.int64)
    else:  # pairs by (K/V row, head, batch row)
        kv_row = np.ascontiguousarray(rows, np.int64)
        if kv_row.shape != (B,) or (B and (kv_row.min() < 0 or kv_row.max() >= k.shape[0])):
            raise ValueError(f"rows {kv_row.shape} must give each of the {B} rows a K/V row in [0, {k.shape[0]})")
        b = np.repeat(np.arange(B), H)
        order = np.lexsort((b, np.tile(np.arange(H), B), kv_row[b])).astype(np.int64)
    nbytes = 2 * B * H * n * hd * 4  # the K/V each pair reads (from memory, or from cache for the shared ones)
    parts = n_workers() if nbytes >= ATTEND_PARALLEL_MIN_BYTES else 1
    ahead = -(-ATTEND_PREFETCH_BYTES // (hd * k.itemsize)) if ATTEND_PREFETCH_BYTES and hd else 0
    if nbytes >= (ATTEND_NO_BLAS_MIN_BYTES if no_blas else ATTEND_NATIVE_MIN_BYTES) and n_workers() > 1 and k.dtype == v.dtype == np.float32 \
            and k.flags.c_contiguous and v.flags.c_contiguous and k.shape == v.shape:
        head = [q.ctypes.data, B, H, hd, k.ctypes.data, v.ctypes.data, k.shape[2], n, out.ctypes.data,
                probs.ctypes.data]
        tail = [k.shape[0], kv_row.ctypes.data, order.ctypes.data]
        blocks = [np.array(head + [r0, r1, ahead] + tail, np.int64) for r0, r1 in split(B * H, n_workers())]
        run_native(_attend_task.address, _attend_block, blocks)
        return out, probs
    run_parts(lambda r: _attend_one(q, k, v, n, out, probs, r[0], r[1], ahead, kv_row, order), split(B * H, parts))
    return out, probs
