"""Word boxes chained into handwritten lines (step 2 of `detector_np.linefind`).

    chain_words(boxes, options, center) -> (lines [M x word indices], marks [word indices], angle)

Word b can follow word a when it starts to a's right, less than join_gap heights
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
(writers who leave three or four heights between words), never across a column gutter (the
head lines up with the next rows' words and none of their ink reaches into the white before
it). A second pass starts every word on the slope of the nearest long line (photographed pages:
perspective turns the lines' direction across the page). A chain with half its boxes on a longer chain's band, beside it,
joins it (letters boxed apart that chained among themselves); one-box chains that are pieces
of a longer line (a comma, a descender: small, inside its extent, on its band) become marks.

Coordinates are page pixels, de-skewed about `center`; boxes are [u0, u1, v0, v1] upright extents.
"""
from __future__ import annotations

import numpy as np

from ocr_base.geometry import rotate, side_lengths

from .layout import skew_angle

PIECE_REACH = 0.35   # a lone small box this many band heights from a line's band is a piece of it


def upright_boxes(q, max_deg):
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
    if far:   # a gap wider than join_gap must not be a column gutter
        wide = ok & (gap >= o.join_gap * np.maximum(ha, hb))
        for i, j in zip(*np.nonzero(wide)):
            ok[i, j] = not _gutter(raw if raw is not None else b, B[i, j], hmean[i, j])
    dv = np.abs((B[..., 2] + B[..., 3]) - (A[..., 2] + A[..., 3])) / 2
    cost = (np.maximum(gap, 0) + 0.5 * np.maximum(-gap, 0) + dv) / hmean + 2 * (1 - np.minimum(overlap, 1))
    return np.where(ok, cost, np.inf)


def _gutter(b, head, h):
    """Does a column gutter run just before `head` (a box [u0, u1, v0, v1])? Looked for on the next
    rows up and down (boxes whose centres are 0.6 to 1.8 line heights h away; a heading further
    off may span the columns): a column's words start where `head` starts (left edges within h/2)
    and no ink there reaches into the white before it. A writer's wide word space has neither:
    the rows around it have their words elsewhere."""
    u = head[0] - 0.5 * h
    dv = np.abs(0.5 * (b[:, 2] + b[:, 3]) - 0.5 * (head[2] + head[3])) / h
    near = (dv > 0.6) & (dv < 1.8)
    crossed = np.any(near & (b[:, 0] <= u) & (b[:, 1] >= u))
    aligned = np.any(near & (np.abs(b[:, 0] - head[0]) < 0.5 * h))
    return bool(aligned and not crossed)


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
    b = upright_boxes(rotate(q, -angle, center), o.straighten_deg)
    h, w = b[:, 3] - b[:, 2], b[:, 1] - b[:, 0]
    typical = float(np.median(h)) if len(b) else 0.0
    # marks: dots and commas, and pieces inside a bigger box; the flood gives them to their line
    is_mark = (np.maximum(w, h) < o.mark_size * typical) | _nested(b)
    words = np.flatnonzero(~is_mark)
    lines = _chain(b, words, o, np.full(len(b), np.nan))
    if o.local_slope:   # again, each word carried along the direction of the lines near it
        lines = _chain(b, words, o, _slope_field(b, lines, typical))
    lines, pieces = _pieces(b, _interleaved(b, lines, o), o)
    return lines, sorted([int(i) for i in np.flatnonzero(is_mark)] + pieces), angle


def _interleaved(b, lines, o):
    """Chains that share a row -> one. Letters of a word that CRAFT boxed apart can chain among
    themselves beside the line's own chain (their short chain's slope is then set by a descender):
    a chain whose extent along the line overlaps a longer chain's, with at least half of its
    boxes on that chain's band (overlapping it by join_overlap of their height), joins it."""
    lines = sorted((list(ln) for ln in lines), key=len, reverse=True)
    k = 1
    while k < len(lines):
        small = b[lines[k]]
        for big in lines[:k]:
            bb = b[big]
            if len(big) < 2 or min(bb[:, 1].max(), small[:, 1].max()) <= max(bb[:, 0].min(), small[:, 0].min()):
                continue
            top, bottom = _band_at(bb, 0.5 * (small[:, 0] + small[:, 1]))
            on = np.minimum(bottom, small[:, 3]) - np.maximum(top, small[:, 2]) >= o.join_overlap * (small[:, 3] - small[:, 2])
            if on.mean() >= 0.5:
                big += lines[k]
                big.sort(key=lambda i: b[i, 0] + b[i, 1])
                del lines[k]
                break
        else:
            k += 1
    return sorted(lines, key=lambda ln: ln[0])   # the order of _chains: by the first word's index


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
