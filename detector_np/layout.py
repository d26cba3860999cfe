"""Reading order of text-line regions on a page.

    reading_order(quads) -> list[list[int]]   rows in reading order, each row's line indices left to right

Rules: lines top to bottom; lines that share a row, left to right; where a
clear vertical gutter separates two columns, the whole left column before the
whole right column. Robust to slight skew: the page is first de-rotated by the
dominant text direction (median angle of the lines' top edges).

Algorithm (a recursive X-Y cut adapted to text lines):
  1. De-skew; describe each line by its x-extent and its "core" band in y
     (centre +- 0.4 * line height, so ascenders/descenders and residual skew of
     single lines do not close the gaps between rows).
  2. A region is split at the widest vertical gutter (an x-gap of at least
     `gutter` * median line height) that has at least two rows of text on each
     side: left part first. Otherwise it is cut into horizontal bands at every
     y-gap; consecutive bands that share a gutter are merged again (the rows of
     a two-column block) and each merged band is ordered recursively.
  3. A band that cannot be split further is grouped into rows by vertical
     overlap of the line cores, rows top to bottom, lines left to right.

A single long title spanning both columns is its own band, so "title, then
left column, then right column" comes out right. Forms with two aligned columns
of key/value pairs separated by a wide gap are read as two columns: geometry
alone cannot tell them from a two-column page; pass a larger `gutter` to read
such forms row by row.

References: Nagy & Seth, "Hierarchical representation of optically scanned
documents" (1984), the X-Y cut; EasyOCR `utils.group_text_box` (y-centre rows).
"""
from __future__ import annotations

import numpy as np

GUTTER = 1.5        # min column gap, in median line heights
CORE = 0.4          # half-height of a line's core band, in line heights
MIN_COLUMN_ROWS = 2  # a gutter must have this many rows of text on each side


def dominant_angle(quads) -> float:
    """Median direction of the lines' top and bottom edges (radians, y down), length-weighted."""
    q = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    if len(q) == 0:
        return 0.0
    top, bot = q[:, 1] - q[:, 0], q[:, 2] - q[:, 3]
    vec = np.concatenate([top, bot])
    ang = np.arctan2(vec[:, 1], vec[:, 0])
    lengths = np.hypot(vec[:, 0], vec[:, 1])
    ok = lengths > 0
    if not ok.any():
        return 0.0
    ang, lengths = ang[ok], lengths[ok]
    order = np.argsort(ang)  # weighted median
    cum = np.cumsum(lengths[order])
    return float(ang[order][np.searchsorted(cum, cum[-1] / 2)])


def skew_angle(quads) -> float:
    """Page skew (radians, y down) from box edges, refined by the centres of boxes sharing a row.

    CRAFT's min-area boxes around short words are often exactly axis-aligned on a
    page skewed by 1-3 degrees (the score maps are at half resolution), so the edge
    direction alone misses small skews. The centres of the words along a row do
    not: after de-rotating by the edge estimate, each row of >= 2 boxes gets a
    least-squares slope of centre y over x, and the length-weighted median of the
    row slopes corrects the estimate.
    """
    q = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    a = dominant_angle(q)
    if len(q) < 2:
        return a
    c, s = np.cos(-a), np.sin(-a)
    r = q @ np.array([[c, s], [-s, c]])
    cx, cy = r[:, :, 0].mean(1), r[:, :, 1].mean(1)
    h = 0.5 * (np.hypot(*(q[:, 3] - q[:, 0]).T) + np.hypot(*(q[:, 2] - q[:, 1]).T))
    g = dict(cy=cy, h=np.maximum(h, 1e-6), x0=r[:, :, 0].min(1))
    slopes, weights = [], []
    for row in _rows(np.arange(len(q)), g):
        if len(row) >= 2 and np.ptp(cx[row]) > 0:
            x, y = cx[row], cy[row]
            slopes.append(np.polyfit(x, y, 1)[0])
            weights.append(np.ptp(x))
    if not slopes:
        return a
    order = np.argsort(slopes)
    cum = np.cumsum(np.asarray(weights)[order])
    return a + float(np.arctan(np.asarray(slopes)[order][np.searchsorted(cum, cum[-1] / 2)]))


def _line_geometry(quads):
    """De-skewed (x0, x1, cy, h) per line: x-extent, centre row and height along the text normal."""
    q = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    a = dominant_angle(q)
    c, s = np.cos(-a), np.sin(-a)
    r = q @ np.array([[c, s], [-s, c]])  # rotate every point by -a (row vectors)
    x0, x1 = r[:, :, 0].min(1), r[:, :, 0].max(1)
    cy = r[:, :, 1].mean(1)
    h = 0.5 * (np.hypot(*(q[:, 3] - q[:, 0]).T) + np.hypot(*(q[:, 2] - q[:, 1]).T))
    return x0, x1, cy, np.maximum(h, 1e-6)


def reading_order(quads, gutter: float = GUTTER) -> list[list[int]]:
    """Rows of line indices in reading order (see module docstring). quads: (N, 4, 2) TL, TR, BR, BL."""
    q = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    if len(q) == 0:
        return []
    x0, x1, cy, h = _line_geometry(q)
    g = dict(x0=x0, x1=x1, y0=cy - CORE * h, y1=cy + CORE * h, cy=cy, h=h,
             gutter=gutter * float(np.median(h)))
    return _order(np.arange(len(q)), g, depth=0)


def _gaps(lo, hi, min_width):
    """Free intervals (a, b), b - a >= min_width, between the union of [lo, hi] intervals."""
    order = np.argsort(lo)
    out, reach = [], None
    for i in order:
        if reach is not None and lo[i] - reach >= min_width:
            out.append((reach, lo[i]))
        reach = hi[i] if reach is None else max(reach, hi[i])
    return out


def _n_rows(idx, g) -> int:
    return len(_rows(idx, g))


def _best_gutter(idx, g):
    """Widest x-gap with >= MIN_COLUMN_ROWS rows on both sides, or None."""
    best = None
    for a, b in _gaps(g["x0"][idx], g["x1"][idx], g["gutter"]):
        left, right = idx[g["x1"][idx] <= a], idx[g["x0"][idx] >= b]
        if min(_n_rows(left, g), _n_rows(right, g)) >= MIN_COLUMN_ROWS and (best is None or b - a > best[1] - best[0]):
            best = (a, b)
    return best


def _order(idx, g, depth) -> list[list[int]]:
    if len(idx) <= 1 or depth > 50:
        return _rows(idx, g)
    cut = _best_gutter(idx, g)
    if cut is not None:
        left, right = idx[g["x1"][idx] <= cut[0]], idx[g["x0"][idx] >= cut[1]]
        return _order(left, g, depth + 1) + _order(right, g, depth + 1)
    # horizontal bands at every y-gap of the line cores
    ys = _gaps(g["y0"][idx], g["y1"][idx], 0.0)
    if not ys:
        return _rows(idx, g)
    edges = [b for _, b in ys]
    band_of = np.searchsorted(edges, g["cy"][idx], side="right")
    bands = [idx[band_of == k] for k in range(len(edges) + 1)]
    bands = [b for b in bands if len(b)]
    # merge consecutive bands that share a gutter (the rows of a multi-column block)
    merged = [bands[0]]
    for b in bands[1:]:
        if _shares_gutter(merged[-1], b, g):
            merged[-1] = np.concatenate([merged[-1], b])
        else:
            merged.append(b)
    if len(merged) == 1 and len(merged[0]) == len(idx):  # nothing to split: no progress possible
        return _rows(idx, g)
    out = []
    for b in merged:
        out += _order(b, g, depth + 1)
    return out


def _shares_gutter(a, b, g) -> bool:
    """Do bands a and b belong to one multi-column block?

    True when their union leaves an x-gap >= gutter with text on both sides of it
    in at least one of them (so a band holding only the longer column's last
    lines still joins the block above it).
    """
    u = np.concatenate([a, b])
    for lo, hi in _gaps(g["x0"][u], g["x1"][u], g["gutter"]):
        for s in (a, b):
            if (g["x1"][s] <= lo).any() and (g["x0"][s] >= hi).any():
                return True
    return False


def _rows(idx, g) -> list[list[int]]:
    """Group lines into rows, top to bottom; lines within a row left to right.

    A line joins the current row when its centre is within half the row's mean
    height of the row's mean centre (EasyOCR's ycenter_ths = 0.5 rule), so a
    row never chains down the page.
    """
    idx = np.asarray(idx)
    rows: list[list[int]] = []
    for i in idx[np.argsort(g["cy"][idx], kind="stable")]:
        if rows:
            r = rows[-1]
            if abs(g["cy"][i] - g["cy"][r].mean()) < 0.5 * g["h"][r].mean():
                r.append(int(i))
                continue
        rows.append([int(i)])
    return [sorted(r, key=lambda i: g["x0"][i]) for r in rows]
