"""Crop a (possibly rotated) quadrilateral text region to an upright strip.

    crop_quad(image, quad, margin=0.0) -> (h, w, C) uint8

A detector box is 4 points TL, TR, BR, BL in image coordinates; on a rotated
page it is a rotated rectangle (or, after perspective, any convex quad). The
recogniser wants an upright line, so we solve the 3x3 homography that maps the
output strip's rectangle onto the quad and sample the image through it with
bilinear interpolation (the NumPy equivalent of OpenCV's
getPerspectiveTransform + warpPerspective(INTER_LINEAR), without OpenCV).

Coordinates are continuous pixel-edge coordinates, like PIL's `crop` box:
pixel (i, j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
So an axis-aligned quad with integer corners (x0, y0)-(x1, y1) gives exactly
`image[y0:y1, x0:x1]`.

References: Hartley & Zisserman, "Multiple View Geometry", DLT (sec. 4.1);
OpenCV `imgproc/src/imgwarp.cpp` (getPerspectiveTransform, warpPerspective).
"""
from __future__ import annotations

import numba
import numpy as np


def quad_size(quad) -> tuple[int, int]:
    """(height, width) of the upright strip for `quad` (4, 2): the longer of each pair of opposite sides."""
    q = np.asarray(quad, np.float64)
    w = max(np.hypot(*(q[1] - q[0])), np.hypot(*(q[2] - q[3])))
    h = max(np.hypot(*(q[3] - q[0])), np.hypot(*(q[2] - q[1])))
    return max(1, int(round(h))), max(1, int(round(w)))


def perspective_transform(src, dst) -> np.ndarray:
    """3x3 homography H with H @ [x, y, 1] ~ [u, v, 1] for the 4 point pairs src (4, 2) -> dst (4, 2).

    Direct linear transform with h33 = 1: two equations per point,
        u = (h11 x + h12 y + h13) / (h31 x + h32 y + 1)
        v = (h21 x + h22 y + h23) / (h31 x + h32 y + 1)
    an 8x8 system (what cv2.getPerspectiveTransform solves).
    """
    src = np.asarray(src, np.float64).reshape(4, 2)
    dst = np.asarray(dst, np.float64).reshape(4, 2)
    A = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        A[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        A[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    try:
        h = np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        raise ValueError(f"degenerate quadrilateral (3 or more collinear points): {src.tolist()}") from None
    return np.append(h, 1.0).reshape(3, 3)


def warp_perspective(image, H_inv, out_shape, border="replicate", fill=255) -> np.ndarray:
    """Sample `image` (h, w[, C]) at H_inv @ (u, v, 1) for each output pixel index (v, u) -> out_shape[:2] (+ C).

    H_inv maps OUTPUT pixel indices to INPUT pixel indices (centres at integers),
    i.e. cv2.warpPerspective(..., flags=WARP_INVERSE_MAP) semantics. Bilinear;
    samples outside the image take the nearest edge pixel (border="replicate")
    or the value `fill` (border="constant"). Returns uint8 for uint8 input.
    """
    img = np.asarray(image)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    H, W, C = img.shape
    oh, ow = out_shape[:2]
    v, u = np.mgrid[0:oh, 0:ow].astype(np.float64)
    den = H_inv[2, 0] * u + H_inv[2, 1] * v + H_inv[2, 2]
    sx = (H_inv[0, 0] * u + H_inv[0, 1] * v + H_inv[0, 2]) / den     # (oh, ow) source column
    sy = (H_inv[1, 0] * u + H_inv[1, 1] * v + H_inv[1, 2]) / den     # (oh, ow) source row
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    ax = (sx - x0)[..., None]                                       # (oh, ow, 1) weight of column x0+1
    ay = (sy - y0)[..., None]

    def tap(yy, xx):  # (oh, ow, C) pixels at integer positions, with the border rule applied
        inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        px = img[np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)].astype(np.float32)  # gather first: never convert the page
        if border == "constant":
            px = np.where(inside[..., None], px, np.float32(fill))
        elif border != "replicate":
            raise ValueError(f"border must be 'replicate' or 'constant', got {border!r}")
        return px

    top = tap(y0, x0) * (1 - ax) + tap(y0, x0 + 1) * ax
    bot = tap(y0 + 1, x0) * (1 - ax) + tap(y0 + 1, x0 + 1) * ax
    out = top * (1 - ay) + bot * ay                                  # (oh, ow, C)
    if img.dtype == np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


@numba.njit(cache=True)
def _warp_bilinear_u8(img, Hm, oh, ow, constant, fill):  # pragma: no cover - compiled
    """Numba twin of `warp_perspective` for (h, w, C) uint8: same float64 arithmetic, same order."""
    H, W, C = img.shape
    out = np.empty((oh, ow, C), np.uint8)
    px = np.empty((4, C), np.float64)
    for v in range(oh):
        for u in range(ow):
            den = Hm[2, 0] * u + Hm[2, 1] * v + Hm[2, 2]
            sx = (Hm[0, 0] * u + Hm[0, 1] * v + Hm[0, 2]) / den
            sy = (Hm[1, 0] * u + Hm[1, 1] * v + Hm[1, 2]) / den
            x0 = np.floor(sx)
            y0 = np.floor(sy)
            ax = sx - x0
            ay = sy - y0
            for t in range(4):
                yy = int(y0) + t // 2
                xx = int(x0) + t % 2
                inside = 0 <= yy < H and 0 <= xx < W
                yc = min(max(yy, 0), H - 1)
                xc = min(max(xx, 0), W - 1)
                for c in range(C):
                    if constant and not inside:
                        px[t, c] = np.float32(fill)
                    else:
                        px[t, c] = np.float32(img[yc, xc, c])
            for c in range(C):
                top = px[0, c] * (1 - ax) + px[1, c] * ax
                bot = px[2, c] * (1 - ax) + px[3, c] * ax
                val = np.rint(top * (1 - ay) + bot * ay)
                out[v, u, c] = np.uint8(min(max(val, 0.0), 255.0))
    return out


MAX_CROP_PIXELS = 1 << 24  # 16.7 MP: a 16000 x 1000 line strip, far beyond any text line (~50 MB, ~1 s)


def _check_warp(H_inv, oh, ow, quad) -> None:
    """The warp's denominator is affine in (u, v): one sign at the strip's four corners means it is
    never 0 inside. A self-intersecting (or, with the margin, too strongly foreshortened) quad crosses
    the line at infinity, where the sampling would divide by zero."""
    if not (1 <= oh and 1 <= ow and oh * ow <= MAX_CROP_PIXELS):
        raise ValueError(f"crop of {oh}x{ow} pixels is empty or over the limit of {MAX_CROP_PIXELS:,}: {quad.tolist()}")
    den = [H_inv[2, 0] * u + H_inv[2, 1] * v + H_inv[2, 2] for u in (0, ow - 1) for v in (0, oh - 1)]
    if not (min(den) > 0 or max(den) < 0):
        raise ValueError(f"quadrilateral is self-intersecting or not convex (corners TL, TR, BR, BL expected): "
                         f"{quad.tolist()}")


def crop_quad(image, quad, margin: float = 0.0, border="replicate", fill=255, size=None,
              fast: bool = True) -> np.ndarray:
    """Upright strip (h, w[, C]) of the region `quad` (4, 2: TL, TR, BR, BL) of `image`.

    margin: extra context on every side, as a fraction of the strip height
            (the quad is extended along its own sides, so rotated boxes stay rotated).
    size:   (h, w) to force the output size; default `quad_size(quad)`.
    fast:   use the compiled kernel for (h, w, C) uint8 images (tests hold it equal to
            `warp_perspective`, the readable NumPy version, which fast=False uses).
    """
    img = np.asarray(image)
    q = np.asarray(quad, np.float64).reshape(4, 2)
    if not np.all(np.isfinite(q)):
        raise ValueError(f"quad has non-finite coordinates: {q.tolist()}")
    h, w = size if size is not None else quad_size(q)
    # Homography strip -> image in edge coordinates: strip corners (0,0),(w,0),(w,h),(0,h) -> quad.
    rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    H = perspective_transform(rect, q)
    m = int(round(margin * h))
    # Output pixel index (v, u) has centre (u + 0.5 - m, v + 0.5 - m) in strip edge coordinates;
    # its image position minus 0.5 is the source pixel index. Fold both shifts into H.
    to_strip = np.array([[1, 0, 0.5 - m], [0, 1, 0.5 - m], [0, 0, 1]])
    to_index = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    H_inv = to_index @ H @ to_strip
    _check_warp(H_inv, h + 2 * m, w + 2 * m, q)
    if fast and img.dtype == np.uint8 and img.ndim == 3 and border in ("replicate", "constant"):
        return _warp_bilinear_u8(np.ascontiguousarray(img), H_inv, h + 2 * m, w + 2 * m, border == "constant",
                                 float(fill))
    return warp_perspective(img, H_inv, (h + 2 * m, w + 2 * m), border=border, fill=fill)


def otsu_threshold(gray) -> float:
    """Otsu's threshold of a uint8-valued array: the level t that maximises the between-class
    variance of (gray <= t) and (gray > t)."""
    hist = np.bincount(np.asarray(gray, np.uint8).reshape(-1), minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1)
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * np.arange(256))
    between = (m0[-1] * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(np.argmax(between))


def upright_polarity(crop) -> np.ndarray:
    """A line crop (h, w[, 3]) uint8 -> the same crop with dark ink on a light background.

    The recogniser was trained on dark ink on light paper; white lettering on a blue poster or a
    dark street sign reads as invented words. Rule, from the crop alone: Otsu's threshold splits
    the luminance into a dark and a light class; the background is the class holding most of the
    crop's outer frame (a line crop's edges are mostly background, even with bold lettering). When
    the background is the dark class, the crop is returned as its inverted luminance, stretched so
    that the background median becomes white and the ink median black (the hue is dropped: an
    inverted blue poster would be orange). Otherwise the crop is returned unchanged.
    """
    img = np.asarray(crop)
    if img.ndim not in (2, 3) or img.dtype != np.uint8:
        raise ValueError(f"upright_polarity expects an (h, w[, C]) uint8 crop, got {img.dtype} {img.shape}")
    rgb = img if img.ndim == 3 else img[:, :, None]
    gray = (rgb[..., :3] @ np.array([0.299, 0.587, 0.114])[:rgb.shape[2]]
            if rgb.shape[2] >= 3 else rgb[..., 0].astype(np.float64))
    g8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if g8.size < 4 or np.ptp(g8) < 16:   # blank or flat: nothing to decide on
        return img
    dark = g8 <= otsu_threshold(g8)
    frame = np.concatenate([dark[0], dark[-1], dark[1:-1, 0], dark[1:-1, -1]])
    if frame.mean() <= 0.5 or dark.all():
        return img
    bg, ink = np.median(gray[dark]), np.median(gray[~dark])
    out = 255 * np.clip((ink - gray) / max(ink - bg, 1.0), 0, 1)   # ink -> 0, background -> 255
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], img.shape[2], 2) if img.ndim == 3 else out


def crop_polygon(image, quad, polygon, margin: float = 0.0) -> np.ndarray:
    """`crop_quad` of an (H, W, 3) uint8 page, with the pixels outside `polygon` (K, 2) painted in the
    median colour of the crop's outside pixels (the paper).

    A line's quad is the rectangle holding its whole polygon, ascenders and descenders included,
    so it also holds the tips of the neighbouring lines' descenders and ascenders; the recogniser
    reads those as extra letters. Outside the polygon is what belongs to no part of this line.
    """
    from PIL import Image, ImageDraw
    img = np.asarray(image)
    q = np.asarray(quad, np.float64).reshape(4, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    h, _ = quad_size(q)
    pad = int(np.ceil(margin * h)) + 2
    x0, y0 = np.maximum(np.floor(np.minimum(q.min(0), poly.min(0))).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(np.maximum(q.max(0), poly.max(0))).astype(int) + pad, img.shape[1::-1])
    if x1 <= x0 or y1 <= y0:
        return crop_quad(img, q, margin=margin)
    mask = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in poly - [x0, y0]], fill=255, outline=255)
    window = np.concatenate([img[y0:y1, x0:x1, :3], np.asarray(mask)[:, :, None]], 2)
    out = crop_quad(np.ascontiguousarray(window), q - [x0, y0], margin=margin)
    rgb, inside = out[:, :, :3].copy(), out[:, :, 3] >= 128
    if inside.all() or not inside.any():
        return rgb
    rgb[~inside] = np.median(rgb[~inside], axis=0).astype(np.uint8)
    return rgb


def split_wide(crop, max_aspect: float) -> list[np.ndarray]:
    """A dark-on-light line crop (h, w[, C]) -> pieces no wider than max_aspect * h, cut at the
    widest inkless column runs (word gaps); [crop] when it is narrow enough or has no gap.

    A whole line squeezed into the recogniser's square input loses resolution as it gets longer;
    a recogniser trained on short lines reads a long one best in a few word groups.
    """
    img = np.asarray(crop)
    h, w = img.shape[:2]
    if max_aspect <= 0 or w <= max_aspect * h:
        return [img]
    gray = img.mean(2) if img.ndim == 3 else img.astype(np.float64)
    ink = (gray <= otsu_threshold(np.clip(gray, 0, 255).astype(np.uint8))).sum(0)
    empty = ink <= max(1, 0.02 * h)
    pieces, start = [], 0
    while w - start > max_aspect * h:
        lo, hi = start + int(0.4 * max_aspect * h), start + int(max_aspect * h)
        run = np.convolve(empty[lo:hi].astype(float), np.ones(max(3, h // 4)), "same")   # gap width
        if not len(run) or run.max() < 3:
            break
        cut = lo + int(np.argmax(run))
        pieces.append(img[:, start:cut])
        start = cut
    pieces.append(img[:, start:])
    return pieces
