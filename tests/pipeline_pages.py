"""Rendered test pages with known line boxes, for the end-to-end pipeline tests.

Each line is drawn in its own dark ink colour (`ink(i)`), so a stand-in recogniser
can tell from the pixels of a crop which rendered line it came from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",             # handwriting
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",   # handwriting-like
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",          # handwriting-like
]


def font(k: int, size: int):
    """The k-th available test font (cycling), falling back to Pillow's built-in scalable font."""
    files = [f for f in FONT_FILES if Path(f).exists()]
    if not files:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(files[k % len(files)], size)


def ink(i: int) -> tuple[int, int, int]:
    """Dark, mutually distinct ink colours (18 of them)."""
    return (70 * (i % 3), 70 * (i // 3 % 3), 80 * (i // 9 % 2))


def ink_index(crop: np.ndarray, n: int) -> int:
    """Which ink(i), i < n, best explains the non-background pixels of an RGB crop.

    Antialiased and resampled pixels are mixtures a * ink + (1 - a) * white, so
    white - pixel is a multiple of white - ink: pick the ink whose direction fits best.
    """
    d = 255.0 - crop.reshape(-1, 3).astype(float)
    d = d[np.linalg.norm(d, axis=1) > 60]
    if len(d) == 0:
        return -1
    err = []
    for i in range(n):
        w = 255.0 - np.array(ink(i), float)
        a = np.clip(d @ w / (w @ w), 0, 1)
        err.append(np.median(np.linalg.norm(d - a[:, None] * w, axis=1)))
    return int(np.argmin(err))


def rotate_points(pts, deg, size):
    """Where PIL's `Image.rotate(deg)` (counter-clockwise about the centre, same size) moves points."""
    a = np.deg2rad(deg)
    c = np.array(size, float) / 2
    d = np.asarray(pts, float) - c
    x = d[..., 0] * np.cos(a) + d[..., 1] * np.sin(a)
    y = -d[..., 0] * np.sin(a) + d[..., 1] * np.cos(a)
    return np.stack([x, y], -1) + c


def render_page(items, size, deg=0.0, first_ink=0):
    """items: (x, y, text, font_index, font_size) per line, in reading order.

    Returns (RGB image, line quads (N, 4, 2) TL TR BR BL of each line's ink box, texts).
    """
    im = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(im)
    quads, texts = [], []
    for i, (x, y, text, fk, fs) in enumerate(items):
        f = font(fk, fs)
        d.text((x, y), text, font=f, fill=ink(first_ink + i))
        l, t, r, b = d.textbbox((x, y), text, font=f)
        quads.append([[l, t], [r, t], [r, b], [l, b]])
        texts.append(text)
    quads = np.asarray(quads, float)
    if deg:
        im = im.rotate(deg, resample=Image.BICUBIC, fillcolor=(255, 255, 255))
        quads = rotate_points(quads, deg, size)
    return im, quads, texts


def polygon_iou(a, b, size) -> float:
    """IoU of two polygons by rasterising both on a canvas of `size` (w, h)."""
    ma, mb = Image.new("1", size), Image.new("1", size)
    ImageDraw.Draw(ma).polygon([tuple(p) for p in np.asarray(a, float)], fill=1)
    ImageDraw.Draw(mb).polygon([tuple(p) for p in np.asarray(b, float)], fill=1)
    ma, mb = np.asarray(ma), np.asarray(mb)
    union = (ma | mb).sum()
    return float((ma & mb).sum() / union) if union else 0.0


SENTENCES = [
    "The quick brown fox", "jumps over the lazy dog", "Pack my box with", "five dozen liquor jugs",
    "Sphinx of black quartz", "judge my vow now", "How vexingly quick", "daft zebras jump",
    "Bright vixens jump", "dozy fowl quack", "Waltz bad nymph", "for quick jigs vex",
]


def stack(x, y, lines, gap=0.5):
    """Items for `render_page`: lines (text, font_index, font_size) stacked from y down, gap * size apart."""
    d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = []
    for text, fk, fs in lines:
        l, t, r, b = d.textbbox((x, y), text, font=font(fk, fs))
        items.append((x, y - (t - y), text, fk, fs))  # put the ink top at y
        y = b - (t - y) + gap * fs
    return items


def one_column_page(deg=0.0):
    sizes = (24, 30, 20, 28, 26)
    return render_page(stack(30, 14, [(SENTENCES[i], i, sizes[i]) for i in range(5)]), (460, 300), deg)


def two_column_page(deg=0.0):
    items = stack(150, 14, [("Two Column Report", 0, 28)])
    items += stack(24, 70, [(SENTENCES[i], 1 + i, 20) for i in range(4)], gap=0.7)
    items += stack(330, 78, [(SENTENCES[6 + i], 2 + i, 20) for i in range(3)], gap=0.9)
    return render_page(items, (600, 250), deg)


def five_files_one_corrupt(folder):
    """Write five one-word images into `folder`, the third a corrupt PNG; return their paths in order."""
    folder.mkdir()
    paths = []
    for i, word in enumerate(["alpha", "bravo", "corrupt", "delta", "echo"]):
        p = folder / f"{i}_{word}.png"
        if word == "corrupt":
            p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        else:
            render_page([(12, 14, word, i, 26)], (220, 64), first_ink=i)[0].save(p)
        paths.append(p)
    return paths
