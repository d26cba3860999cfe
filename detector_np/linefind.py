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
2. Chaining. Word b can follow word a when it starts to a's right, less than join_gap heights
   away, and their vertical extents overlap by at least join_overlap of the smaller one. The cost
   of a link is the gap and the offset of the centres (in heights) plus twice the missing
   overlap; a link is made when each is the other's cheapest partner (a mutual best match), and
   repeated on the ends of the chains, a chain's extent carried along its slope, until nothing
   joins. Mutual best matches keep touching lines apart: a descender that reaches into the next
   line's box overlaps it a little, but the word beside it on its own line overlaps it more.
   A chain's end box is grown to the chain's band (its width-weighted centre line +- half its
   median height), since a line's first or last box is often a capital or a comma; the overlap
   of a link is the best of the bands' and the boxes', carried along the slope and not. When
   nothing more joins, a far round allows gaps up to far_gap heights with overlap far_overlap
   (writers who leave three or four heights between words). A second pass starts every word on
   the slope of the nearest long line (photographed pages: perspective turns the lines'
   direction across the page). One-box chains that are pieces of a longer line (a comma, a
   descender, a letter boxed apart: small, inside its extent, on its band) become marks.
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

from .layout import skew_angle
from .cv_ops import label_components

PIECE_REACH = 0.35   # a lone small box this many band heights from a line's band is a piece of it
LEVELS = 255      # the region score is quantised to 0..LEVELS for the flood's bucket queue
_DY = np.array([-1, 1, 0, 0])   # 4-neighbours: up, down, left, right (flood_ref's order)
_DX = np.array([0, 0, -1, 1])


# ------------------------------------------------------------------ words -> chains
def _upright(q, max_deg):
    """Deskewed word quads (N, 4, 2) -> (N, 4) [u0, u1, v0, v1]; boxes tilted < max_deg made upright."""
    sides = side_lengths(q)
    top = q[:, 1] - q[:, 0]
    tilt = np.abs(np.rad2deg(np.arctan2(top[:, 1], top[:, 0])))
    c = q.mean(1)
    w, h = 0.5 * (sides[:, 0] + sides[:, 2]), 0.5 * (sides[:, 1] + sides[:, 3])
    ext = np.stack([q[:, :, 0].min(1), q[:, :, 0].max(1), q[:, :, 1].min(1), q[:, :, 1].max(1)], 1)
    up = np.stack([c[:, 0] - w / 2, c[:, 0] + w / 2, c[:, 1] - h / 2, c[:, 1] + h / 2], 1)
    return np.where((tilt < max_deg)[:, None], up, ext)


def _link_costs(b, a_idx, b_idx, o, slope=None, far=False, raw=None):
    """Cost of word b_idx[j] following word a_idx[i] ((len(a), len(b)); inf where not allowed).

    far: the second round's limits (o.far_gap heights, o.far_overlap) instead of the first's
    (o.join_gap, o.join_overlap).

    slope: per word, the slope of the chain it is in (nan for a lone word): a's extent is carried
    along the chains' mean slope to b before the overlap is measured (baselines drift and curve).
    raw: the words' own boxes when b holds them grown to their chains' bands: the overlap is the
    best of the bands and the boxes, carried and not (a band tilted by one word's descender, or
    a short chain of letters of one slanted word, must not undo the boxes' overlap).
    """
    shift = 0.0
    if slope is not None:
        sa, sb = slope[a_idx][:, None], slope[b_idx][None, :]
        m = np.where(np.isnan(sa), np.where(np.isnan(sb), 0.0, sb), np.where(np.isnan(sb), sa, 0.5 * (sa + sb)))
        shift = m * 0.5 * ((b[b_idx][None, :, 0] + b[b_idx][None, :, 1]) - (b[a_idx][:, None, 0] + b[a_idx][:, None, 1]))
    A, B, overlap = _carried_overlap(b, a_idx, b_idx, shift)
    for x, sh in ((b, 0.0), (raw, shift), (raw, 0.0)) if raw is not None else ():
        overlap = np.maximum(overlap, _carried_overlap(x, a_idx, b_idx, sh)[2])
    ha, hb = A[..., 3] - A[..., 2], B[..., 3] - B[..., 2]
    wa, wb = A[..., 1] - A[..., 0], B[..., 1] - B[..., 0]
    gap = B[..., 0] - A[..., 1]
    max_gap, min_overlap = (o.far_gap, o.far_overlap) if far else (o.join_gap, o.join_overlap)
    ok = ((B[..., 0] + B[..., 1]) > (A[..., 0] + A[..., 1])) & (overlap >= min_overlap) \
        & (gap < max_gap * np.maximum(ha, hb)) & (gap > -0.5 * np.minimum(wa, wb))
    ok &= a_idx[:, None] != b_idx[None, :]
    hmean = 0.5 * (ha + hb)
    dv = np.abs((B[..., 2] + B[..., 3]) - (A[..., 2] + A[..., 3])) / 2
    cost = (np.maximum(gap, 0) + 0.5 * np.maximum(-gap, 0) + dv) / hmean + 2 * (1 - np.minimum(overlap, 1))
    return np.where(ok, cost, np.inf)


def _carried_overlap(b, a_idx, b_idx, shift):
    """(A, B, overlap): boxes a (moved down by shift) and b broadcast to (len(a), len(b), 4), and
    their vertical overlap over the smaller height."""
    A, B = b[a_idx][:, None, :], b[b_idx][None, :, :]
    A = np.broadcast_to(A, (len(a_idx), len(b_idx), 4)).copy()
    A[..., 2] += shift
    A[..., 3] += shift
    B = np.broadcast_to(B, A.shape)
    hmin = np.maximum(np.minimum(A[..., 3] - A[..., 2], B[..., 3] - B[..., 2]), 1e-6)
    return A, B, (np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 2], B[..., 2])) / hmin


def _mutual_links(cost):
    """Pairs (i, j) that are each other's cheapest finite entry of `cost`."""
    if cost.size == 0:
        return []
    succ, pred = cost.argmin(1), cost.argmin(0)
    return [(i, j) for i, j in enumerate(succ) if np.isfinite(cost[i, j]) and pred[j] == i]


def chain_words(boxes, options, center, angle=None):
    """Word quads (N, 4, 2), page coords -> (lines: lists of word indices left to right, marks, skew).

    center: pivot of the de-skew (the page centre); angle: the page skew (default: from the boxes).
    """
    o = options
    q = np.asarray(boxes, np.float64).reshape(-1, 4, 2)
    if angle is None:
        angle = skew_angle(q) if len(q) else 0.0
    b = _upright(rotate(q, -angle, center), o.straighten_deg)
    h, w = b[:, 3] - b[:, 2], b[:, 1] - b[:, 0]
    typical = float(np.median(h)) if len(b) else 0.0
    # marks: dots and commas, and pieces inside a bigger box; the flood gives them to their line
    is_mark = (np.maximum(w, h) < o.mark_size * typical) | _nested(b)
    words = np.flatnonzero(~is_mark)
    lines = _chain(b, words, o, np.full(len(b), np.nan))
    if o.local_slope:   # again, each word carried along the direction of the lines near it
        lines = _chain(b, words, o, _slope_field(b, lines, typical))
    lines, pieces = _pieces(b, lines, o)
    return lines, sorted([int(i) for i in np.flatnonzero(is_mark)] + pieces), angle


def _pieces(b, lines, o):
    """(lines, pieces): one-word chains that are pieces of a longer line -> marks for the flood.

    A comma, a descender or a letter that CRAFT boxed apart from its word is left alone when its
    word took the link past it (or its overlap was too small). A box no wider than the band and
    at most 1.5 band heights tall is a piece of the nearest line (its band, `_band_at`) whose
    extent it lies in (one band height of slack at either end) when it overlaps that band by
    join_overlap of the smaller height, or overlaps one of its words, or its centre is within
    PIECE_REACH band heights of it. A whole word stays a line of its own."""
    long = [ln for ln in lines if len(ln) > 1]
    keep, pieces = [], []
    for ln in lines:
        i = ln[0]
        u, v, hi = 0.5 * (b[i, 0] + b[i, 1]), 0.5 * (b[i, 2] + b[i, 3]), b[i, 3] - b[i, 2]
        best = None
        for other in long if len(ln) == 1 else ():
            bo = b[other]
            top, bottom = _band_at(bo, u)
            hb = bottom - top
            if not bo[:, 0].min() - hb <= u <= bo[:, 1].max() + hb:
                continue
            dist = max(top - v, v - bottom, 0.0) / max(hb, 1e-6)
            if best is None or dist < best[0]:
                best = (dist, top, bottom, bo)
        if best is not None:
            dist, top, bottom, bo = best
            overlap = (min(bottom, b[i, 3]) - max(top, b[i, 2])) / max(min(bottom - top, hi), 1e-6)
            touches = ((np.minimum(bo[:, 1], b[i, 1]) > np.maximum(bo[:, 0], b[i, 0])) &
                       (np.minimum(bo[:, 3], b[i, 3]) > np.maximum(bo[:, 2], b[i, 2]))).any()
            small = b[i, 1] - b[i, 0] <= bottom - top and hi <= 1.5 * (bottom - top)
            if small and (overlap >= o.join_overlap or (touches and overlap > 0) or dist <= PIECE_REACH):
                pieces.append(int(i))
                continue
        keep.append(ln)
    return keep, pieces


def _chain(b, words, o, prior):
    """Mutual-best chaining of `words` (indices into b (N, 4)); prior: per-word slope (nan: none),
    used until the word's chain has a slope of its own. Two rounds: words less than join_gap
    heights apart, then chain ends up to far_gap apart that overlap by far_overlap (some writers
    leave three or four heights between words; a far link needs a clear row to itself)."""
    nxt = {int(i): -1 for i in words}
    prv = dict(nxt)
    slope = prior.copy()
    ext = b.copy()   # a word's extent grown to its chain's band: an end word that is a comma or a capital
    far = False
    while True:      # join chain tails to chain heads, mutual best matches, until nothing joins
        tails = np.array([i for i in words if nxt[i] == -1], int)
        heads = np.array([i for i in words if prv[i] == -1], int)
        links = _mutual_links(_link_costs(ext, tails, heads, o, slope, far, b)) if len(tails) and len(heads) else []
        links = [(int(tails[i]), int(heads[j])) for i, j in links]
        made = 0
        for t, hd in links:
            k = hd   # no cycles: hd's chain must not end in t
            while nxt[k] != -1:
                k = nxt[k]
            if k != t:
                nxt[t], prv[hd] = hd, t
                made += 1
        if not made:
            if far or o.far_gap <= o.join_gap:
                break
            far = True
            continue
        for chain in _chains(words, prv, nxt):
            if len(chain) > 1:
                slope[chain] = _slope(b[chain])
                ext[chain] = _band(b[chain])
    return _chains(words, prv, nxt)


def _band(b):
    """Boxes (K, 4) [u0, u1, v0, v1] of one chain -> each box grown to the chain's band at its place
    (its centre line, least squares, +- half the median height): a line's first or last box is
    often a capital, a comma or a single letter whose own extent says little about the line's."""
    top, bottom = _band_at(b, 0.5 * (b[:, 0] + b[:, 1]))
    out = b.copy()
    out[:, 2] = np.minimum(b[:, 2], top)
    out[:, 3] = np.maximum(b[:, 3], bottom)
    return out


def _band_at(b, u):
    """The band (top, bottom) of the chain of boxes b (K, 4) at positions u along the line."""
    cu, cv = 0.5 * (b[:, 0] + b[:, 1]), 0.5 * (b[:, 2] + b[:, 3])
    w = b[:, 1] - b[:, 0] + 1e-6
    k = _slope(b)
    mid = np.average(cv, weights=w) + (0.0 if np.isnan(k) else k) * (u - np.average(cu, weights=w))
    half = 0.5 * float(np.median(b[:, 3] - b[:, 2]))
    return mid - half, mid + half


def _slope_field(b, lines, typical):
    """Per box, the slope of the nearest long chain (>= 3 words, spanning >= 4 typical heights):
    on a photographed page the lines' direction changes across the page (perspective), so the
    global de-skew leaves the lower lines sloped; a word takes the slope of the line it is closest
    to, measured across that line at the word's position. nan where there is no long chain."""
    cu, cv = 0.5 * (b[:, 0] + b[:, 1]), 0.5 * (b[:, 2] + b[:, 3])
    fits = []
    for ln in lines:
        if len(ln) >= 3 and np.ptp(cu[ln]) >= 4 * typical:
            k, c = np.polyfit(cu[ln], cv[ln], 1)
            fits.append((float(np.clip(k, -0.2, 0.2)), float(c), cu[ln].min(), cu[ln].max()))
    if not fits:
        return np.full(len(b), np.nan)
    k, c, lo, hi = (np.array(x) for x in zip(*fits))
    across = np.abs(cv[:, None] - (k[None] * cu[:, None] + c[None]))
    along = np.maximum(np.maximum(lo[None] - cu[:, None], cu[:, None] - hi[None]), 0)
    return k[np.argmin(across + 0.25 * along, 1)]


def _nested(b):
    """(N,) bool: boxes [u0, u1, v0, v1] lying mostly (> 60% of their area) inside a larger box
    (CRAFT sometimes gives a word and a piece of it); they are left to the flood, like marks."""
    if len(b) < 2:
        return np.zeros(len(b), bool)
    area = (b[:, 1] - b[:, 0]) * (b[:, 3] - b[:, 2])
    iw = np.minimum.outer(b[:, 1], b[:, 1]) - np.maximum.outer(b[:, 0], b[:, 0])
    ih = np.minimum.outer(b[:, 3], b[:, 3]) - np.maximum.outer(b[:, 2], b[:, 2])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)              # [i, j] = [j, i]
    inside = (inter > 0.6 * area[None, :]) & (area[:, None] > area[None, :])   # j inside larger i
    return inside.any(0)


def _chains(words, prv, nxt):
    out = []
    for i in words:
        if prv[i] == -1:
            chain = [int(i)]
            while nxt[chain[-1]] != -1:
                chain.append(nxt[chain[-1]])
            out.append(chain)
    return out


def _slope(b):
    """Least-squares slope of the centres of boxes (K, 4) [u0, u1, v0, v1], each weighted by its
    width (a comma, a lone 'a' or a descender's piece sits low and says little about the line's
    direction); nan for one box; |slope| <= 0.2."""
    cu, cv = 0.5 * (b[:, 0] + b[:, 1]), 0.5 * (b[:, 2] + b[:, 3])
    if len(b) < 2 or np.ptp(cu) < 1e-6:
        return np.nan
    w = np.sqrt(np.maximum(b[:, 1] - b[:, 0], 1e-6))     # polyfit weighs the residuals, not their squares
    return float(np.clip(np.polyfit(cu, cv, 1, w=w)[0], -0.2, 0.2))


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
    b = _upright(rotate(q, -angle, center), o.straighten_deg)
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
            pb = _upright(rotate(pieces, -angle, center), o.straighten_deg)
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
