"""Word boxes -> text lines, as EasyOCR groups CRAFT's word boxes before recognition.

`group_text_box` reproduces `easyocr.utils.group_text_box` (EasyOCR 1.7.2) number for number:
near-horizontal boxes are merged into lines, tilted ones are kept as "free" quadrilaterals
grown by a margin. Defaults are those `easyocr.Reader.detect/readtext` pass (the function's own
defaults in easyocr/utils.py are width_ths=1.0, add_margin=0.05).

Steps (boxes given as 8 numbers x0 y0 x1 y1 x2 y2 x3 y3 = TL TR BR BL):
1. A box is horizontal when its top and bottom edges both have |slope| < slope_ths (run
   measured as max(10, dx)); it becomes [xmin, xmax, ymin, ymax, ycenter, height].
   Otherwise it is free: each corner moves out by margin = int(1.44 * add_margin * min(w, h))
   along the angle of its diagonal.
2. Horizontal boxes, sorted by y centre, are cut into lines: a box joins the current line when
   its y centre is within ycenter_ths * (mean line height) of the line's mean y centre.
3. Within a line, sorted by xmin, consecutive boxes are merged while their height is within
   height_ths * mean height and the gap to the previous box is < width_ths * box height (no
   abs(): overlapping boxes always pass, EasyOCR#504).
4. Every merged run becomes its bounding box grown by int(add_margin * min(width, height)).
"""
import numpy as np


def _classify(poly, slope_ths, add_margin):
    """One box (8 numbers) -> ("h", [xmin, xmax, ymin, ymax, yc, h]) or ("free", 4 corners)."""
    slope_up = (poly[3] - poly[1]) / np.maximum(10, (poly[2] - poly[0]))
    slope_down = (poly[5] - poly[7]) / np.maximum(10, (poly[4] - poly[6]))
    if max(abs(slope_up), abs(slope_down)) < slope_ths:
        xs = [poly[0], poly[2], poly[4], poly[6]]
        ys = [poly[1], poly[3], poly[5], poly[7]]
        x_min, x_max, y_min, y_max = min(xs), max(xs), min(ys), max(ys)
        return "h", [x_min, x_max, y_min, y_max, 0.5 * (y_min + y_max), y_max - y_min]
    height = np.linalg.norm([poly[6] - poly[0], poly[7] - poly[1]])
    width = np.linalg.norm([poly[2] - poly[0], poly[3] - poly[1]])
    margin = int(1.44 * add_margin * min(width, height))
    # each corner moves outwards along its diagonal (TL-BR for corners 0/2, TR-BL for 1/3)
    theta13 = abs(np.arctan((poly[1] - poly[5]) / np.maximum(10, (poly[0] - poly[4]))))
    theta24 = abs(np.arctan((poly[3] - poly[7]) / np.maximum(10, (poly[2] - poly[6]))))
    c13, s13 = np.cos(theta13) * margin, np.sin(theta13) * margin
    c24, s24 = np.cos(theta24) * margin, np.sin(theta24) * margin
    return "free", [[poly[0] - c13, poly[1] - s13], [poly[2] + c24, poly[3] - s24],
                    [poly[4] + c13, poly[5] + s13], [poly[6] - c24, poly[7] + s24]]


def _split_lines(horizontal, ycenter_ths):
    """Boxes (in order) -> lists of boxes whose y centres stay close to the line's mean."""
    lines, line = [], []
    for box in horizontal:
        if line and abs(np.mean(ycenters) - box[4]) < ycenter_ths * np.mean(heights):
            heights.append(box[5])
            ycenters.append(box[4])
            line.append(box)
        else:
            if line:
                lines.append(line)
            heights, ycenters, line = [box[5]], [box[4]], [box]
    lines.append(line)  # EasyOCR appends the last (possibly empty) line unconditionally
    return lines


def _merge_runs(line, height_ths, width_ths):
    """One line's boxes (sorted by xmin) -> runs of boxes close enough to merge."""
    runs, run = [], []
    for box in line:
        if run and (abs(np.mean(heights) - box[5]) < height_ths * np.mean(heights)
                    and (box[0] - x_max) < width_ths * (box[3] - box[2])):
            heights.append(box[5])
            run.append(box)
        else:
            if run:
                runs.append(run)
            heights, run = [box[5]], [box]
        x_max = box[1]
    if run:
        runs.append(run)
    return runs


def _grow(x_min, x_max, y_min, y_max, add_margin):
    margin = int(add_margin * min(x_max - x_min, y_max - y_min))
    return [x_min - margin, x_max + margin, y_min - margin, y_max + margin]


def group_text_box(polys, slope_ths=0.1, ycenter_ths=0.5, height_ths=0.5, width_ths=0.5,
                   add_margin=0.1, sort_output=True):
    """== easyocr.utils.group_text_box -> (horizontal_list, free_list).

    polys: boxes as 8 numbers each (x0, y0, ..., x3, y3: TL, TR, BR, BL) or (4, 2) arrays;
    EasyOCR passes int32 boxes (its detector truncates), see `detector_np.lines`.
    horizontal_list: [x_min, x_max, y_min, y_max] per merged line box;
    free_list: [[x, y] * 4] per tilted box, grown by the margin.
    """
    horizontal, free = [], []
    for poly in polys:
        poly = np.asarray(poly).reshape(-1)
        if poly.shape != (8,):
            raise ValueError(f"group_text_box: each box needs 8 coordinates, got {poly.shape[0]}")
        kind, item = _classify(poly, slope_ths, add_margin)
        (horizontal if kind == "h" else free).append(item)
    if sort_output:
        horizontal = sorted(horizontal, key=lambda b: b[4])

    merged = []
    for line in _split_lines(horizontal, ycenter_ths):
        if len(line) == 1:  # EasyOCR's margin here uses the stored height
            b = line[0]
            margin = int(add_margin * min(b[1] - b[0], b[5]))
            merged.append([b[0] - margin, b[1] + margin, b[2] - margin, b[3] + margin])
            continue
        for run in _merge_runs(sorted(line, key=lambda b: b[0]), height_ths, width_ths):
            if len(run) == 1:
                b = run[0]
                merged.append(_grow(b[0], b[1], b[2], b[3], add_margin))
            else:
                merged.append(_grow(min(b[0] for b in run), max(b[1] for b in run),
                                    min(b[2] for b in run), max(b[3] for b in run), add_margin))
    return merged, free

