"""Elementwise and small-attention kernels: a readable NumPy reference and a Numba fast path.

Every op has a `*_ref` NumPy version (what the math is) and a fast version used by the
model; `tests/test_trocr_parity.py` holds each fast version equal to its reference.

Threading: big matmuls stay in BLAS (OpenBLAS spins its own threads). The Numba kernels
here are *serial* on purpose: on a 2-core machine parallel Numba loops fight OpenBLAS's
threads and make the whole encoder slower (../shared/reference/performance.md, B2).

References: transformers 5.24 `activations.py` (GELUActivation = exact erf form),
`torch.nn.LayerNorm`, `models/trocr/modeling_trocr.py` (decoder attention).
"""
from __future__ import annotations

import math

import numba
import numpy as np

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

@numba.njit(cache=True, fastmath=False)
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


@numba.njit(cache=True)
def _bias_gelu_rows(x, b):
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            t = np.float64(x[i, j]) + b[j]
            x[i, j] = 0.5 * t * (1.0 + math.erf(t * 0.7071067811865476))


@numba.njit(cache=True)
def _bias_relu_rows(x, b):
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            t = x[i, j] + b[j]
            x[i, j] = t if t > 0 else np.float32(0.0)


def bias_act_(x, b, act):
    """In place x <- act(x + b) for a C-contiguous float32 (..., F); returns x. act: gelu|relu."""
    x2 = x.reshape(-1, x.shape[-1])  # a view: x must be contiguous
    (_bias_gelu_rows if act == "gelu" else _bias_relu_rows)(x2, np.asarray(b, np.float32))
    return x


def softmax_(x):
    """In-place softmax over the last axis (NumPy's SIMD exp beats serial Numba here)."""
    x -= x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


@numba.njit(cache=True)
def _attend_one(q, k, v, n, out, probs):
    B, H, hd = q.shape
    for bi in range(B):
        for h in range(H):
            m = -np.inf
            for t in range(n):
                s = np.float32(0.0)
                for j in range(hd):
                    s += q[bi, h, j] * k[bi, h, t, j]
                probs[bi, h, t] = s
                if s > m:
                    m = s
            z = np.float32(0.0)
            for t in range(n):
                e = np.exp(probs[bi, h, t] - m)
                probs[bi, h, t] = e
                z += e
            for j in range(hd):
                out[bi, h, j] = 0.0
            for t in range(n):
                p = probs[bi, h, t] / z
                probs[bi, h, t] = p
                for j in range(hd):
                    out[bi, h, j] += p * v[bi, h, t, j]


def attend_one(q, k, v, n):
    """Fast attend_one_ref: fused scores + softmax + weighted sum for a one-token decode step.

    q (B, H, hd), k/v (B, H, T_max, hd) -> out (B, H, hd), probs (B, H, n)
    """
    B, H, hd = q.shape
    out = np.empty((B, H, hd), np.float32)
    probs = np.empty((B, H, n), np.float32)
    _attend_one(np.ascontiguousarray(q, np.float32), k, v, n, out, probs)
    return out, probs
