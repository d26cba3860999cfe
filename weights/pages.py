"""Realistic handwritten pages with line ground truth (numpy + Pillow only).

    from pages import make_page, find_hands
    page = make_page(seed=3, hands=find_hands("heldout"), kind="letter")
    page.image            # PIL RGB, ~900..1300 px a side
    page.lines[0].text    # "Dear Anna,"
    page.lines[0].polygon # (K, 2) float32 x, y: covers that line's ink after skew and warp
    page.ink_mask         # (H, W) bool: the handwriting's ink;  page.line_ink: (H, W) int16 owner, 1-based
    line_crop(page, 0)    # the line's box as a detector would hand it to the recogniser

    python weights/pages.py --out /tmp/pages -n 8 --split heldout   # PNGs + labels.json

One writer per page: letters, notes, lists and forms of 3..25 lines written with irregular
word gaps (0.3..2 x-heights), line pitch tight enough that descenders and ascenders of
neighbouring lines touch, ragged left margins and indents, per-line baseline drift and
curvature, per-word slant and rotation, hyphenated line ends, underlines and a crossed-out
word; on plain, ruled or squared paper; seen by a scanner (skew 0..4 degrees) or a phone
(perspective, uneven light, blur, JPEG). Hands are the @fontsource families of fonts.py when
fetched, else the Debian fonts of synth.py. Every page is a pure function of (seed, hands, kind).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

if str(Path(__file__).resolve().parent) not in sys.path:   # importable from tests and benchmarks
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import fonts as fontsource  # noqa: E402
import pagetext  # noqa: E402
import synth  # noqa: E402

KINDS = pagetext.KINDS
DEBIAN_STYLES = {"dancingscript": "cursive", "dancingscript-bold": "cursive", "kaushanscript": "cursive"}
PRINTED_FILES = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "FreeSans.ttf")
XH_RANGE = {"letter": (10, 17), "form": (10, 15), "note": (15, 27), "list": (13, 24)}   # px per 1000 px width
TABLES = [(120, 85, 55), (160, 120, 80), (70, 70, 75), (40, 40, 45), (180, 175, 165), (95, 110, 125)]
INKS = [(20, 20, 28), (18, 35, 120), (35, 50, 150), (70, 70, 75), (8, 8, 8), (120, 25, 35)]


@dataclass(frozen=True)
class Hand:
    name: str
    path: str
    style: str = "print"   # print | cursive | messy
    caps: bool = False     # capitals only: text is upper-cased


@dataclass(frozen=True, eq=False)
class GTLine:
    text: str
    polygon: np.ndarray    # (K, 2) float32 x, y: outline of the line's ink, clockwise
    baseline: np.ndarray   # (M, 2) float32 x, y: the baseline the words sit on, left to right


@dataclass(frozen=True, eq=False)
class Page:
    image: Image.Image     # RGB
    lines: tuple[GTLine, ...]
    ink_mask: np.ndarray   # (H, W) bool: ink of the written lines (not rules or form lines)
    line_ink: np.ndarray   # (H, W) int16: 1 + index of the line that owns the ink pixel, 0 = none
    kind: str
    hand: str
    look: str              # scan | phone
    paper: str             # plain | ruled | squared


def find_hands(split: str = "heldout") -> list[Hand]:
    """The hands of `split` ('train', 'heldout', 'all'): fetched @fontsource families plus
    the installed Debian fonts of the same split (so it works without fetching)."""
    out = [Hand(p.slug, path, p.style, p.caps) for p, path in fontsource.hands(split)]
    names = {"train": synth.TRAIN_FONTS, "heldout": synth.HELDOUT_FONTS, "all": tuple(synth.FONTS)}[split]
    out += [Hand(n, synth.font_path(n), DEBIAN_STYLES.get(n, "print"), n in synth.CAPS_FONTS)
            for n in synth.available_fonts(names)]
    return out


# --------------------------------------------------------------------------- fonts

@lru_cache(maxsize=1024)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=512)
def _metrics(path: str) -> tuple[float, float, float]:
    """x-height, ascender height and descender depth per pixel of font size."""
    f = _font(path, 100)
    return (-f.getbbox("xvwz", anchor="ls")[1] / 100, -f.getbbox("bdhklt", anchor="ls")[1] / 100,
            f.getbbox("gjpqy", anchor="ls")[3] / 100)


@lru_cache(maxsize=1024)
def _stem(path: str, size: int) -> float:
    """Stroke width in pixels at `size`: ink across the middle row of "l", per stroke crossed."""
    m = np.asarray(_font(path, size).getmask("l"), np.float32).reshape(-1) / 255
    h = _font(path, size).getmask("l").size[1]
    row = m.reshape(h, -1)[h // 2] if h else m
    runs = max(1, int(np.sum(np.diff(np.r_[0, row > 0.5, 0].astype(int)) == 1)))
    return float(row.sum()) / runs


@lru_cache(maxsize=512)
def _charset(path: str) -> frozenset[str]:
    return synth.charset_of(_font(path, 32))


def _printed_path() -> str | None:
    idx = synth._font_index()
    return next((idx[f] for f in PRINTED_FILES if f in idx), None)


# --------------------------------------------------------------------------- layout

@dataclass
class _Tok:
    text: str
    path: str              # font file
    size: int              # font size, pixels
    gap: float             # pixels before this token
    under: bool = False
    struck: bool = False
    printed: bool = False

    def width(self) -> float:
        return _font(self.path, self.size).getlength(self.text)


@dataclass
class _Line:
    toks: list
    x0: float              # left edge, pixels
    align: str


def _misspell(rng, w: str) -> str:
    i = int(rng.integers(1, len(w) - 1))
    return w[:i] + w[i + 1] + w[i] + w[i + 2:] if rng.random() < 0.5 else w[:i] + w[i + 1:]


def _clean(text: str, hand: Hand) -> list[str]:
    cs = _charset(hand.path)
    text = text.upper() if hand.caps else text
    return [w for w in ("".join(c for c in w if c in cs) for w in text.split()) if w]


def _layout(blocks, hand, size, xh, left, width, rng, max_lines) -> list[_Line]:
    """Flow the blocks into lines: greedy wrapping with random gaps, a ragged right edge,
    hyphenation, one underlined word and one crossed-out word per page (maybe)."""
    printed = _printed_path() or hand.path
    psize = max(8, int(round(xh * rng.uniform(0.8, 1.0) / _metrics(printed)[0])))
    gap_scale = rng.uniform(0.8, 1.25)
    gap = lambda: xh * gap_scale * float(np.clip(np.exp(rng.normal(np.log(0.85), 0.4)), 0.3, 2.0))  # noqa: E731
    n_words = sum(len(b.text.split()) for b in blocks if b.wrap)
    strike_at = int(rng.integers(n_words)) if n_words and rng.random() < 0.6 else -1
    under_at = int(rng.integers(n_words)) if n_words and rng.random() < 0.25 else -1
    lines, k = [], 0
    for b in blocks:
        toks = []
        if b.label:
            toks += [_Tok(w, printed, psize, 0.3 * xh * (i > 0), printed=True) for i, w in enumerate(b.label.split())]
        x_start = left + b.indent * xh
        limit = lambda: width * rng.uniform(0.82, 1.0) - (x_start - left)  # noqa: E731
        lim, used = limit(), sum(t.width() + t.gap for t in toks)
        for w in _clean(b.text, hand):
            t = _Tok(w, hand.path, size, (gap() + xh * b.label.count(":")) if toks else 0.0, under=b.underline)
            if b.wrap:
                t.under, k = k == under_at or b.underline, k + 1
                if k - 1 == strike_at and len(w) >= 4 and w.isalpha():
                    s = _Tok(_misspell(rng, w), hand.path, size, t.gap, struck=True)
                    toks.append(s)
                    used += s.gap + s.width()
                    t.gap = gap()
            wd = t.width()
            if b.wrap and any(not x.struck for x in toks) and used + t.gap + wd > lim:
                head = _hyphen(rng, t, lim - used - t.gap)
                if head:
                    toks.append(head)
                    t.text, t.gap, wd = t.text[len(head.text) - 1:], 0.0, t.width()
                lines.append(_Line(toks, x_start, b.align))
                x_start, lim, toks, used = left + rng.normal(0, 0.15) * xh, limit(), [], 0.0
                t.gap = 0.0
            toks.append(t)
            used += t.gap + wd
        if toks:
            lines.append(_Line(toks, x_start, b.align))
        if len(lines) >= max_lines:
            break
    return lines[:max_lines]


def _hyphen(rng, t: _Tok, room: float) -> _Tok | None:
    """The head of `t` ending in '-' that fits in `room` pixels, split after a vowel when it can."""
    w = t.text
    if len(w) < 7 or not w.isalpha() or rng.random() < 0.4:
        return None
    cut = [i for i in range(3, len(w) - 2) if _font(t.path, t.size).getlength(w[:i] + "-") <= room]
    if not cut:
        return None
    good = [i for i in cut if w[i - 1] in "aeiouy" and w[i] not in "aeiouy"] or cut
    return _Tok(w[: good[-1]] + "-", t.path, t.size, t.gap, under=t.under)


# --------------------------------------------------------------------------- rendering

def _affine_word(img: Image.Image, ox: float, oy: float, rot: float, slant: float):
    """Rotate by `rot` radians and slant (x += slant * height above baseline) about the
    baseline origin (ox, oy). -> (float32 (h, w) ink, new ox, new oy)."""
    c, s = np.cos(rot), np.sin(rot)
    m = np.array([[c, -s], [s, c]]) @ np.array([[1.0, -slant], [0.0, 1.0]])   # forward, about origin
    w, h = img.size
    corners = (np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - (ox, oy)) @ m.T
    lo, hi = np.floor(corners.min(0)) - 1, np.ceil(corners.max(0)) + 1
    inv = np.linalg.inv(m)
    # input = inv @ (output + lo) + (ox, oy)
    off = inv @ lo + (ox, oy)
    data = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
    out = img.transform(size, Image.AFFINE, data, resample=Image.BILINEAR, fillcolor=0)
    return np.asarray(out, np.float32) / 255.0, -lo[0], -lo[1]


def _word(t: _Tok, size: int, xh: float, rng, jitter: bool, stroke: int):
    """One token's ink with its baseline origin. -> (ink image "L", ox, oy, advance)."""
    f = _font(t.path, size)
    l, top, r, bot = f.getbbox(t.text, anchor="ls")
    pad = int(0.4 * size) + 2
    img = Image.new("L", (r - l + 2 * pad, bot - top + 2 * pad), 0)
    d = ImageDraw.Draw(img)
    ox, oy = pad - l, pad - top
    if jitter:   # letters of a print hand sit a little off the line, each differently
        for i, ch in enumerate(t.text):
            d.text((ox + f.getlength(t.text[:i]), oy + rng.normal(0, 0.05 * xh)), ch, font=f, fill=255,
                   anchor="ls", stroke_width=stroke, stroke_fill=255)
    else:
        d.text((ox, oy), t.text, font=f, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255)
    return img, ox, oy, f.getlength(t.text)


def _paste(canvas: np.ndarray, ink: np.ndarray, x: int, y: int) -> None:
    h, w = ink.shape
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas.shape[0], y + h), min(canvas.shape[1], x + w)
    if y1 > y0 and x1 > x0:
        sub = canvas[y0:y1, x0:x1]
        np.maximum(sub, ink[y0 - y: y1 - y, x0 - x: x1 - x], out=sub)


def _render_line(line: _Line, base_y: float, right: float, hand: Hand, size: int, xh: float, rng, pen):
    """Ink of one line on its own canvas, handwriting and printed labels apart.
    -> (ink (2, h, w) float32, x0, y0, baseline (M, 2)) in paper coordinates."""
    desc = _metrics(hand.path)[2] * size
    widths = [t.gap + t.width() for t in line.toks]
    total = sum(widths)
    x = line.x0
    if line.align == "right":
        x = right - total - rng.uniform(0, 2) * xh
    elif line.align == "centre":
        x = line.x0 + max(0.0, (right - line.x0 - total) / 2) + rng.normal(0, 0.5) * xh
    slope = (pen["slope"] + rng.normal(0, 0.006)) * pen["free"]
    curv = rng.uniform(-0.3, 0.3) * xh * pen["free"]
    phase, lam = rng.uniform(0, 2 * np.pi), rng.uniform(8, 20) * xh
    x_first, span = x, max(total, xh)
    yb = lambda u: (base_y + slope * (u - x_first) + curv * (2 * (u - x_first) / span - 1) ** 2  # noqa: E731
                    + 0.06 * xh * np.sin(2 * np.pi * u / lam + phase))
    pad = int(3 * size)
    h = int(6 * size)
    w = int(total + 2 * pad + 4 * xh)
    canvas = np.zeros((2, h, w), np.float32)
    cx0, cy0 = int(x - pad), int(base_y - 3 * size)
    marks = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(marks)
    base_pts, under, under_end = [], None, None
    jitter = hand.style != "cursive"
    for t, wd in zip(line.toks, widths):
        x += t.gap
        sz = t.size if t.printed else max(8, int(round(size * rng.normal(1, 0.03))))
        img, ox, oy, adv = _word(t, sz, xh, rng, jitter and not t.printed, 0 if t.printed else pen["stroke"])
        mid = x + adv / 2
        d = 1e-3 * xh
        rot = 0.0 if t.printed else float(np.arctan((yb(mid + d) - yb(mid - d)) / (2 * d)) + rng.normal(0, 0.01))
        slant = 0.0 if t.printed else pen["slant"] + rng.normal(0, 0.04)
        ink, ox, oy = _affine_word(img, ox, oy, rot, slant)
        by = yb(mid) - (adv / 2) * np.tan(rot)
        _paste(canvas[int(t.printed)], ink, int(round(x - cx0 - ox)), int(round(by - cy0 - oy)))
        base_pts += [(x, by), (x + adv, by + adv * np.tan(rot))]
        lw = max(1, int(round(pen["width"])))
        if t.under:   # one stroke under a run of underlined words
            under = under or (x - cx0 - 0.2 * xh, by + rng.uniform(0.35, 0.6) * desc + 1 - cy0)
            under_end = (x + adv - cx0 + 0.3 * xh, under[1] + rng.normal(0, 0.12) * xh)
        elif under:
            md.line([under, under_end], fill=255, width=lw)
            under = None
        if t.struck:
            for _ in range(int(rng.integers(1, 3))):
                sy = by - cy0 - rng.uniform(0.35, 0.6) * xh
                md.line([(x - cx0 - 0.15 * xh, sy + rng.normal(0, 0.1) * xh),
                         (x + adv - cx0 + 0.15 * xh, sy + rng.normal(0, 0.15) * xh)], fill=255, width=lw + 1)
        x += adv
    if under:
        md.line([under, under_end], fill=255, width=max(1, int(round(pen["width"]))))
    np.maximum(canvas[0], np.asarray(marks, np.float32) / 255.0, out=canvas[0])
    # trim to the ink (+2 px), so the page fit sees the writing and not the empty canvas
    rows, cols = np.flatnonzero(canvas.max((0, 2)) > 0), np.flatnonzero(canvas.max((0, 1)) > 0)
    r0, r1, c0, c1 = max(0, rows[0] - 2), rows[-1] + 3, max(0, cols[0] - 2), cols[-1] + 3
    return canvas[:, r0:r1, c0:c1], cx0 + c0, cy0 + r0, np.array(base_pts, np.float32)


# --------------------------------------------------------------------------- geometry

def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H @ src for four point pairs (4, 2)."""
    a = []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    h = np.linalg.solve(np.array(a, float), dst.reshape(-1).astype(float))
    return np.append(h, 1.0).reshape(3, 3)


def _apply(hm: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ hm.T
    return (p[:, :2] / p[:, 2:]).astype(np.float32)


def _page_transform(rng, w: int, h: int, look: str, content: np.ndarray) -> np.ndarray:
    """Paper -> image: skew 0..4 degrees about the centre; for a phone, a perspective
    (corners moved by a few percent) and the sheet a little smaller than the frame. The
    result is scaled about the centre so the `content` corners (4, 2) stay inside."""
    ang = np.deg2rad(rng.uniform(0, 4) * rng.choice([-1, 1]))
    c, s = np.cos(ang), np.sin(ang)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    ctr = np.array([w / 2, h / 2])
    dst = (corners - ctr) @ np.array([[c, -s], [s, c]]).T + ctr
    if look == "phone":
        dst = (dst - ctr) * rng.uniform(0.86, 0.97) + ctr + rng.normal(0, 0.012, (4, 2)) * (w, h)
    hm = _homography(corners, dst)
    p = _apply(hm, content) - ctr
    m = 0.015 * min(w, h)
    fit = min(1.0, *((ctr - m) / np.maximum(np.abs(p), 1)).ravel())
    scale = np.array([[fit, 0, ctr[0] * (1 - fit)], [0, fit, ctr[1] * (1 - fit)], [0, 0, 1]])
    return scale @ hm


def _warp_to(img: Image.Image, hm: np.ndarray, x0: float, y0: float, box, fill=0) -> Image.Image:
    """Sample `img` (placed at (x0, y0) in paper coordinates) into the output window
    box = (u0, v0, u1, v1) of the image that `hm` maps paper onto."""
    u0, v0, u1, v1 = box
    t_out = np.array([[1, 0, u0], [0, 1, v0], [0, 0, 1]], float)
    t_in = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float)
    m = t_in @ np.linalg.inv(hm) @ t_out
    m = m / m[2, 2]
    return img.transform((u1 - u0, v1 - v0), Image.PERSPECTIVE, tuple(m.ravel()[:8]),
                         resample=Image.BILINEAR, fillcolor=fill)


def _outline(cov: np.ndarray, u0: int, v0: int, step: int, pad: int = 1) -> np.ndarray:
    """Polygon (K, 2) around the pixels of `cov` > 0.1: top and bottom envelopes of
    column slices `step` wide, each vertex taken at the outer one of its two slices."""
    on = cov > 0.1
    cols = np.flatnonzero(on.any(0))
    c0, c1 = cols[0], cols[-1] + 1
    edges = list(range(c0, c1, step)) + [c1]
    tops, bots = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero(on[:, a:b].any(1))
        tops.append(rows[0] if rows.size else np.nan)
        bots.append(rows[-1] + 1 if rows.size else np.nan)
    idx = np.arange(len(tops))
    ok = ~np.isnan(tops)
    tops = np.interp(idx, idx[ok], np.array(tops)[ok])
    bots = np.interp(idx, idx[ok], np.array(bots)[ok])
    t_ext = np.r_[tops[0], tops, tops[-1]]
    b_ext = np.r_[bots[0], bots, bots[-1]]
    up = [(e, min(t_ext[i], t_ext[i + 1]) - pad) for i, e in enumerate(edges)]
    lo = [(e, max(b_ext[i], b_ext[i + 1]) + pad) for i, e in enumerate(edges)]
    up[0], up[-1] = (up[0][0] - pad, up[0][1]), (up[-1][0] + pad, up[-1][1])
    lo[0], lo[-1] = (lo[0][0] - pad, lo[0][1]), (lo[-1][0] + pad, lo[-1][1])
    return (np.array(up + lo[::-1], np.float32) + (u0, v0)).astype(np.float32)


# --------------------------------------------------------------------------- paper and camera

def _paper(rng, w: int, h: int, kind: str, pitch: float, top: float, left: float, rows, field_lines):
    """Sheet of paper in paper coordinates: tint, fibres, soft light, rules. (h, w, 3) float32."""
    tone = rng.uniform(225, 252) - rng.uniform(0, 10) * np.array([0, 0.6, 1.8])
    if rng.random() < 0.15:   # cream, grey or recycled paper
        tone = tone - rng.uniform(0, 15) * np.array([0.2, 0.5, 1.0]) - rng.uniform(0, 10)
    bg = np.empty((h, w, 3), np.float32)
    bg[:] = tone
    bg *= (1 + synth._smooth_noise(rng, (h, w), rng.uniform(150, 400)) * 0.015)[..., None]
    bg += (synth._smooth_noise(rng, (h, w), rng.uniform(1.5, 3)) * rng.uniform(0.5, 3))[..., None]
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    rule = tuple(int(v) for v in np.array([150, 175, 225]) + rng.normal(0, 10, 3))
    lw = int(rng.integers(1, 3))
    if kind == "ruled":
        y = top % pitch
        while y < h:
            d.line([(0, y), (w, y)], fill=rule, width=lw)
            y += pitch
        if rng.random() < 0.6:
            d.line([(left - 0.3 * pitch, 0), (left - 0.3 * pitch, h)], fill=(225, 140, 150), width=lw)
    elif kind == "squared":
        cell = pitch / 2
        for y in np.arange(top % cell, h, cell):
            d.line([(0, y), (w, y)], fill=rule, width=1)
        for x in np.arange(left % cell, w, cell):
            d.line([(x, 0), (x, h)], fill=rule, width=1)
    dotted = rng.random() < 0.5
    for (x0, x1, y) in field_lines:   # printed form lines: a dotted or solid rule under the answer
        grey = (110, 110, 115)
        if not dotted:
            d.line([(x0, y), (x1, y)], fill=grey, width=1)
        else:
            for x in np.arange(x0, x1, 6):
                d.line([(x, y), (x + 2, y)], fill=grey, width=1)
    return np.asarray(img, np.float32)


def _camera(img: np.ndarray, rng, look: str) -> Image.Image:
    """Light, colour cast, noise, blur, JPEG: a flatbed scan or a phone photo. RGB."""
    h, w, _ = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if look == "phone":
        g = rng.normal(0, 1, 2).astype(np.float32) * np.float32(0.12 * abs(rng.normal()))
        light = 1 - ((xx / w - 0.5) * g[0] + (yy / h - 0.5) * g[1])
        r2 = ((xx / w - np.float32(rng.uniform(0.3, 0.7))) ** 2 + (yy / h - np.float32(rng.uniform(0.3, 0.7))) ** 2)
        light *= 1 - np.float32(rng.uniform(0.05, 0.3)) * r2
        if rng.random() < 0.4:   # the shadow of the phone or a hand
            a = rng.uniform(0, 2 * np.pi)
            dist = (xx - w / 2) * np.float32(np.cos(a)) + (yy - h / 2) * np.float32(np.sin(a)) \
                - np.float32(rng.uniform(0.1, 0.45) * w)
            light *= 1 - np.float32(rng.uniform(0.1, 0.3)) / (1 + np.exp(-dist / np.float32(rng.uniform(15, 60))))
        img = img * light[..., None] * (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
    else:
        img = img * (1 + synth._smooth_noise(rng, (h, w), 300) * 0.01)[..., None]
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.5, 4 if look == "phone" else 2))
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0.4, 1.3) if look == "phone" else rng.uniform(0, 0.7)
    if blur > 0.25:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    if look == "phone" or rng.random() < 0.6:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(40, 92) if look == "phone" else rng.integers(70, 96)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out


# --------------------------------------------------------------------------- pages

def make_page(seed: int, hands: list[Hand], kind: str | None = None, look: str | None = None,
              paper: str | None = None) -> Page:
    """Page `seed`: one hand from `hands`, a `kind` from KINDS, a look ('scan' / 'phone')
    and paper ('plain' / 'ruled' / 'squared'); each drawn at random when None."""
    if not hands:
        raise ValueError("no hands given: fetch fonts (python weights/fonts.py fetch) or install "
                         "the Debian fonts listed in weights/synth.py")
    hands = [hd if isinstance(hd, Hand) else Hand(Path(hd).stem, str(hd)) for hd in hands]   # font paths too
    rng = np.random.default_rng([seed, 0x9a6e])
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise ValueError(f"unknown page kind {kind!r}; known: {', '.join(KINDS)}")
    hand = hands[int(rng.integers(len(hands)))]
    look = look or ("phone" if rng.random() < 0.5 else "scan")
    paper = paper or ("plain" if kind == "form" else str(rng.choice(["plain", "ruled", "squared"], p=[0.5, 0.38, 0.12])))
    w = int(rng.integers(900, 1301))
    h = int(np.clip(w * rng.uniform(0.85, 1.42), 900, 1300))
    xh_f, asc_f, desc_f = _metrics(hand.path)
    left, right = w * rng.uniform(0.05, 0.13), w * (1 - rng.uniform(0.04, 0.1))
    spacing, margin_top = rng.uniform(0.85, 1.1), h * rng.uniform(0.05, 0.12)
    blocks = pagetext.document(rng, kind)
    xh = rng.uniform(*XH_RANGE[kind]) * w / 1000
    for _ in range(3):
        size = max(10, int(round(xh / max(xh_f, 0.2))))
        xh = xh_f * size
        # descenders of one line reach down to the ascenders of the next, often past them
        pitch = max((asc_f + desc_f) * size * spacing, xh * 1.9) * (1.5 if kind == "form" else 1.0)
        top = margin_top + asc_f * size
        room = int((h * 0.95 - top - desc_f * size) // pitch + 1)
        max_lines = min(25, room)
        lines = _layout(blocks, hand, size, xh, left, right - left, rng, max_lines)
        while len(lines) < 3:   # short notes: keep writing
            blocks.append(pagetext.Block(pagetext.prose(rng, 2), wrap=True))
            lines = _layout(blocks, hand, size, xh, left, right - left, rng, max_lines)
        fill = len(lines) / room
        if kind not in ("note", "list") or fill > 0.55:
            break
        xh *= min(1.6, (0.7 / fill) ** 0.5)   # a short note or list is written large
    stem = _stem(hand.path, size)   # a hairline font at this size gets a broader pen
    # on ruled paper the writing keeps to the rules: a third of the drift and curvature
    pen = {"slope": rng.normal(0, 0.008), "slant": rng.normal(0, 0.12), "free": 0.35 if paper == "ruled" else 1.0,
           "stroke": int(stem < 1.6 or (rng.random() < 0.25 and stem < 3)), "width": max(1.0, stem)}
    drift = rng.normal(0, 0.4) * xh / max(1, len(lines))   # a left margin that wanders down the page
    patches, field_lines = [], []
    for k, ln in enumerate(lines):
        ln.x0 += k * drift + rng.normal(0, 0.12) * xh
        base_y = top + k * pitch + (rng.uniform(-0.12, 0.0) if paper == "ruled" else rng.normal(0, 0.07)) * xh
        ink, x0, y0, base = _render_line(ln, base_y, right, hand, size, xh, rng, pen)
        patches.append((ink, x0, y0, base))
        if ln.toks and ln.toks[0].printed and ln.toks[-1].printed is False and kind == "form":
            lab = sum(t.gap + t.width() for t in ln.toks if t.printed)
            field_lines.append((ln.x0 + lab + 0.5 * xh, right, base_y + 0.45 * desc_f * size + 2))
    # paper -> image, keeping the writing inside the frame
    boxes = np.array([[x0, y0, x0 + ink.shape[2], y0 + ink.shape[1]] for ink, x0, y0, _ in patches], float)
    ext = [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]
    content = np.array([[ext[0], ext[1]], [ext[2], ext[1]], [ext[2], ext[3]], [ext[0], ext[3]]])
    hm = _page_transform(rng, w, h, look, content)
    sheet = Image.fromarray(np.clip(_paper(rng, w, h, paper, pitch, top, left, None, field_lines), 0, 255)
                            .astype(np.uint8))
    table = np.array(TABLES[int(rng.integers(len(TABLES)))]) * rng.uniform(0.7, 1.1) if look == "phone" \
        else np.array([235, 235, 235]) * rng.uniform(0.9, 1.0)
    table = np.clip(table, 0, 255).astype(np.float32)
    bg = np.asarray(_warp_to(sheet, hm, 0, 0, (0, 0, w, h)), np.float32)
    inside = np.asarray(_warp_to(Image.new("L", (w, h), 255), hm, 0, 0, (0, 0, w, h)), np.float32)[..., None] / 255
    bg = bg * inside + table * (1 - inside)
    # each line's ink through the same map, in a window around its image
    cov = np.zeros((2, h, w), np.float32)   # handwriting, printed
    owner = np.zeros((h, w), np.int16)
    gt = []
    for k, (ink, x0, y0, base) in enumerate(patches):
        ph, pw = ink.shape[1:]
        corners = _apply(hm, np.array([[x0, y0], [x0 + pw, y0], [x0 + pw, y0 + ph], [x0, y0 + ph]], float))
        u0, v0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        u1, v1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, (w, h))
        layers = [np.asarray(_warp_to(Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)), hm, x0, y0,
                                      (u0, v0, u1, v1)), np.float32) / 255 if a.any() else None for a in ink]
        win = np.maximum(*[a if a is not None else 0 for a in layers])
        if not (win > 0.1).any():
            continue
        mine = (win > 0.5) & (win > cov[:, v0:v1, u0:u1].max(0))
        owner[v0:v1, u0:u1][mine] = len(gt) + 1
        for j, a in enumerate(layers):
            if a is not None:
                np.maximum(cov[j, v0:v1, u0:u1], a, out=cov[j, v0:v1, u0:u1])
        poly = _outline(win, u0, v0, step=max(3, int(round(xh))))
        poly = np.clip(poly, 0, (w - 1, h - 1))
        text = " ".join(t.text for t in lines[k].toks if not t.struck)
        gt.append(GTLine(text, poly, _apply(hm, base)))
    ink_mask = cov.max(0) > 0.5
    owner[~ink_mask] = 0
    col = np.clip(np.array(INKS[rng.choice(len(INKS), p=[.3, .25, .15, .12, .12, .06])]) + rng.normal(0, 8, 3),
                  0, 255).astype(np.float32)
    pencil = col[0] == 70 and rng.random() < 0.5
    opacity = np.float32(rng.uniform(0.8, 1.0)) * (1 - np.clip(synth._smooth_noise(rng, (h, w), 4) * np.float32(0.25 if pencil else 0.08), 0, 0.6))
    a = (cov[0] * opacity)[..., None]
    img = bg * (1 - a) + col * a
    a = cov[1][..., None] * np.float32(rng.uniform(0.85, 1.0))
    out = _camera(img * (1 - a) + np.float32(rng.uniform(0, 40)) * a, rng, look)
    return Page(out, tuple(gt), ink_mask, owner, kind, hand.name, look, paper)


def line_crop(page: Page, k: int, margin: float = 0.15) -> Image.Image:
    """Line k as a recogniser sees it: the box around its polygon, grown by `margin` of its
    height on every side (clipped to the page), as a detector's line box would be. RGB."""
    poly = page.lines[k].polygon
    (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
    m = margin * (y1 - y0)
    w, h = page.image.size
    return page.image.crop((int(max(0, x0 - m)), int(max(0, y0 - m)), int(min(w, x1 + m + 1)), int(min(h, y1 + m + 1))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--split", default="heldout", choices=("train", "heldout", "all"))
    ap.add_argument("--kind", default=None, choices=KINDS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    hands = find_hands(args.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(args.n):
        p = make_page(args.seed + i, hands, args.kind)
        name = f"{args.seed + i:06d}.png"
        p.image.save(out / name)
        labels[name] = {"kind": p.kind, "hand": p.hand, "look": p.look, "paper": p.paper,
                        "lines": [{"text": g.text, "polygon": g.polygon.round(1).tolist(),
                                   "baseline": g.baseline.round(1).tolist()} for g in p.lines]}
    (out / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    print(f"wrote {args.n} pages in {len(hands)} hands to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
