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
    join_gap heights apart and overlapping vertically by join_overlap of the smaller height; boxes
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
                     "deskew_min_deg", "straighten_deg", "row_overlap", "join_gap", "join_overlap", "mark_size", "split_height", "band",
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
    """Merge [x0, x1, y0, y1] boxes that share a row and nearly touch (see the module docstring)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    while len(b) > 1:
        x0, x1, y0, y1 = (b[:, k] for k in range(4))
        h = np.minimum.outer(y1 - y0, y1 - y0)
        overlap = np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0)
        gap = np.maximum.outer(x0, x0) - np.minimum.outer(x1, x1)
        join = (h > 0) & (overlap > row_overlap * h) & (gap < width_ths * h)
        np.fill_diagonal(join, False)
        if not join.any():
            break
        label = np.arange(len(b))  # connected components of `join` (label propagation)
        while True:
            new = np.minimum(label, np.where(join, label[None, :], len(b)).min(1))
            new = new[new]
            if np.array_equal(new, label):
                break
            label = new
        b = np.array([[b[label == k, 0].min(), b[label == k, 1].max(), b[label == k, 2].min(), b[label == k, 3].max()]
                      for k in np.unique(label)])
    return b.tolist()


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
