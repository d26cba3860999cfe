"""Text lines from CRAFT's output: word boxes -> line quads, and the detection score of a line.

    find_lines(det, image_size, LineOptions()) -> (quads (M, 4, 2), polygons [M x (K, 2)])
    group_lines(word_boxes, LineOptions(), image_size) -> quads (M, 4, 2)
    region_scores(score_text, polygons, scale, low_text) -> [M floats]

With a LinkRefiner the refined link map already joins the words of a line, so CRAFT's boxes are
lines. Without it, CRAFT gives word boxes, which are merged into lines by EasyOCR's `group_text_box`
(`detector_np.group`, an exact port). `LineOptions.method` picks how:

  "lines"        (default) `detector_np.linefind`: words chained by mutual best matches along the
                 text direction, each line grown over the region map to cover its ink.
  "easyocr"      EasyOCR's `Reader.detect` exactly: boxes truncated to int32, `group_text_box`,
                 lines whose axis-aligned extent is <= min_size dropped.
  "handwriting"  the same grouping plus three steps for handwriting and skewed pages:
                 the boxes are de-rotated by the page skew (`layout.skew_angle`) and the merged
                 lines rotated back, so lines stay rotated quads that the crop's perspective warp
                 makes upright; word boxes tilted by < straighten_deg count as horizontal (CRAFT's
                 min-area boxes around slanted handwritten words are often tilted by 10-20 degrees,
                 and `group_text_box` only merges boxes with slope < slope_ths, about 6 degrees);
                 and pieces of one row that EasyOCR's height rule (|h - mean h| < height_ths *
                 mean h) kept apart, which splits off words with long descenders, are merged.

References: EasyOCR `easyocr.py::Reader.detect` (get_textbox -> group_text_box -> min_size),
CRAFT-pytorch `test.py` (the refiner replaces the link map).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ocr_base.geometry import rotate, side_lengths

from .group import group_text_box
from .layout import skew_angle
from .linefind import text_lines

METHODS = ("lines", "handwriting", "easyocr")


@dataclass(frozen=True)
class LineOptions:
    """How word boxes become lines (EasyOCR's `group_text_box` arguments and our additions).

    slope_ths .. add_margin: EasyOCR's, with its defaults. min_size: lines whose longer side is <= this
    many pixels are dropped. deskew_min_deg: de-rotate before grouping only when the page is skewed by
    at least this much (below it the boxes are grouped in page coordinates, as in EasyOCR).
    straighten_deg: word boxes tilted less than this count as horizontal. row_overlap: line boxes that
    overlap vertically by more than this fraction of the smaller height, and are less than
    width_ths * height apart, share a row and are merged.
    join_gap .. ink_score: method "lines" (`detector_np.linefind`): words join when less than
    join_gap heights apart and overlapping vertically by join_overlap of the smaller height (then,
    in a second round, chain ends up to far_gap heights apart overlapping by far_overlap); boxes
    smaller than mark_size times the typical height are marks (dots, commas), boxes taller than
    split_height typical heights (two touching lines joined) are split into their characters;
    local_slope: chain twice, the second time along the direction of the nearest long line; a line's seed is its
    words' pixels with region score > seed_score, and it grows over pixels with score > ink_score
    no farther than band heights from its centre line.
    """
    method: str = "lines"
    slope_ths: float = 0.1
    ycenter_ths: float = 0.5
    height_ths: float = 0.5
    width_ths: float = 0.5
    add_margin: float = 0.1
    min_size: int = 20
    deskew_min_deg: float = 0.5
    straighten_deg: float = 25.0
    row_overlap: float = 0.6
    join_gap: float = 2.5
    far_gap: float = 6.0
    far_overlap: float = 0.7
    join_overlap: float = 0.5
    mark_size: float = 0.45
    split_height: float = 1.5
    local_slope: bool = True
    band: float = 1.0
    seed_score: float = 0.4
    ink_score: float = 0.1

    def __post_init__(self):
        if not isinstance(self.local_slope, bool):
            raise ValueError(f"LineOptions.local_slope must be True or False; got {self.local_slope!r}")
        if self.method not in METHODS:
            raise ValueError(f"LineOptions.method must be one of {', '.join(METHODS)}; got {self.method!r}")
        for name in ("slope_ths", "ycenter_ths", "height_ths", "width_ths", "add_margin", "min_size",
                     "deskew_min_deg", "straighten_deg", "row_overlap", "join_gap", "far_gap", "far_overlap", "join_overlap", "mark_size", "split_height", "band",
                     "seed_score", "ink_score"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ValueError(f"LineOptions.{name} must be a finite number >= 0; got {v!r}")


def find_lines(det, image_size, options: LineOptions = LineOptions()) -> tuple[np.ndarray, list[np.ndarray]]:
    """A `detector_np.Detection` -> (line quads (M, 4, 2) float32, line polygons [M x (K, 2)] float32).

    A detection made with the LinkRefiner already has line boxes (and polygons); otherwise the word
    boxes are grouped by `group_lines` and each line's polygon is its quad.
    """
    if det.refined:
        boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4, 2)
        return boxes, [np.asarray(p if p is not None else b, np.float32) for p, b in zip(det.polys, boxes)]
    if options.method == "lines":
        return text_lines(det, image_size, options)
    boxes = group_lines(det.boxes, options, image_size=image_size)
    return boxes, list(boxes)


def group_lines(boxes, options: LineOptions = LineOptions(), image_size=None) -> np.ndarray:
    """Word boxes (N, 4, 2) -> line quads (M, 4, 2) float32 in page coordinates (see the module docstring).

    From the boxes alone, method "lines" (which needs CRAFT's maps) groups as "handwriting" does.

    image_size: (width, height) of the page; its centre is the pivot of the de-rotation.
    """
    o = options
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4, 2), np.float32)
    if boxes.ndim != 3 or boxes.shape[1:] != (4, 2):
        raise ValueError(f"group_lines expects (N, 4, 2) boxes, got shape {boxes.shape}")
    if o.method == "easyocr":
        return _easyocr_lines(boxes, o)
    angle = skew_angle(boxes)
    center = (np.asarray(image_size, np.float64) / 2) if image_size is not None else boxes.reshape(-1, 2).mean(0)
    deskew = abs(np.rad2deg(angle)) >= o.deskew_min_deg
    b = rotate(boxes, -angle, center) if deskew else boxes
    if o.straighten_deg > 0:
        b = _straighten(b, o.straighten_deg)
    polys = [q.astype(np.int32).reshape(-1) for q in b]  # EasyOCR: np.array(box).astype(np.int32)
    horizontal, free = group_text_box(polys, slope_ths=o.slope_ths, ycenter_ths=o.ycenter_ths,
                                      height_ths=o.height_ths, width_ths=o.width_ths, add_margin=o.add_margin,
                                      sort_output=False)
    horizontal = _merge_rows([list(map(float, h)) for h in horizontal], o.width_ths, o.row_overlap)
    quads = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) for x0, x1, y0, y1 in horizontal]
    quads += [np.asarray(f, np.float64).reshape(4, 2) for f in free]
    out = [rotate(q, angle, center) if deskew else q for q in quads if side_lengths(q).max() > o.min_size]
    return np.asarray(out, np.float32).reshape(-1, 4, 2)


def _easyocr_lines(boxes, o: LineOptions) -> np.ndarray:
    """EasyOCR's Reader.detect: int32 boxes, group_text_box (sorted), min_size on the axis-aligned extent.

    Horizontal lines come first (as TL, TR, BR, BL quads), then the free boxes as they are.
    """
    polys = [b.astype(np.int32).reshape(-1) for b in boxes]
    horizontal, free = group_text_box(polys, o.slope_ths, o.ycenter_ths, o.height_ths, o.width_ths,
                                      o.add_margin, True)
    if o.min_size:
        horizontal = [b for b in horizontal if max(b[1] - b[0], b[3] - b[2]) > o.min_size]
        free = [q for q in free if np.ptp(np.asarray(q, np.float64), axis=0).max() > o.min_size]
    quads = [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, x1, y0, y1 in horizontal]
    quads += [[[float(x), float(y)] for x, y in q] for q in free]
    return np.array(quads, dtype=np.float32).reshape(-1, 4, 2)


def _straighten(boxes, max_deg):
    """Boxes (N, 4, 2) tilted less than max_deg -> upright boxes with the same centre, width and height."""
    out = boxes.copy()
    sides = side_lengths(boxes)                                   # (N, 4): top, right, bottom, left
    for k, q in enumerate(boxes):
        top = q[1] - q[0]
        if abs(np.rad2deg(np.arctan2(top[1], top[0]))) < max_deg:
            w, h = 0.5 * (sides[k, 0] + sides[k, 2]), 0.5 * (sides[k, 1] + sides[k, 3])
            out[k] = q.mean(0) + np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return out


def _merge_rows(boxes, width_ths, row_overlap):
    """Merge [x0, x1, y0, y1] boxes that share a row and nearly touch (see the module docstring).

    Boxes i, j join when h = min(h_i, h_j) > 0, their vertical overlap is > row_overlap * h and their
    horizontal gap is < width_ths * h; each round merges the connected components of that relation
    (in the order of their first box) until no pair joins. Pairs are never all formed at once: with
    the boxes sorted by x0, box i can only join the boxes after it whose x0 is below
    x1_i + width_ths * h_i; sorted by y0, only those whose y0 is below y1_i. The sort with fewer
    candidates is used, and its candidates are checked in blocks of _PAIR_BLOCK pairs, so memory is
    linear in the number of boxes and time O(N log N + candidate pairs).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    while len(b) > 1:
        root = _row_components(b, width_ths, row_overlap)
        keys, comp = np.unique(root, return_inverse=True)     # components by their first box
        if len(keys) == len(b):
            break
        out = np.empty((len(keys), 4))
        out[:, [0, 2]], out[:, [1, 3]] = np.inf, -np.inf
        for k, fold in ((0, np.minimum), (1, np.maximum), (2, np.minimum), (3, np.maximum)):
            fold.at(out[:, k], comp, b[:, k])
        b = out
    return b.tolist()


_PAIR_BLOCK = 1 << 20


def _row_components(b, width_ths, row_overlap) -> np.ndarray:
    """(N,) the smallest index in each box's component of the join relation of `_merge_rows`."""
    x0, x1, y0, y1 = (b[:, k] for k in range(4))
    h = y1 - y0
    reach_x = x1 + width_ths * h
    reach_x = reach_x + 1e-9 * (1 + np.abs(reach_x))                  # a margin for rounding
    sweeps = []
    for start, reach in ((x0, reach_x), (y0, y1)):                    # y0_j < y1_i is exact: overlap > 0
        order = np.argsort(start, kind="stable")
        end = np.searchsorted(start[order], np.where(h > 0, reach, -np.inf)[order], side="left")
        count = np.maximum(end - np.arange(1, len(b) + 1), 0)          # candidates after each sorted box
        sweeps.append((int(count.sum()), order, count))
    _, order, count = min(sweeps, key=lambda t: t[0])
    total = np.cumsum(count)
    parent = np.arange(len(b))
    i = 0
    while i < len(b):
        k = max(i + 1, int(np.searchsorted(total, (total[i - 1] if i else 0) + _PAIR_BLOCK, side="right")))
        c = count[i:k]
        if c.sum():
            pi = np.repeat(np.arange(i, k), c)
            pj = pi + 1 + np.arange(len(pi)) - np.repeat(np.cumsum(c) - c, c)
            p, q = order[pi], order[pj]
            hh = np.minimum(h[p], h[q])
            join = ((hh > 0) & (np.minimum(y1[p], y1[q]) - np.maximum(y0[p], y0[q]) > row_overlap * hh)
                    & (np.maximum(x0[p], x0[q]) - np.minimum(x1[p], x1[q]) < width_ths * hh))
            _union(parent, p[join], q[join])
        i = k
    return _roots(parent)


def _roots(parent):
    while True:  # pointer jumping; parents always point to smaller indices, so it ends
        up = parent[parent]
        if np.array_equal(up, parent):
            return parent
        parent = up


def _union(parent, p, q) -> None:
    """Union the pairs (p, q) in place; each component's root is its smallest index."""
    while len(p):
        parent[:] = _roots(parent)
        rp, rq = parent[p], parent[q]
        apart = rp != rq
        p, q, rp, rq = p[apart], q[apart], rp[apart], rq[apart]
        np.minimum.at(parent, np.maximum(rp, rq), np.minimum(rp, rq))


def region_scores(score_text, polygons, scale, low_text=0.4) -> list[float]:
    """Mean CRAFT region score over each polygon's text pixels (score > low_text); 0 if none.

    page coords * scale = map coords. Averaging over the whole box would mostly measure the white
    space between letters; over text pixels it says how strongly the characters themselves were detected.
    """
    h, w = score_text.shape
    out = []
    for p in polygons:
        m = np.asarray(p, np.float64) * scale
        x0, y0 = np.clip(np.floor(m.min(0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(m.max(0)).astype(int) + 1, 0, [w, h])
        if x1 <= x0 or y1 <= y0:
            out.append(0.0)
            continue
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon([tuple(xy) for xy in (m - [x0, y0])], fill=1, outline=1)
        v = score_text[y0:y1, x0:x1][np.asarray(mask, bool)]
        v = v[v > low_text]
        out.append(float(v.mean()) if len(v) else 0.0)
    return out
