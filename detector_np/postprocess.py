"""CRAFT post-processing: region/affinity score maps -> word boxes and polygons.

This layer holds only CRAFT's own rules, a NumPy + Numba re-implementation of
`craft_utils.getDetBoxes_core`, `getPoly_core` and `adjustResultCoordinates` (clovaai/CRAFT-pytorch;
EasyOCR's copy adds `estimate_num_chars`). The OpenCV calls those functions make are the
OpenCV-exact primitives of `detector_np.cv_ops` (labelling, dilation, minAreaRect, boxPoints,
perspective warp, line drawing), so no OpenCV is needed. Thresholds compare strictly (`>`)
against the threshold cast to float32, as cv2.threshold(BINARY) does on float32 maps.

The box rule, written out readably in `detector_np.postprocess_ref` (and held equal to the fast
path by tests/test_postprocess_reference.py): threshold both maps, label the union 4-connected,
drop components under 10 pixels or whose region score never reaches text_threshold, remove the
link-only pixels, dilate by a square of side 1 + niter (niter = int(sqrt(size * min(w, h) /
(w * h)) * 2)), take the minimum-area rectangle of the pixels, replace a near-square one by the
axis-aligned bounds, and start its corners at the smallest x + y, clockwise.

All maps are (h, w) float32 at half the network input resolution; boxes are (4, 2) float32
corner lists (x, y) in map pixels, clockwise from the top-left corner.
References: Baek et al., "Character Region Awareness for Text Detection", CVPR 2019;
clovaai/CRAFT-pytorch craft_utils.py; JaidedAI/EasyOCR easyocr/craft_utils.py.
"""
import math

import numpy as np
from numba import njit

# The primitives are re-exported: notebooks and older code reach them through this module.
# Numba's cache stamps a kernel with its own file only: after editing cv_ops.py, delete
# detector_np/__pycache__/postprocess.*.nb[ic], or the kernels below keep the old primitives.
from .cv_ops import (_box_points, _dilate_binary, _label4, _line_hits, _min_area_rect,  # noqa: F401
                     _perspective_transform, _warp_label_mask, box_points, dilate_rect,
                     label_components, min_area_rect)

F32 = np.float32


# --------------------------------------------------------------------------------------------
# getDetBoxes_core

@njit(cache=True)
def _component_box(labels, k, text, link, x, y, w, h, size):
    """Box of component k: the reference's segmap, dilation, minAreaRect, diamond fix, ordering."""
    img_h, img_w = labels.shape
    niter = int(math.sqrt(size * min(w, h) / (w * h)) * 2)
    sx = max(x - niter, 0)
    sy = max(y - niter, 0)
    ex = min(x + w + niter + 1, img_w)
    ey = min(y + h + niter + 1, img_h)
    roi = np.zeros((ey - sy, ex - sx), np.uint8)
    for yy in range(y, y + h):
        for xx in range(x, x + w):
            # component pixels, minus those that are link-only
            if labels[yy, xx] == k and (text[yy, xx] or not link[yy, xx]):
                roi[yy - sy, xx - sx] = 1
    if niter > 0:
        roi = _dilate_binary(roi, 1 + niter)
    # The hull only needs each row's leftmost and rightmost pixel. `key` is the raster index,
    # i.e. the position the point has in the reference's np.where list.
    rh, rw = roi.shape
    px = np.empty(2 * rh, np.int64)
    py = np.empty(2 * rh, np.int64)
    key = np.empty(2 * rh, np.int64)
    m = 0
    l = img_w
    r = -1
    t = img_h
    b = -1
    for yy in range(rh):
        first = -1
        last = -1
        for xx in range(rw):
            if roi[yy, xx]:
                if first < 0:
                    first = xx
                last = xx
        if first < 0:
            continue
        gy = yy + sy
        for xx in (first, last):
            px[m] = xx + sx
            py[m] = gy
            key[m] = gy * img_w + xx + sx
            m += 1
        l = min(l, first + sx)
        r = max(r, last + sx)
        t = min(t, gy)
        b = max(b, gy)
    rect = _min_area_rect(px[:m], py[:m], key[:m])
    box = _box_points(rect)
    if m == 0:  # empty segmap (only possible when text_threshold < low_text): no diamond fix
        l = 0
        r = 0
        t = 0
        b = 0
    # align diamond-shape: near-square boxes become the axis-aligned bounding box
    e0 = box[0] - box[1]
    e1 = box[1] - box[2]
    bw = np.float32(math.sqrt(np.float32(e0[0] * e0[0] + e0[1] * e0[1])))
    bh = np.float32(math.sqrt(np.float32(e1[0] * e1[0] + e1[1] * e1[1])))
    ratio = max(bw, bh) / (min(bw, bh) + np.float32(1e-5))
    if abs(np.float32(1.0) - ratio) <= np.float32(0.1) and m > 0:
        box[0, 0] = l
        box[0, 1] = t
        box[1, 0] = r
        box[1, 1] = t
        box[2, 0] = r
        box[2, 1] = b
        box[3, 0] = l
        box[3, 1] = b
    # clockwise order starting from the corner with the smallest x + y (first on ties)
    start = 0
    best = box[0, 0] + box[0, 1]
    for i in range(1, 4):
        s = box[i, 0] + box[i, 1]
        if s < best:
            best = s
            start = i
    out = np.empty((4, 2), np.float32)
    for i in range(4):
        out[i] = box[(start + i) % 4]
    return out


@njit(cache=True)
def _count_chars(labels, k, textmap, linkmap, x, y, w, h, text_threshold):
    """EasyOCR's estimate_num_chars: 4-connected blobs of (text - link) > text_threshold in k."""
    sub = np.zeros((h, w), np.uint8)
    v255 = np.float32(255.0)
    for yy in range(y, y + h):
        for xx in range(x, x + w):
            if labels[yy, xx] == k:
                d = (textmap[yy, xx] - linkmap[yy, xx]) * v255 / v255
                if d > text_threshold:
                    sub[yy - y, xx - x] = 1
    n, _, _ = _label4(sub)
    return n - 1


@njit(cache=True)
def _det_boxes_core(textmap, linkmap, text_threshold, link_threshold, low_text, estimate_num_chars):
    img_h, img_w = textmap.shape
    text = textmap > low_text
    link = linkmap > link_threshold
    comb = (text | link).view(np.uint8)
    n, labels, stats = _label4(comb)
    # highest region score of every component, in one pass
    peak = np.full(n, -np.inf, np.float32)
    for yy in range(img_h):
        for xx in range(img_w):
            k = labels[yy, xx]
            if textmap[yy, xx] > peak[k]:
                peak[k] = textmap[yy, xx]
    boxes = np.empty((max(n - 1, 0), 4, 2), np.float32)
    mapper = np.empty(max(n - 1, 0), np.int64)
    nb = 0
    for k in range(1, n):
        x, y, w, h, size = stats[k, 0], stats[k, 1], stats[k, 2], stats[k, 3], stats[k, 4]
        if size < 10:
            continue
        if peak[k] < text_threshold:
            continue
        if estimate_num_chars:
            mapper[nb] = _count_chars(labels, k, textmap, linkmap, x, y, w, h, text_threshold)
        else:
            mapper[nb] = k
        boxes[nb] = _component_box(labels, k, text, link, x, y, w, h, size)
        nb += 1
    return boxes[:nb].copy(), labels, mapper[:nb].copy()


def _check_maps(textmap, linkmap):
    textmap = np.asarray(textmap)
    linkmap = np.asarray(linkmap)
    if textmap.ndim != 2 or textmap.shape != linkmap.shape:
        raise ValueError(f"score maps must be two (h, w) arrays of one shape, got "
                         f"{textmap.shape} and {linkmap.shape}")
    return (np.ascontiguousarray(textmap, dtype=np.float32),
            np.ascontiguousarray(linkmap, dtype=np.float32))


def get_det_boxes_core(textmap, linkmap, text_threshold, link_threshold, low_text,
                       estimate_num_chars=False):
    """== craft_utils.getDetBoxes_core: -> (boxes (N, 4, 2) float32, labels (h, w) int32, mapper).

    mapper[i] is the component label of box i, or with estimate_num_chars its character count.
    Thresholds are compared in float32, as cv2.threshold and NumPy's float32 comparisons do.
    """
    textmap, linkmap = _check_maps(textmap, linkmap)
    boxes, labels, mapper = _det_boxes_core(textmap, linkmap, F32(text_threshold),
                                            F32(link_threshold), F32(low_text),
                                            bool(estimate_num_chars))
    return boxes, labels, mapper


def get_det_boxes(textmap, linkmap, text_threshold, link_threshold, low_text, poly=False,
                  estimate_num_chars=False):
    """== craft_utils.getDetBoxes: -> (boxes, polys, mapper).

    boxes: list of (4, 2) float32 (TL, TR, BR, BL) in score-map pixels; polys: list with a
    (K, 2) float64 polygon or None per box (all None unless poly=True); mapper: list of ints.
    """
    if poly and estimate_num_chars:
        raise ValueError("estimate_num_chars is not supported together with poly=True "
                         "(as in the reference)")
    boxes, labels, mapper = get_det_boxes_core(textmap, linkmap, text_threshold, link_threshold,
                                               low_text, estimate_num_chars)
    boxes = list(boxes)
    mapper = [int(m) for m in mapper]
    if poly:
        polys = get_poly(boxes, labels, mapper)
    else:
        polys = [None] * len(boxes)
    return boxes, polys, mapper



# --------------------------------------------------------------------------------------------
# getPoly_core: curved-text polygons (poly=True)

def _warp_coord(minv, pt):
    out = np.matmul(minv, (pt[0], pt[1], 1))
    return np.array([out[0] / out[2], out[1] / out[2]])


def get_poly(boxes, labels, mapper):
    """== craft_utils.getPoly_core: a 14-point polygon (float64 (14, 2)) or None per box.

    Follows the reference step by step, quirks included (the last segment's average is written
    to cp_section[-1]; slopes are summed, not averaged; the end search is forced at r = 1.7).
    """
    num_cp, max_len_ratio, expand_ratio, max_r, step_r = 5, 0.7, 1.45, 2.0, 0.2
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    polys = []
    for k, box in enumerate(boxes):
        box = np.asarray(box, dtype=np.float32)
        w = int(np.linalg.norm(box[0] - box[1]) + 1)
        h = int(np.linalg.norm(box[1] - box[2]) + 1)
        if w < 10 or h < 10:
            polys.append(None)
            continue
        tar = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        m = _perspective_transform(box, tar)
        try:
            minv = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            polys.append(None)
            continue
        word = _warp_label_mask(labels, m, w, h, mapper[k])

        # top and bottom contour points: first/last nonzero row of every column with >= 2
        cols = np.flatnonzero(word.sum(axis=0) >= 2)
        first = word[:, cols].argmax(axis=0)
        last = h - 1 - word[::-1, cols].argmax(axis=0)
        cp = list(zip(cols.tolist(), first, last))
        max_len = int((last - first + 1).max()) if len(cols) else -1
        if h * max_len_ratio < max_len:  # straight text: the box is enough
            polys.append(None)
            continue

        # pivot points: the tallest column of every odd segment of 2 * num_cp + 1
        tot_seg = num_cp * 2 + 1
        seg_w = w / tot_seg
        pp = [None] * num_cp
        cp_section = [[0, 0]] * tot_seg
        seg_height = [0] * num_cp
        seg_num = 0
        num_sec = 0
        prev_h = -1
        for x, sy, ey in cp:
            if (seg_num + 1) * seg_w <= x and seg_num <= tot_seg:
                if num_sec == 0:
                    break
                cp_section[seg_num] = [cp_section[seg_num][0] / num_sec,
                                       cp_section[seg_num][1] / num_sec]
                num_sec = 0
                seg_num += 1
                prev_h = -1
            cy = (sy + ey) * 0.5
            cur_h = ey - sy + 1
            cp_section[seg_num] = [cp_section[seg_num][0] + x, cp_section[seg_num][1] + cy]
            num_sec += 1
            if seg_num % 2 == 0:
                continue
            if prev_h < cur_h:
                pp[int((seg_num - 1) / 2)] = (x, cy)
                seg_height[int((seg_num - 1) / 2)] = cur_h
                prev_h = cur_h
        if num_sec != 0:  # upstream quirk: written to the last section, not to seg_num
            cp_section[-1] = [cp_section[-1][0] / num_sec, cp_section[-1][1] / num_sec]
        if None in pp or seg_w < np.max(seg_height) * 0.25:
            polys.append(None)
            continue

        # pivots turned perpendicular to the local text direction
        half_char_h = np.median(seg_height) * expand_ratio / 2
        new_pp = []
        for i, (x, cy) in enumerate(pp):
            dx = cp_section[i * 2 + 2][0] - cp_section[i * 2][0]
            dy = cp_section[i * 2 + 2][1] - cp_section[i * 2][1]
            if dx == 0:
                new_pp.append([x, cy - half_char_h, x, cy + half_char_h])
                continue
            rad = -math.atan2(dy, dx)
            c, s = half_char_h * math.cos(rad), half_char_h * math.sin(rad)
            new_pp.append([x - s, cy - c, x + s, cy + c])

        # end edges: step outwards until the edge line misses the word
        spp = epp = None
        grad_s = (pp[1][1] - pp[0][1]) / (pp[1][0] - pp[0][0]) + \
            (pp[2][1] - pp[1][1]) / (pp[2][0] - pp[1][0])
        grad_e = (pp[-2][1] - pp[-1][1]) / (pp[-2][0] - pp[-1][0]) + \
            (pp[-3][1] - pp[-2][1]) / (pp[-3][0] - pp[-2][0])
        for r in np.arange(0.5, max_r, step_r):
            dx = 2 * half_char_h * r
            if spp is None:
                p = np.array(new_pp[0]) - np.array([dx, grad_s * dx, dx, grad_s * dx])
                if (not _line_hits(word, int(p[0]), int(p[1]), int(p[2]), int(p[3]))
                        or r + 2 * step_r >= max_r):
                    spp = p
            if epp is None:
                p = np.array(new_pp[-1]) + np.array([dx, grad_e * dx, dx, grad_e * dx])
                if (not _line_hits(word, int(p[0]), int(p[1]), int(p[2]), int(p[3]))
                        or r + 2 * step_r >= max_r):
                    epp = p
            if spp is not None and epp is not None:
                break
        if spp is None or epp is None:
            polys.append(None)
            continue

        # polygon in map coordinates: start edge, tops, end edge, bottoms (reversed)
        poly = [_warp_coord(minv, (spp[0], spp[1]))]
        poly += [_warp_coord(minv, (p[0], p[1])) for p in new_pp]
        poly.append(_warp_coord(minv, (epp[0], epp[1])))
        poly.append(_warp_coord(minv, (epp[2], epp[3])))
        poly += [_warp_coord(minv, (p[2], p[3])) for p in reversed(new_pp)]
        poly.append(_warp_coord(minv, (spp[2], spp[3])))
        polys.append(np.array(poly))
    return polys


def adjust_result_coordinates(polys, ratio_w, ratio_h, ratio_net=2):
    """== craft_utils.adjustResultCoordinates: scale map coordinates to the original image.

    Each non-None entry is multiplied by (ratio_w * ratio_net, ratio_h * ratio_net) in float32
    (the reference stacks the boxes into a float32 array). Unlike the reference this also works
    on ragged lists (polygons of different lengths, None entries), where the reference crashes
    on NumPy >= 1.24; it returns a (N, 4, 2) float32 array when all entries are 4-point boxes
    and a list otherwise.
    """
    if len(polys) == 0:
        return polys
    scale = (ratio_w * ratio_net, ratio_h * ratio_net)
    items = [None if p is None else np.asarray(p) for p in polys]
    if all(p is not None for p in items) and len({p.shape for p in items}) == 1:
        arr = np.array(items)  # the reference's own path (keeps the input dtype)
        for k in range(len(arr)):
            arr[k] *= scale
        return arr
    out = []
    for p in items:
        if p is None:
            out.append(None)
        else:
            q = p.copy()
            q *= scale
            out.append(q)
    return out
