"""CRAFT pre-processing: aspect-preserving resize onto a zero canvas, then normalisation.

References: clovaai/CRAFT-pytorch `imgproc.py` (copied unchanged into EasyOCR `easyocr/imgproc.py`):
`resize_aspect_ratio` and `normalizeMeanVariance`. The reference resizes with OpenCV's
`cv2.resize(..., INTER_LINEAR)` on uint8, which is *not* float bilinear interpolation: it uses
11-bit fixed-point weights and a particular rounding of the two passes. `resize_linear_u8` below
reproduces it bit for bit (OpenCV `modules/imgproc/src/resize.cpp`: `HResizeLinear`,
`VResizeLinearVec_32s8u`, and the INTER_AREA fast path taken for an exact 2x downscale).
"""
from __future__ import annotations

import numba
import numpy as np

# ImageNet statistics in RGB order, as in `normalizeMeanVariance` (its `variance` argument holds stds).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# The largest canvas side and area. CRAFT's forward pass peaks at ~450-600 bytes per canvas pixel
# (measured with ru_maxrss: +270 MB at 512^2, +590 MB at 1024^2), so 4096^2 is ~8-10 GB; 8192^2
# would need ~30-40 GB. `width` scales the short side too, so the area is checked on its own.
MAX_CANVAS = 4096
MAX_CANVAS_PIXELS = MAX_CANVAS * MAX_CANVAS

_COEF_BITS = 11                       # OpenCV INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS         # 2048


def _linear_taps(n_src: int, n_dst: int, clamp_weight: bool):
    """Per output index: first source index (int32) and fixed-point weights (w0, w1) (int32).

    OpenCV computes the source coordinate in double, rounds it to float32, floors it, and turns the
    fraction into 11-bit weights with round-half-even. Along x (clamp_weight=True) a coordinate left of
    0 or at/after the last pixel snaps to that pixel with weight (2048, 0); along y the fraction is
    kept and only the row indices are clipped (done by the caller via `_clip_rows`).
    """
    scale = 1.0 / (n_dst / n_src)                              # OpenCV: scale = 1./inv_scale (double)
    f = ((np.arange(n_dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    a = (f - i.astype(np.float32)).astype(np.float32)
    if clamp_weight:
        low = i < 0
        i[low], a[low] = 0, 0
        high = i >= n_src - 1
        i[high], a[high] = n_src - 1, 0
    w1 = np.rint(a * np.float32(_COEF_SCALE)).astype(np.int32)
    w0 = np.rint((np.float32(1) - a) * np.float32(_COEF_SCALE)).astype(np.int32)
    return i.astype(np.int32), w0, w1


@numba.njit(cache=True)
def _resize_linear_kernel(src, xofs, xw0, xw1, yofs, yw0, yw1, dst):
    """Two-pass fixed-point bilinear resize. src (H, W, C) uint8 -> dst (h, w, C) uint8."""
    h_src, w_src, c = src.shape
    h, w, _ = dst.shape
    row0 = np.empty((w, c), np.int32)
    row1 = np.empty((w, c), np.int32)
    for y in range(h):
        r0 = min(max(yofs[y], 0), h_src - 1)
        r1 = min(max(yofs[y] + 1, 0), h_src - 1)
        # horizontal pass on the two source rows: D = S[i]*w0 + S[i+1]*w1 (sum of weights = 2048)
        for x in range(w):
            i0 = xofs[x]
            i1 = min(i0 + 1, w_src - 1)
            for k in range(c):
                row0[x, k] = np.int32(src[r0, i0, k]) * xw0[x] + np.int32(src[r0, i1, k]) * xw1[x]
                row1[x, k] = np.int32(src[r1, i0, k]) * xw0[x] + np.int32(src[r1, i1, k]) * xw1[x]
        # vertical pass exactly as OpenCV's SIMD path: drop 4 bits, multiply, keep the high 16 bits
        b0 = yw0[y]
        b1 = yw1[y]
        for x in range(w):
            for k in range(c):
                v = (((row0[x, k] >> 4) * b0) >> 16) + (((row1[x, k] >> 4) * b1) >> 16)
                v = (v + 2) >> 2
                dst[y, x, k] = min(max(v, 0), 255)


@numba.njit(cache=True)
def _area_half_kernel(src, dst):
    """Exact 2x downscale: rounded mean of each 2x2 block, (sum + 2) >> 2."""
    h, w, c = dst.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                s = (np.int32(src[2 * y, 2 * x, k]) + np.int32(src[2 * y, 2 * x + 1, k])
                     + np.int32(src[2 * y + 1, 2 * x, k]) + np.int32(src[2 * y + 1, 2 * x + 1, k]))
                dst[y, x, k] = (s + 2) >> 2


def resize_linear_u8(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bit-exact `cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)` for uint8.

    img (H, W) or (H, W, C) uint8 -> (height, width) or (height, width, C) uint8.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"resize_linear_u8 expects a uint8 image, got {img.dtype}")
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"resize_linear_u8 expects an (H, W) or (H, W, C) image, got shape {img.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"resize target must be at least 1x1, got {width}x{height}")
    src = np.ascontiguousarray(img if img.ndim == 3 else img[:, :, None])
    h_src, w_src, c = src.shape
    dst = np.empty((height, width, c), np.uint8)
    if w_src == 2 * width and h_src == 2 * height:
        # OpenCV switches INTER_LINEAR to its INTER_AREA fast path for an exact 2x downscale
        _area_half_kernel(src, dst)
    else:
        xofs, xw0, xw1 = _linear_taps(w_src, width, clamp_weight=True)
        yofs, yw0, yw1 = _linear_taps(h_src, height, clamp_weight=False)
        _resize_linear_kernel(src, xofs, xw0, xw1, yofs, yw0, yw1, dst)
    return dst if img.ndim == 3 else dst[:, :, 0]


def target_size(height: int, width: int, canvas_size: int, mag_ratio: float, new_width: int | None = None):
    """The reference's truncating size arithmetic -> (target_h, target_w, ratio).

    Long side times `mag_ratio`, capped at `canvas_size`; with `new_width` the image is instead
    scaled to that width (the seed's `setWidth`; also how craft-text-detector's `long_size` is
    reproduced for landscape images).
    """
    if new_width is not None:
        ratio = new_width / width
    else:
        target = mag_ratio * max(height, width)
        if target > canvas_size:
            target = canvas_size
        ratio = target / max(height, width)
    return int(height * ratio), int(width * ratio), ratio


def resize_aspect_ratio(img: np.ndarray, canvas_size: int = 1280, mag_ratio: float = 1.5, width: int | None = None):
    """Resize keeping the aspect ratio and paste top-left onto a zero canvas padded to multiples of 32.

    img (H, W, C) uint8 -> (canvas (H32, W32, C) float32, ratio, heatmap_size (W32 // 2, H32 // 2)).
    The canvas is NOT normalised yet; the reference normalises after padding, so the padding
    becomes -mean/std, not 0.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"resize_aspect_ratio expects an (H, W, C) uint8 image, got {img.dtype} {img.shape}")
    height, width_src, channels = img.shape
    th, tw, ratio = target_size(height, width_src, canvas_size, mag_ratio, width)
    if th < 1 or tw < 1:
        raise ValueError(f"image {width_src}x{height} would be resized to {tw}x{th}: too small")
    h32, w32 = th + (-th) % 32, tw + (-tw) % 32
    if h32 * w32 > MAX_CANVAS_PIXELS:
        raise ValueError(f"image {width_src}x{height} would be resized to {tw}x{th}: over the canvas limit of "
                         f"{MAX_CANVAS_PIXELS:,} pixels ({MAX_CANVAS}x{MAX_CANVAS}); use a smaller width")
    proc = resize_linear_u8(img, tw, th)
    canvas = np.zeros((h32, w32, channels), np.float32)
    canvas[:th, :tw] = proc
    return canvas, ratio, (w32 // 2, h32 // 2)


def normalize_mean_variance(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 3) float32: (x - 255 mean) / (255 std), RGB order, float32 arithmetic as the reference."""
    mean = np.array([m * 255.0 for m in MEAN], dtype=np.float32)
    std = np.array([s * 255.0 for s in STD], dtype=np.float32)
    out = np.array(img, dtype=np.float32, copy=True)
    out -= mean
    out /= std
    return out
