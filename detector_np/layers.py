"""Convolution-network building blocks for CRAFT and its RefineNet, on (H, W, C) float32 arrays.

Layout: one image, channels last. A 3x3 convolution then becomes one GEMM of the "im2col" patch
matrix (H*W, 9*Cin) with the weights (9*Cin, Cout), and channels-last lets that GEMM write the
output in place with no transpose. The patch matrix of a full-size layer would be huge (1280x832
pixels x 9 x 64 channels = 2.4 GB), so it is built a band of rows at a time into one reusable
buffer of a few MB; bias and ReLU are applied to each band while it is still in cache.

`conv2d_reference` is the plain definition (sum over the taps of shifted matmuls); tests hold the
banded `conv2d` equal to it. Weights keep PyTorch's (Cout, Cin, kh, kw) layout and names.

References: torch.nn.Conv2d / MaxPool2d / F.interpolate(mode="bilinear", align_corners=False)
semantics; BatchNorm folding as in every inference engine (w' = w g / sqrt(v + eps)).
"""
from __future__ import annotations

import numba
import numpy as np

BN_EPS = 1e-5               # PyTorch BatchNorm2d default, used by every BN in CRAFT and RefineNet
BAND_BYTES = 16 << 20       # im2col buffer per band: small next to the activations, big enough for efficient GEMMs


def fold_batchnorm(w, b, gamma, beta, mean, var, eps=BN_EPS):
    """Conv followed by eval-mode BatchNorm -> one conv. Computed in float64, returned float32.

    w (Cout, Cin, kh, kw), b (Cout,), BN vectors (Cout,) -> (w', b').
    """
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w2 = np.asarray(w, np.float64) * scale[:, None, None, None]
    b2 = (np.asarray(b, np.float64) - np.asarray(mean, np.float64)) * scale + np.asarray(beta, np.float64)
    return w2.astype(np.float32), b2.astype(np.float32)


def _check_conv_args(x, w, b):
    if x.ndim != 3 or w.ndim != 4 or x.shape[2] != w.shape[1] or b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: input {x.shape} does not fit weight {w.shape} / bias {b.shape}")
    if w.shape[2] != w.shape[3] or w.shape[2] not in (1, 3):
        raise ValueError(f"conv2d: only 1x1 and 3x3 kernels are supported, got {w.shape}")


def conv2d_reference(x, w, b, dilation=1, relu=False):
    """Plain 'same' convolution, stride 1, padding = dilation * (k // 2).

    x (H, W, Cin), w (Cout, Cin, k, k), b (Cout,) -> (H, W, Cout).
    """
    _check_conv_args(x, w, b)
    H, W, _ = x.shape
    k = w.shape[2]
    p = dilation * (k // 2)
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    out = np.zeros((H, W, w.shape[0]), np.float32)
    for dy in range(k):
        for dx in range(k):
            tap = xp[dy * dilation:dy * dilation + H, dx * dilation:dx * dilation + W]  # (H, W, Cin)
            out += tap @ w[:, :, dy, dx].T                                              # (Cin, Cout)
    out += b
    return np.maximum(out, 0, out=out) if relu else out


@numba.njit(cache=True)
def _fill_patches(cols, x, r0, r1, dilation):
    """cols (r1-r0, W, 3, 3, Cin) <- the 3x3 neighbourhoods of output rows r0..r1-1, zeros outside x.

    A compiled loop: NumPy slice copies are slow for the 3-channel input layer, and this is
    memory-bound work done between GEMMs, on one core.
    """
    H, W, C = x.shape
    for r in range(r0, r1):
        for dy in range(3):
            sr = r + (dy - 1) * dilation
            for c in range(W):
                for dx in range(3):
                    sc = c + (dx - 1) * dilation
                    dst = cols[r - r0, c, dy, dx]
                    if 0 <= sr < H and 0 <= sc < W:
                        src = x[sr, sc]
                        for k in range(C):
                            dst[k] = src[k]
                    else:
                        for k in range(C):
                            dst[k] = 0.0


def conv2d(x, w, b, dilation=1, relu=False):
    """Same as `conv2d_reference`, fast: banded im2col into BLAS, bias and ReLU fused per band.

    x (H, W, Cin) float32, w (Cout, Cin, k, k) with k in {1, 3}, b (Cout,) -> (H, W, Cout) float32.
    """
    _check_conv_args(x, w, b)
    x = np.ascontiguousarray(x, dtype=np.float32)
    H, W, cin = x.shape
    cout, _, k, _ = w.shape
    # weights as (k*k*Cin, Cout) in the patch order (dy, dx, cin)
    wt = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)).reshape(k * k * cin, cout), dtype=np.float32)
    b = np.asarray(b, np.float32)
    out = np.empty((H, W, cout), np.float32)
    rows = max(1, min(H, BAND_BYTES // (W * k * k * cin * 4)))
    cols = np.empty((rows, W, 3, 3, cin), np.float32) if k == 3 else None
    for r0 in range(0, H, rows):
        r1 = min(r0 + rows, H)
        o = out[r0:r1].reshape(-1, cout)                                   # (n*W, Cout) view
        if k == 1:
            np.matmul(x[r0:r1].reshape(-1, cin), wt, out=o)
        else:
            band = cols[:r1 - r0]
            _fill_patches(band, x, r0, r1, dilation)
            np.matmul(band.reshape(-1, 9 * cin), wt, out=o)
        o += b
        if relu:
            np.maximum(o, 0, out=o)
    return out


def relu(x):
    """In a new array, like torch's in-place ReLU applied to a value we still hold."""
    return np.maximum(x, 0)


def maxpool2x2(x):
    """MaxPool2d(2, 2): (H, W, C) -> (H // 2, W // 2, C); an odd last row/column is dropped (floor mode)."""
    H, W, C = x.shape
    h, w = H // 2, W // 2
    return x[:2 * h, :2 * w].reshape(h, 2, w, 2, C).max(axis=(1, 3))


def maxpool3x3_same(x):
    """MaxPool2d(3, stride=1, padding=1): (H, W, C) -> (H, W, C); padding never wins (-inf)."""
    t = x.copy()
    np.maximum(t[1:], x[:-1], out=t[1:])      # rows: max of r-1, r, r+1
    np.maximum(t[:-1], x[1:], out=t[:-1])
    out = t.copy()
    np.maximum(out[:, 1:], t[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], t[:, 1:], out=out[:, :-1])
    return out


def _bilinear_taps(n_in, n_out):
    """torch `area_pixel_compute_source_index` (align_corners=False) -> i0, i1, l0, l1 (l float32)."""
    scale = np.float32(n_in / n_out)
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = src.astype(np.int64)                                  # truncation == floor (src >= 0)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = (src - i0).astype(np.float32)
    return i0, i1, (np.float32(1) - l1), l1


@numba.njit(cache=True)
def _upsample_kernel(x, i0, i1, a0, a1, j0, j1, b0, b1, out):
    H, W, C = out.shape
    for y in range(H):
        r0, r1, wa, wb = x[i0[y]], x[i1[y]], a0[y], a1[y]
        for c in range(W):
            p00, p01, p10, p11 = r0[j0[c]], r0[j1[c]], r1[j0[c]], r1[j1[c]]
            u, v = b0[c], b1[c]
            o = out[y, c]
            for k in range(C):   # torch order: interpolate along w inside, then along h
                o[k] = wa * (u * p00[k] + v * p01[k]) + wb * (u * p10[k] + v * p11[k])


def upsample_bilinear(x, size):
    """F.interpolate(x, size, mode='bilinear', align_corners=False): (h, w, C) -> (H, W, C) float32."""
    H, W = size
    h, w, C = x.shape
    out = np.empty((H, W, C), np.float32)
    _upsample_kernel(np.ascontiguousarray(x, np.float32), *_bilinear_taps(h, H), *_bilinear_taps(w, W), out)
    return out


def upsample_bilinear_reference(x, size):
    """Plain NumPy version of `upsample_bilinear` (separable gathers)."""
    H, W = size
    h, w, _ = x.shape
    i0, i1, a0, a1 = _bilinear_taps(h, H)
    j0, j1, b0, b1 = _bilinear_taps(w, W)
    rows = x[i0] * a0[:, None, None] + x[i1] * a1[:, None, None]              # (H, w, C)
    return rows[:, j0] * b0[None, :, None] + rows[:, j1] * b1[None, :, None]  # (H, W, C)
