"""Convolution-network building blocks for CRAFT and its RefineNet, on (H, W, C) float32 arrays.

Layout: one image, channels last. A 3x3 convolution then becomes one GEMM of the "im2col" patch
matrix (H*W, 9*Cin) with the weights (9*Cin, Cout), and channels-last lets that GEMM write the
output in place with no transpose. The patch matrix of a full-size layer would be huge (1280x832
pixels x 9 x 64 channels = 2.4 GB), so it is built a band of rows at a time into one reusable
buffer of a few MB; bias and ReLU are applied to each band while it is still in cache.

3x3 convolutions on 16+ channels (nearly all of CRAFT's FLOPs) use Winograd F(2x2, 3x3) instead,
which needs 2.25x fewer multiplies; dilated ones (fc6, the refiner's ASPP) go through a mosaic of
their polyphase sub-images. Bands are processed by a few worker threads, each with a
single-threaded GEMM (see `ocr_base.threads`; TROCR_NP_THREADS sets their number).

`conv2d_reference` is the plain definition (sum over the taps of shifted matmuls); tests hold
both fast paths equal to it. Weights keep PyTorch's (Cout, Cin, kh, kw) layout and names.

References: torch.nn.Conv2d / MaxPool2d / F.interpolate(mode="bilinear", align_corners=False)
semantics; BatchNorm folding as in every inference engine (w' = w g / sqrt(v + eps)).
"""
from __future__ import annotations

import threading

import numba
import numpy as np

from ocr_base import threads

BN_EPS = 1e-5               # PyTorch BatchNorm2d default, used by every BN in CRAFT and RefineNet
BAND_BYTES = 8 << 20        # im2col scratch per band and thread: small next to the activations


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


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _fill_patches(cols, x, r0, r1, dilation):
    """cols (r1-r0, W, 3, 3, Cin) <- the 3x3 neighbourhoods of output rows r0..r1-1, zeros outside x.

    A compiled loop writing `cols` sequentially (NumPy slice copies are slow for the 3-channel
    input layer). Releases the GIL: bands are filled by several threads at once.
    """
    H, W, C = x.shape
    for r in range(r0, r1):
        for c in range(W):
            dst = cols[r - r0, c]
            for dy in range(3):
                sr = r + (dy - 1) * dilation
                row_inside = 0 <= sr < H
                for dx in range(3):
                    sc = c + (dx - 1) * dilation
                    if row_inside and 0 <= sc < W:
                        for k in range(C):
                            dst[dy, dx, k] = x[sr, sc, k]
                    else:
                        for k in range(C):
                            dst[dy, dx, k] = 0.0


# ---- threading: bands in parallel, one BLAS thread each --------------------------------------------
# Bands run on ocr_base.threads' worker threads: on a few cores, one multi-threaded GEMM per band
# leaves the im2col copy, bias and ReLU serial and pays a BLAS thread barrier per band, so instead
# each worker does whole bands (copy, single-threaded GEMM, bias, ReLU) with no synchronisation.
_local = threading.local()       # per-thread scratch buffers, kept and reused across calls


def _scratch(local, n):
    """A float32 buffer of at least n elements, kept per worker thread and reused across calls."""
    buf = getattr(local, "buf", None)
    if buf is None or buf.size < n:
        buf = local.buf = np.empty(n, np.float32)
    return buf


def _run_bands(starts, band):
    """Call band(start, thread_local) for every start: on the worker threads (1 BLAS thread each,
    restored afterwards), or serially here."""
    threads.run_parallel(lambda r0: band(r0, _local), list(starts))


def _prepare(x, w, b):
    _check_conv_args(x, w, b)
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(b, np.float32)


def conv2d_im2col(x, w, b, dilation=1, relu=False):
    """`conv2d_reference`, fast: banded im2col into BLAS, bias and ReLU fused per band.

    x (H, W, Cin) float32, w (Cout, Cin, k, k) with k in {1, 3}, b (Cout,) -> (H, W, Cout) float32.
    """
    x, b = _prepare(x, w, b)
    H, W, cin = x.shape
    cout, _, k, _ = w.shape
    # weights as (k*k*Cin, Cout) in the patch order (dy, dx, cin)
    wt = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)).reshape(k * k * cin, cout), dtype=np.float32)
    out = np.empty((H, W, cout), np.float32)
    n_workers = threads.n_workers()
    rows = max(1, min(-(-H // (2 * n_workers)), BAND_BYTES // (W * k * k * cin * 4)))

    def band(r0, local):
        r1 = min(r0 + rows, H)
        o = out[r0:r1].reshape(-1, cout)                                   # (n*W, Cout) view
        if k == 1:
            np.matmul(x[r0:r1].reshape(-1, cin), wt, out=o)
        else:
            cols = _scratch(local, rows * W * 9 * cin)[:(r1 - r0) * W * 9 * cin].reshape(r1 - r0, W, 3, 3, cin)
            _fill_patches(cols, x, r0, r1, dilation)
            np.matmul(cols.reshape(-1, 9 * cin), wt, out=o)
        o += b
        if relu:
            np.maximum(o, 0, out=o)

    _run_bands(range(0, H, rows), band)
    return out


# ---- Winograd F(2x2, 3x3) ---------------------------------------------------------------------------
# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Each 2x2 output tile is
# A^T [(G g G^T) * (B^T d B)] A for its 4x4 input tile d: 16 multiplies per tile and channel pair
# instead of 36, so the GEMMs (one per of the 16 tile positions) do 2.25x fewer FLOPs than im2col.
# The transforms only add/subtract and halve, so float32 rounding stays at the 1e-6 level.
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
WINOGRAD_MIN_CIN = 16            # below this the small-K GEMMs lose to im2col (the RGB input layer)
WINOGRAD_TILES = 384             # 2x2 tiles per band: GEMMs of M ~ 384 rows keep BLAS efficient


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _winograd_input(x, tr0, tr1, V):
    """V (16, (tr1-tr0)*TW, C) <- B^T d B for the 4x4 input tile d (zero outside x) of each output tile."""
    H, W, C = x.shape
    TW = (W + 1) // 2
    d = np.empty((4, 4, C), np.float32)
    t = np.empty((4, 4, C), np.float32)
    for ti in range(tr0, tr1):
        for tj in range(TW):
            for a in range(4):
                r = 2 * ti - 1 + a
                for e in range(4):
                    c = 2 * tj - 1 + e
                    if 0 <= r < H and 0 <= c < W:
                        for k in range(C):
                            d[a, e, k] = x[r, c, k]
                    else:
                        for k in range(C):
                            d[a, e, k] = 0.0
            for e in range(4):                       # t = B^T d
                for k in range(C):
                    d0, d1, d2, d3 = d[0, e, k], d[1, e, k], d[2, e, k], d[3, e, k]
                    t[0, e, k] = d0 - d2
                    t[1, e, k] = d1 + d2
                    t[2, e, k] = d2 - d1
                    t[3, e, k] = d1 - d3
            n = (ti - tr0) * TW + tj
            for a in range(4):                       # V = t B
                for k in range(C):
                    t0, t1, t2, t3 = t[a, 0, k], t[a, 1, k], t[a, 2, k], t[a, 3, k]
                    V[4 * a, n, k] = t0 - t2
                    V[4 * a + 1, n, k] = t1 + t2
                    V[4 * a + 2, n, k] = t2 - t1
                    V[4 * a + 3, n, k] = t1 - t3


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _winograd_output(M, bias, relu, tr0, tr1, out):
    """Output tiles of tile rows tr0..tr1 <- A^T m A + bias, then ReLU if asked."""
    H, W, C = out.shape
    TW = (W + 1) // 2
    s = np.empty((2, 4, C), np.float32)
    for ti in range(tr0, tr1):
        for tj in range(TW):
            n = (ti - tr0) * TW + tj
            for e in range(4):                       # s = A^T m
                for k in range(C):
                    m0, m1, m2, m3 = M[e, n, k], M[4 + e, n, k], M[8 + e, n, k], M[12 + e, n, k]
                    s[0, e, k] = m0 + m1 + m2
                    s[1, e, k] = m1 - m2 - m3
            for a in range(2):                       # y = s A
                r = 2 * ti + a
                if r >= H:
                    continue
                for e in range(2):
                    c = 2 * tj + e
                    if c >= W:
                        continue
                    for k in range(C):
                        if e == 0:
                            v = s[a, 0, k] + s[a, 1, k] + s[a, 2, k] + bias[k]
                        else:
                            v = s[a, 1, k] - s[a, 2, k] - s[a, 3, k] + bias[k]
                        out[r, c, k] = max(v, 0.0) if relu else v


def winograd_weights_reference(w):
    """(Cout, Cin, 3, 3) -> U (16, Cin, Cout) float32: G g G^T for every channel pair, computed in float64."""
    u = np.einsum("au,oiuv,bv->abio", WINOGRAD_G, np.asarray(w, np.float64), WINOGRAD_G)   # (4, 4, Cin, Cout)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0]), dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _winograd_weights_kernel(w, G, U):
    O, I = w.shape[0], w.shape[1]
    t = np.empty((4, 3))
    for i in range(I):
        for o in range(O):                           # o innermost: U is written contiguously
            for a in range(4):                       # t = G g (in float64)
                for v in range(3):
                    t[a, v] = G[a, 0] * w[o, i, 0, v] + G[a, 1] * w[o, i, 1, v] + G[a, 2] * w[o, i, 2, v]
            for a in range(4):                       # U = t G^T
                for e in range(4):
                    U[4 * a + e, i, o] = G[e, 0] * t[a, 0] + G[e, 1] * t[a, 1] + G[e, 2] * t[a, 2]


def winograd_weights(w):
    """`winograd_weights_reference` as a compiled loop (an einsum over 512x512 kernels takes ~50 ms)."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    U = np.empty((16, w.shape[1], w.shape[0]), np.float32)
    _winograd_weights_kernel(w, WINOGRAD_G, U)
    return U


def conv2d_winograd(x, w, b, relu=False):
    """`conv2d_reference` for 3x3 kernels, dilation 1, via Winograd F(2x2, 3x3); banded and threaded.

    x (H, W, Cin) float32, w (Cout, Cin, 3, 3), b (Cout,) -> (H, W, Cout) float32.
    """
    x, b = _prepare(x, w, b)
    if w.shape[2] != 3:
        raise ValueError(f"conv2d_winograd: 3x3 kernels only, got {w.shape}")
    H, W, cin = x.shape
    cout = w.shape[0]
    TH, TW = (H + 1) // 2, (W + 1) // 2
    U = winograd_weights(w)
    out = np.empty((H, W, cout), np.float32)
    rows = max(1, min(WINOGRAD_TILES // TW, TH))                 # tile rows per band

    def band(tr0, local):
        tr1 = min(tr0 + rows, TH)
        n = (tr1 - tr0) * TW
        buf = _scratch(local, 16 * rows * TW * (cin + cout))
        V = buf[:16 * n * cin].reshape(16, n, cin)
        M = buf[16 * n * cin:16 * n * (cin + cout)].reshape(16, n, cout)
        _winograd_input(x, tr0, tr1, V)
        np.matmul(V, U, out=M)                                   # 16 GEMMs (n, Cin) @ (Cin, Cout)
        _winograd_output(M, b, relu, tr0, tr1, out)

    _run_bands(range(0, TH, rows), band)
    return out


def conv2d_dilated_winograd(x, w, b, dilation, relu=False):
    """A dilated 3x3 conv as one undilated Winograd conv over a mosaic of the image's polyphase parts.

    Output pixel (r, c) of a conv with dilation d only reads pixels congruent to (r, c) mod d, so
    each of the d*d sub-images x[p::d, q::d] is convolved with an ordinary 3x3 kernel. They are laid
    out side by side, one zero row/column apart (the zero padding each one needs), and convolved at
    once. x (H, W, Cin), w (Cout, Cin, 3, 3), b (Cout,) -> (H, W, Cout).
    """
    H, W, C = x.shape
    d = dilation
    hd, wd = -(-H // d), -(-W // d)                              # sub-image size (zero-extended)
    mosaic = np.zeros((d, hd + 1, d, wd + 1, C), np.float32)    # [p, i, q, j] = x[i*d + p, j*d + q]
    padded = np.zeros((hd * d, wd * d, C), np.float32)
    padded[:H, :W] = x
    mosaic[:, :hd, :, :wd] = padded.reshape(hd, d, wd, d, C).transpose(1, 0, 3, 2, 4)
    del padded
    y = conv2d_winograd(mosaic.reshape(d * (hd + 1), d * (wd + 1), C), w, b, relu=relu)
    del mosaic
    y = y.reshape(d, hd + 1, d, wd + 1, -1)[:, :hd, :, :wd].transpose(1, 0, 3, 2, 4)    # (hd, d, wd, d, Cout)
    return np.ascontiguousarray(y.reshape(hd * d, wd * d, -1)[:H, :W])


def conv2d(x, w, b, dilation=1, relu=False):
    """`conv2d_reference`, fast: Winograd for 3x3 convs on >= 16 channels (dilated ones through a
    polyphase mosaic when that costs < 1.6x the pixels), else banded im2col.

    x (H, W, Cin) float32, w (Cout, Cin, k, k) with k in {1, 3}, b (Cout,) -> (H, W, Cout) float32.
    """
    if w.ndim == 4 and w.shape[2] == 3 and x.ndim == 3 and x.shape[2] >= WINOGRAD_MIN_CIN:
        if dilation == 1:
            return conv2d_winograd(x, w, b, relu=relu)
        H, W = x.shape[:2]
        if (-(-H // dilation) + 1) * (-(-W // dilation) + 1) * dilation ** 2 < 1.6 * H * W:
            return conv2d_dilated_winograd(x, w, b, dilation, relu=relu)
    return conv2d_im2col(x, w, b, dilation=dilation, relu=relu)


def conv1x1_concat(xs, w, b, relu=False):
    """1x1 conv of the channel concatenation of `xs`, without building the concatenation.

    xs: list of (H, W, C_i) float32; w (Cout, sum C_i, 1, 1), b (Cout,) -> (H, W, Cout). Equal to
    conv2d(np.concatenate(xs, axis=2), w, b): a 1x1 conv is a sum over input channels, so it splits
    into one GEMM per part, accumulated band by band while the band is in cache.
    """
    H, W = xs[0].shape[:2]
    widths = [x.shape[2] for x in xs]
    if any(x.shape[:2] != (H, W) or x.ndim != 3 for x in xs) or w.shape[1:] != (sum(widths), 1, 1):
        raise ValueError(f"conv1x1_concat: inputs {[x.shape for x in xs]} do not fit weight {w.shape}")
    cout = w.shape[0]
    xs = [np.ascontiguousarray(x, dtype=np.float32) for x in xs]
    splits = np.cumsum([0] + widths)
    wts = [np.ascontiguousarray(w[:, a:e, 0, 0].T, dtype=np.float32) for a, e in zip(splits[:-1], splits[1:])]
    b = np.asarray(b, np.float32)
    out = np.empty((H, W, cout), np.float32)
    n_workers = threads.n_workers()
    rows = max(1, min(-(-H // (2 * n_workers)), BAND_BYTES // (W * max(widths + [cout]) * 4)))

    def band(r0, local):
        r1 = min(r0 + rows, H)
        o = out[r0:r1].reshape(-1, cout)
        tmp = _scratch(local, rows * W * cout)[:o.size].reshape(o.shape)
        for i, (x, wt) in enumerate(zip(xs, wts)):
            np.matmul(x[r0:r1].reshape(-1, x.shape[2]), wt, out=o if i == 0 else tmp)
            if i:
                o += tmp
        o += b
        if relu:
            np.maximum(o, 0, out=o)

    _run_bands(range(0, H, rows), band)
    return out


@numba.njit(cache=True, nogil=True)
def _maxpool2x2_rows(x, r0, r1, out):
    for r in range(r0, r1):
        for c in range(out.shape[1]):
            for k in range(out.shape[2]):
                out[r, c, k] = max(max(x[2 * r, 2 * c, k], x[2 * r, 2 * c + 1, k]),
                                   max(x[2 * r + 1, 2 * c, k], x[2 * r + 1, 2 * c + 1, k]))


def maxpool2x2_reference(x):
    """MaxPool2d(2, 2): (H, W, C) -> (H // 2, W // 2, C); an odd last row/column is dropped (floor mode)."""
    H, W, C = x.shape
    h, w = H // 2, W // 2
    return x[:2 * h, :2 * w].reshape(h, 2, w, 2, C).max(axis=(1, 3))


def maxpool2x2(x):
    """`maxpool2x2_reference` as a compiled kernel, row bands on the worker threads."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    H, W, C = x.shape
    out = np.empty((H // 2, W // 2, C), np.float32)
    rows = max(1, -(-(H // 2) // 8))
    _run_bands(range(0, H // 2, rows), lambda r0, _: _maxpool2x2_rows(x, r0, min(r0 + rows, H // 2), out))
    return out


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
