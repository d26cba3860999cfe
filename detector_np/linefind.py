"""Handwritten lines kept whole: word boxes chained along the text direction, line regions grown
over CRAFT's region map to cover each line's ink without taking the neighbour's.

    chain_words(boxes, options, center) -> (lines [M x word indices], marks [word indices], angle)
    split_merged / small_words                      word boxes for chaining, from the boxes and the map
    text_lines(det, image_size, options) -> (quads (M, 4, 2), polygons [M x (K, 2)])   (method "lines")
    flood(levels, seeds, mask) / flood_ref(...) -> owner (h, w) int32

1. Page skew (`layout.skew_angle`) is taken out; word boxes tilted by < straighten_deg are made
   upright (a slanted handwritten word's min-area box is tilted, its line is not). A box taller
   than split_height typical heights (CRAFT joined two touching lines) is replaced by its
   character blobs, at rising region-score thresholds until they come apart; blobs of the region
   map outside every box (short words and initials the size threshold dropped) are added. Boxes
   much smaller than the text height (mark_size) and boxes inside bigger ones are marks.
2. Chaining (`detector_np.linechain`): words joined by mutual best matches along the text
   direction, chain ends grown to their chain's band, a far round for widely spaced words, lone
   pieces (commas, descenders boxed apart) left to the flood as marks.
3. Regions (with CRAFT's maps). Each line's seed is its words' core pixels (region score >
   seed_score inside its boxes; pixels inside boxes of two lines seed neither). The seeds flood
   the pixels whose region score is > ink_score, highest score first (a watershed on the region
   score): where two lines' ink touches, the boundary falls at the lowest score between them,
   i.e. between the characters, not at a fixed distance from the lines' centres. Pixels farther
   than `band` heights from their line's centre line, and pixels the flood never reached (dots
   and commas whose score never joins their word's), go to the nearest line within reach. A
   line's polygon is the upper and lower envelope of its pixels, column by column.
4. Quads for cropping: the rectangle at the line's own direction (a least-squares fit through
   its words' centres) that holds the whole polygon.

The work is linear in the map's pixels (labelling, the bucket-queue flood) plus the links tried
between chain ends (small: tens to a few hundred words a page); ~0.5% of the page's detection.

Coordinates are page pixels; the maps are at half the canvas (page * ratio / 2).
"""
from __future__ import annotations

import heapq

import numpy as np
from numba import njit
from PIL import Image, ImageDraw

from ocr_base.geometry import rotate, side_lengths

from .cv_ops import label_components
from .layout import skew_angle
from .linechain import chain_words, upright_boxes

LEVELS = 255      # the region score is quantised to 0..LEVELS for the flood's bucket queue
_DY = np.array([-1, 1, 0, 0])   # 4-neighbours: up, down, left, right (flood_ref's order)
_DX = np.array([0, 0, -1, 1])


# ------------------------------------------------------------------ line direction
def line_angle(q, angle):
    """Direction of a line (radians): the page skew plus a least-squares slope through its words' centres."""
    c = q.reshape(-1, 4, 2).mean(1)
    if len(c) < 2 or np.ptp(c[:, 0]) < 1e-6:
        return angle
    r = rotate(c, -angle)
    slope = np.polyfit(r[:, 0], r[:, 1], 1)[0]
    return angle + float(np.arctan(np.clip(slope, -0.2, 0.2)))


def enclosing_quad(points, angle) -> np.ndarray:
    """The rectangle at `angle` holding all `points` (K, 2) -> (4, 2) TL, TR, BR, BL."""
    r = rotate(points, -angle)
    x0, y0 = r.min(0)
    x1, y1 = r.max(0)
    return rotate(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), angle)


# ------------------------------------------------------------------ the flood (watershed)
def flood_ref(levels, seeds, mask):
    """Readable reference of `flood`: seeds (h, w) int32 (0 = none) grow over `mask` (h, w) bool,
    highest level first, 4-neighbours, first come first served within a level (a heap with an
    insertion counter). levels: (h, w) ints 0..LEVELS. Returns the owner of each pixel (0 = none)."""
    h, w = seeds.shape
    owner = seeds.copy()
    heap, count = [], 0
    for y, x in zip(*np.nonzero(seeds)):
        heapq.heappush(heap, (-int(levels[y, x]), count, int(y), int(x)))
        count += 1
    while heap:
        _, _, y, x = heapq.heappop(heap)
        for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= yy < h and 0 <= xx < w and owner[yy, xx] == 0 and mask[yy, xx]:
                owner[yy, xx] = owner[y, x]
                heapq.heappush(heap, (-int(levels[yy, xx]), count, yy, xx))
                count += 1
    return owner


@njit(cache=True, inline="always")
def _push(head, tail, nxt, p, lv, top):  # pragma: no cover - compiled
    """Append pixel p to the FIFO of level lv (linked through `nxt`); returns the new highest level."""
    if tail[lv] == -1:
        head[lv] = p
    else:
        nxt[tail[lv]] = p
    tail[lv] = p
    return max(top, lv)


@njit(cache=True)
def _flood(levels, seeds, mask):  # pragma: no cover - compiled
    """`flood_ref` with a bucket queue: one FIFO per level (linked through `nxt`), popped highest first."""
    h, w = seeds.shape
    owner = seeds.copy()
    head = np.full(LEVELS + 1, -1, np.int64)
    tail = np.full(LEVELS + 1, -1, np.int64)
    nxt = np.full(h * w, -1, np.int64)
    top = -1
    for p in range(h * w):
        if seeds.flat[p] != 0:
            top = _push(head, tail, nxt, p, levels.flat[p], top)
    while top >= 0:
        p = head[top]
        if p == -1:
            top -= 1
            continue
        head[top] = nxt[p]
        if head[top] == -1:
            tail[top] = -1
        y, x = p // w, p % w
        for k in range(4):
            yy, xx = y + _DY[k], x + _DX[k]
            if 0 <= yy < h and 0 <= xx < w:
                q = yy * w + xx
                if owner.flat[q] == 0 and mask.flat[q]:
                    owner.flat[q] = owner.flat[p]
                    top = _push(head, tail, nxt, q, levels.flat[q], top)
    return owner


def flood(levels, seeds, mask):
    """Compiled `flood_ref` (held equal by tests/test_line_finding.py)."""
    return _flood(np.ascontiguousarray(levels, np.int64), np.ascontiguousarray(seeds, np.int32),
                  np.ascontiguousarray(mask, np.bool_))


# ------------------------------------------------------------------ lines from the maps
def _paint(seeds, quad, k):
    """Mark the map pixels (index coordinates) inside convex `quad` (4, 2) with k; -1 where another line is."""
    hm, wm = seeds.shape
    x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int) + 1, (wm, hm))
    if x1 <= x0 or y1 <= y0:
        return
    img = Image.new("1", (int(x1 - x0), int(y1 - y0)), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in quad - [x0, y0]], fill=1, outline=1)
    inside = np.asarray(img)
    win = seeds[y0:y1, x0:x1]
    win[inside & (win == 0)] = k
    win[inside & (win > 0) & (win != k)] = -1


def _attach(owner, mask, to_frame, fit, ext, heights, band, reach):
    """Unclaimed pixels of `mask` -> the nearest line (in place on owner): dots, commas, bullets.

    Per pixel, in the de-skewed page frame (to_frame: map pixel indices (K, 2) -> (K, 2)): the
    distance across line k is to its centre line v = fit[k, 0] * u + fit[k, 1], the distance along
    it is to its extent ext[k] = (u0, u1); a pixel joins the line minimising the sum, in heights,
    if it is less than `band` heights across and `reach` heights along.
    """
    ys, xs = np.nonzero(mask & (owner == 0))
    if not len(ys) or not len(heights):
        return
    r = to_frame(np.stack([xs, ys], 1))
    hh = heights[None, :]
    across = np.abs(r[:, 1:2] - (fit[None, :, 0] * r[:, 0:1] + fit[None, :, 1])) / hh
    along = np.maximum(np.maximum(ext[None, :, 0] - r[:, 0:1], r[:, 0:1] - ext[None, :, 1]), 0) / hh
    cost = np.where((across < band) & (along < reach), across + along, np.inf)
    best = cost.argmin(1)
    ok = np.isfinite(cost[np.arange(len(ys)), best])
    owner[ys[ok], xs[ok]] = best[ok] + 1


def _envelope(pts, half, angle, step):
    """Pixels (K, 2) page coords, each a square of half-side `half` -> staircase polygon (P, 2) in
    page coords holding all of them: per column of width `step` along the line, its top and bottom."""
    r = rotate(pts, -angle)
    u0 = r[:, 0].min() - half
    col = ((r[:, 0] - u0) // step).astype(int)
    ncol = int(col.max()) + 1
    top = np.full(ncol, np.inf)
    bot = np.full(ncol, -np.inf)
    np.minimum.at(top, col, r[:, 1] - half)
    np.maximum.at(bot, col, r[:, 1] + half)
    # a pixel's square reaches half a pixel into the next column
    lo_edge = u0 + col * step
    spill = (r[:, 0] + half) > lo_edge + step
    np.minimum.at(top, np.minimum(col[spill] + 1, ncol - 1), r[spill, 1] - half)
    np.maximum.at(bot, np.minimum(col[spill] + 1, ncol - 1), r[spill, 1] + half)
    full = np.isfinite(top)
    k = np.arange(ncol)
    top = np.interp(k, k[full], top[full])
    bot = np.interp(k, k[full], bot[full])
    u1 = r[:, 0].max() + half
    xs = np.minimum(u0 + np.arange(ncol + 1) * step, u1)
    upper = [(xs[i + e], top[i]) for i in range(ncol) for e in (0, 1)]
    lower = [(xs[i + e], bot[i]) for i in reversed(range(ncol)) for e in (1, 0)]
    return rotate(np.array(upper + lower), angle)


def split_merged(q, score_text, s, angle, center, options):
    """Word quads (N, 4, 2) -> quads where each box taller than split_height typical heights (CRAFT
    joined words of two touching lines: a descender's affinity reached the next line) is replaced by
    the boxes of its character blobs (region score > seed_score), upright in the de-skewed frame."""
    o = options
    b = upright_boxes(rotate(q, -angle, center), o.straighten_deg)
    h = b[:, 3] - b[:, 2]
    typical = float(np.median(h))
    out = []
    for i in range(len(q)):
        if h[i] <= o.split_height * typical:
            out.append(q[i])
            continue
        m = q[i] * s                                                   # the box's window of the map
        x0, y0 = np.maximum(np.floor(m.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(m.max(0)).astype(int) + 1, score_text.shape[::-1])
        one = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.int32)
        _paint(one, m - [x0, y0], 1)
        for t in sorted({o.seed_score, 0.55, 0.7}):   # raise the threshold until the lines come apart
            n, lab, stats = label_components((one > 0) & (score_text[y0:y1, x0:x1] > t))
            keep = stats[:, 4] >= 3
            keep[0] = False
            pieces = _blob_quads(lab, n, keep, s, angle, center, (x0, y0))
            pb = upright_boxes(rotate(pieces, -angle, center), o.straighten_deg)
            ph, pw = pb[:, 3] - pb[:, 2], pb[:, 1] - pb[:, 0]
            tall = ph > o.split_height * typical
            if not tall.any():
                break
        if len(pieces) <= 1:
            out.append(q[i])
            continue
        # a lone tall stroke (a descender reaching into the next line) is no word of either line:
        # the flood gives it to the line it hangs from
        out.extend(pieces[~(tall & (pw < ph))])
    return np.asarray(out, np.float64).reshape(-1, 4, 2)


def _blob_quads(lab, n, keep, s, angle, center, origin=(0, 0)):
    """Upright (de-skewed) page quads (K, 4, 2) around the map blobs j of `lab` with keep[j];
    lab may be a window of the map whose top-left pixel is `origin` (x, y)."""
    ys, xs = np.nonzero(lab)
    k = lab[ys, xs]
    sel = keep[k]
    r = rotate((np.stack([xs[sel], ys[sel]], 1) + origin) / s, -angle, center)
    k = k[sel]
    out = []
    for j in np.unique(k):
        pts = r[k == j]
        (u0, v0), (u1, v1) = pts.min(0) - 0.5 / s, pts.max(0) + 0.5 / s
        out.append(rotate(np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]), angle, center))
    return np.asarray(out, np.float64).reshape(-1, 4, 2)


def small_words(q, score_text, s, angle, center, options):
    """Blobs of the region map (score > seed_score) outside every word box: the short words, initials
    and punctuation that detection's size threshold dropped -> upright quads (K, 4, 2). They bridge
    the gaps they leave in a line, and never make a line by themselves."""
    boxes = np.zeros(score_text.shape, np.int32)
    for quad in q:
        _paint(boxes, quad * s, 1)
    n, lab, stats = label_components(score_text > options.seed_score)
    touched = np.zeros(n, bool)
    touched[lab[boxes != 0]] = True
    keep = ~touched & (stats[:, 4] >= 2)
    keep[0] = False
    return _blob_quads(lab, n, keep, s, angle, center)


def text_lines(det, image_size, options):
    """A Detection (word boxes and CRAFT's maps) -> (line quads (M, 4, 2), polygons [M x (K, 2)]) float32."""
    o = options
    q = np.asarray(det.boxes, np.float64).reshape(-1, 4, 2)
    if len(q) == 0 or det.score_text is None:
        from .lines import group_lines   # no maps: the boxes alone ("handwriting")
        quads = group_lines(q, o, image_size)
        return quads, list(quads)
    center = np.asarray(image_size, np.float64) / 2
    st = np.asarray(det.score_text, np.float32)
    s = float(np.mean(np.asarray(det.ratio, np.float64))) / 2          # page -> map
    angle = skew_angle(q)
    q = split_merged(q, st, s, angle, center, o)
    n_words = len(q)
    q = np.concatenate([q, small_words(q, st, s, angle, center, o)])
    lines, _, angle = chain_words(q, o, center, angle)
    lines = [ln for ln in lines if min(ln) < n_words]
    seeds = np.zeros(st.shape, np.int32)
    for k, ln in enumerate(lines, 1):
        for i in ln:
            _paint(seeds, q[i] * s, k)
    seeds[(seeds < 0) | (st <= o.seed_score)] = 0
    mask = st > o.ink_score
    levels = np.clip(np.rint(st * LEVELS), 0, LEVELS)
    owner = flood(levels, seeds, mask | (seeds > 0))

    heights = np.array([np.median(side_lengths(q[ln])[:, [1, 3]]) for ln in lines]).reshape(-1)

    def to_frame(idx):  # map pixel indices -> page coords in the de-skewed frame
        return rotate(np.asarray(idx, np.float64) / s, -angle, center)
    ys, xs = np.nonzero(owner)
    ext = np.zeros((len(lines), 4))
    fit = np.zeros((len(lines), 2))
    if len(ys):
        r = to_frame(np.stack([xs, ys], 1))
        lab = owner[ys, xs] - 1
        # the flood follows faint score wherever it leads (down a column of bullets, say): a pixel
        # more than `band` heights from its line's centre line goes back to be attached by distance
        for k, ln in enumerate(lines):
            c = rotate(q[ln].mean(1), -angle, center)
            fit[k] = np.polyfit(c[:, 0], c[:, 1], 1) if len(ln) > 1 and np.ptp(c[:, 0]) > 0 else (0, c[0, 1])
        far = np.abs(r[:, 1] - (fit[lab, 0] * r[:, 0] + fit[lab, 1])) > o.band * heights[lab]
        owner[ys[far], xs[far]] = 0
        ys, xs, r, lab = ys[~far], xs[~far], r[~far], lab[~far]
        for k, (f, v) in enumerate(((np.minimum, r[:, 0]), (np.maximum, r[:, 0]), (np.minimum, r[:, 1]),
                                    (np.maximum, r[:, 1]))):
            col = np.full(len(lines), np.inf if f is np.minimum else -np.inf)
            f.at(col, lab, v)
            ext[:, k] = col
    _attach(owner, mask, to_frame, fit, ext[:, :2], heights, o.band, o.join_gap / 2)

    ys, xs = np.nonzero(owner)
    order = np.argsort(owner[ys, xs], kind="stable")
    ys, xs = ys[order], xs[order]
    cuts = np.searchsorted(owner[ys, xs], np.arange(1, len(lines) + 2))
    quads, polys = [], []
    for k, ln in enumerate(lines):
        a = line_angle(q[ln], angle)
        pts = np.stack([xs[cuts[k]:cuts[k + 1]], ys[cuts[k]:cuts[k + 1]]], 1) / s
        if len(pts):
            poly = _envelope(pts, 0.5 / s, a, max(2.0 / s, 0.5 * heights[k]))
        else:
            poly = enclosing_quad(q[ln].reshape(-1, 2), a)
        quad = enclosing_quad(np.concatenate([poly, q[ln].reshape(-1, 2)]), a)
        if side_lengths(quad).max() > o.min_size:
            quads.append(quad)
            polys.append(poly)
    lim = np.asarray(image_size, np.float64)
    quads = np.asarray(quads, np.float32).reshape(-1, 4, 2)
    return quads, [np.clip(p, 0, lim).astype(np.float32) for p in polys]
