"""x @ w.T for 8- and 16-bit weights (trocr_np.quant.PackedWeight): a NumPy reference and a Numba kernel.

The reference dequantises the whole matrix and multiplies in BLAS. The kernel never builds the
float32 matrix: it turns four weight rows at a time into float32 in a small scratch block that
stays in cache, then runs the float32 four-row dot product (`kernels._matmul_rows_wt`) on it for
every input row, so the weights travel from memory in their stored bits (2 or 1 byte each) and all
sums are float32. That is for decode steps (1 to 16 rows, SMALL_ROWS); with more rows (the one-off
cross-attention K/V, a prompt) the matrix is used often enough that dequantising it for one BLAS
GEMM is cheaper. The output columns are split over the worker threads (ocr_base.threads) as
`kernels.matmul_wt` does, also for one row: here there is no OpenBLAS sgemv to leave it to.

Conversions (exact):
  bfloat16  the bits are the top half of a float32: f32 bits = b << 16
  float16   (Numba has no float16) the 15 magnitude bits shifted into a float32's place, times 2^112
            re-biases the exponent (15 -> 127) and handles subnormals alike; then times -1 if the sign bit is set.
            Finite values only: convert refuses weights that overflow float16.
  int8      float32(q) * scale[n], the per-row scale
"""
from __future__ import annotations

import numba
import numpy as np

from ocr_base.threads import n_workers, run_parallel, split

from .kernels import _REDUCE_FM, _int32_bits_as_float32, _matmul_rows_wt
from .quant import dequantize

SMALL_ROWS = 16               # up to this many input rows the kernel streams the packed weights
PARALLEL_MIN_BYTES = 1 << 20  # packed bytes above which the output columns are split over the workers
_KIND = {"bfloat16": 0, "float16": 1, "int8": 2}
_NO_SCALE = np.ones(1, np.float32)
_TWO_112 = np.float32(2.0 ** 112)


def matmul_packed_ref(x, w):
    """x (M, K) float32 @ dequantize(w).T -> (M, N) float32."""
    return np.asarray(x, np.float32) @ dequantize(w).T


@numba.njit(cache=True, inline="always")
def _f16_bits_to_f32(h):
    mag = _int32_bits_as_float32((np.int32(h) & 0x7FFF) << 13) * _TWO_112
    return mag * (np.float32(1) - np.float32(2) * np.float32((np.int32(h) >> 15) & 1))  # exact: times +-1


@numba.njit(cache=True, fastmath=_REDUCE_FM, nogil=True)
def _matmul_rows_packed(x, data, scale, kind, out, n0, n1):
    """out[:, n0:n1] = x @ dequantize(data[n0:n1]).T, four weight rows dequantised at a time
    into a scratch block (the branch on `kind` runs once per row, outside the inner loop)."""
    M, K = x.shape
    blk = np.empty((4, K), np.float32)
    for n in range(n0, n1, 4):
        nr = min(4, n1 - n)
        for r in range(nr):
            row, b = data[n + r], blk[r]
            if kind == 0:
                for k in range(K):
                    b[k] = _int32_bits_as_float32(np.int32(row[k]) << 16)
            elif kind == 1:
                for k in range(K):
                    b[k] = _f16_bits_to_f32(row[k])
            else:
                s = scale[n + r]
                for k in range(K):
                    b[k] = np.float32(row[k]) * s
        _matmul_rows_wt(x, blk, out[:, n:n + nr], 0, nr)


def matmul_packed(x, w):
    """Fast matmul_packed_ref: x (M, K) @ dequantize(w).T -> (M, N) float32 (module docstring)."""
    M, N = x.shape[0], w.shape[0]
    if M > SMALL_ROWS:
        return matmul_packed_ref(x, w)
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((M, N), np.float32)
    data = w.data.view(np.uint16) if w.kind == "float16" else w.data
    scale = w.scale if w.scale is not None else _NO_SCALE
    kind = _KIND[w.kind]
    parts = n_workers() if w.nbytes >= PARALLEL_MIN_BYTES else 1
    run_parallel(lambda r: _matmul_rows_packed(x, data, scale, kind, out, r[0], r[1]), split(N, parts))
    return out
