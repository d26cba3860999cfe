"""Draw detected regions on an image (Pillow only).

    draw_regions(image, polygons, color=(255, 0, 0), width=2, fill=None,
                 rotated=True, numbers=False) -> PIL.Image (RGB)

The counterpart of Spark OCR's ImageDrawRegions (`rectColor`, `rotated`) and of
CRAFT-pytorch's `file_utils.saveResult`, without OpenCV.

References: CRAFT-pytorch `file_utils.saveResult`; Pillow `ImageDraw`.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont


def _rgb(color):
    if isinstance(color, str):
        return ImageColor.getrgb(color)[:3]
    c = tuple(int(v) for v in color)
    if len(c) not in (3, 4) or not all(0 <= v <= 255 for v in c):
        raise ValueError(f"color must be a colour name or an (R, G, B[, A]) tuple of 0..255, got {color!r}")
    return c


def draw_regions(image, polygons, color=(255, 0, 0), width: int = 2, fill=None,
                 rotated: bool = True, numbers: bool = False) -> Image.Image:
    """A copy of `image` (PIL or (H, W[, C]) uint8 array) with `polygons` drawn on it.

    polygons: a sequence of (K, 2) point arrays (K >= 3; detector boxes are K = 4:
              TL, TR, BR, BL) or an (N, K, 2) array, in image pixel coordinates.
    color:    outline colour, a name ("red") or an RGB tuple.
    width:    outline width in pixels (0: no outline).
    fill:     optional RGBA tuple; the polygon interior is blended with this alpha.
    rotated:  True draws the polygons as given; False draws each one's
              axis-aligned bounding rectangle (Spark's `rotated=False`).
    numbers:  write 1-based region numbers (in the given order) at each region's top-left.
    """
    if isinstance(image, Image.Image):
        base = image.convert("RGB")  # always a copy
    else:
        a = np.asarray(image)
        if a.dtype != np.uint8 or a.ndim not in (2, 3):
            raise ValueError(f"image must be a PIL image or an (H, W[, C]) uint8 array, got {a.dtype} {a.shape}")
        base = Image.fromarray(a).convert("RGB")
    outline = _rgb(color)[:3]
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    polys = []
    for i, p in enumerate(polygons):
        p = np.asarray(p, np.float64).reshape(-1, 2)
        if len(p) < 3 or not np.all(np.isfinite(p)):
            raise ValueError(f"region {i}: need >= 3 finite (x, y) points, got {p.tolist()}")
        if not rotated:
            (x0, y0), (x1, y1) = p.min(0), p.max(0)
            p = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append([tuple(map(float, xy)) for xy in p])

    if fill is not None:
        f = _rgb(fill)
        f = f + (255,) * (4 - len(f))
        overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
        od = ImageDraw.Draw(overlay)
        for p in polys:
            od.polygon(p, fill=f)
        base = Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")

    draw = ImageDraw.Draw(base)
    if width > 0:
        for p in polys:
            # a closed line with joint="curve" keeps the corners filled at any width
            draw.line(p + [p[0]], fill=outline, width=width, joint="curve")
    if numbers and polys:
        heights = [max(y for _, y in p) - min(y for _, y in p) for p in polys]
        size = int(np.clip(np.median(heights) * 0.6, 10, 48))
        font = ImageFont.load_default(size=size)
        for i, p in enumerate(polys):
            x, y = min(x for x, _ in p), min(y for _, y in p)
            label = str(i + 1)
            l, t, r, b = draw.textbbox((0, 0), label, font=font)
            ty = y - (b - t) - 3 if y - (b - t) - 3 >= 0 else y + 2
            draw.rectangle([x, ty, x + (r - l) + 4, ty + (b - t) + 3], fill=outline)
            draw.text((x + 2 - l, ty + 1 - t), label, font=font, fill=_contrast(outline))
    return base


def _contrast(rgb):
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)
