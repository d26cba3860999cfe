"""Readable references for CRAFT's box rule and the primitives below it (plain Python + NumPy).

Slow on purpose: each function is written the obvious way, so that the fast Numba code in
`detector_np.postprocess` and `detector_np.cv_ops` can be held equal to it by
tests/test_postprocess_reference.py, which needs neither OpenCV nor torch.

  label4          4-connected labelling by breadth-first search  (== cv_ops.label_components)
  dilate          k x k square dilation as a max over shifted copies (== cv_ops.dilate_rect)
  convex_hull     Andrew's monotone chain, counter-clockwise with y up (cycle of cv_ops' hull)
  min_rect_area   brute force over the hull's edge directions   (area of cv_ops.min_area_rect)
  det_boxes       craft_utils.getDetBoxes_core step by step     (== postprocess.get_det_boxes_core)

det_boxes takes its rotated rectangle from cv_ops.min_area_rect / box_points, as the original
takes it from cv2.minAreaRect / cv2.boxPoints: which of two equal-area rectangles OpenCV keeps,
and which corner of an exact 45-degree box has the smaller x + y, follow OpenCV's float32
rounding, which a float64 re-derivation cannot reproduce without becoming the kernel again.
That rectangle is checked against min_rect_area here and against cv2 itself in
tests/test_postprocess.py.
References: clovaai/CRAFT-pytorch craft_utils.py (getDetBoxes_core); Andrew, "Another efficient
algorithm for convex hulls in two dimensions", IPL 1979; Freeman & Shapira, "Determining the
minimum-area encasing rectangle for an arbitrary closed curve", CACM 1975.
"""
import math
from collections import deque

import numpy as np

from . import cv_ops

F32 = np.float32


def label4(mask):
    """(h, w) mask -> (n_labels, labels (h, w) int32, stats (n_labels, 5) int32).

    Scans pixels in raster order; an unlabelled foreground pixel starts a new label, which a
    breadth-first search spreads to its up/down/left/right neighbours. So labels are numbered in
    raster order of each component's first pixel; 0 is the background. stats columns: x, y,
    width, height, area of each label (OpenCV's values -1, 2**31 - 1, 0, 0, 0 for an empty one).
    """
    fg = np.asarray(mask) != 0
    h, w = fg.shape
    labels = np.zeros((h, w), np.int32)
    n = 1
    for y, x in zip(*np.nonzero(fg)):
        if labels[y, x]:
            continue
        labels[y, x] = n
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and fg[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = n
                    queue.append((ny, nx))
        n += 1
    stats = np.zeros((n, 5), np.int32)
    for k in range(n):
        ys, xs = np.nonzero(labels == k)
        if len(xs):
            stats[k] = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, len(xs)
        else:
            stats[k] = -1, 2 ** 31 - 1, 0, 0, 0
    return n, labels, stats


def dilate(mask, k):
    """(h, w) mask -> (h, w) uint8 0/1: out(p) = 1 if any mask pixel lies in the k x k window
    [p - k//2, p + k - 1 - k//2] (OpenCV's default anchor); pixels outside the image are 0."""
    fg = (np.asarray(mask) != 0).astype(np.uint8)
    h, w = fg.shape
    lo = k // 2
    padded = np.zeros((h + k - 1, w + k - 1), np.uint8)
    padded[lo:lo + h, lo:lo + w] = fg     # padded[i] = fg[i - lo]
    out = np.zeros((h, w), np.uint8)
    for dy in range(k):
        for dx in range(k):
            out |= padded[dy:dy + h, dx:dx + w]  # fg shifted by (dy - lo, dx - lo)
    return out


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points):
    """(N, 2) integer points (x, y) -> list of hull vertices (x, y), counter-clockwise with the
    y axis up, starting at the smallest (x, y); collinear and repeated points left out."""
    pts = sorted(set(map(tuple, np.asarray(points).tolist())))
    if len(pts) <= 2:
        return pts

    def half(seq):
        chain = []
        for p in seq:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]  # the last point starts the other half

    return half(pts) + half(pts[::-1])


def min_rect_area(points):
    """Area of the smallest rotated rectangle around (N, 2) points, float64: one side of such a
    rectangle lies along a hull edge (Freeman & Shapira), so try every edge direction."""
    hull = np.array(convex_hull(points), np.float64)
    if len(hull) <= 2:
        return 0.0
    best = math.inf
    for i in range(len(hull)):
        edge = hull[(i + 1) % len(hull)] - hull[i]
        u = edge / np.linalg.norm(edge)
        v = np.array([-u[1], u[0]])
        along, across = hull @ u, hull @ v
        best = min(best, np.ptp(along) * np.ptp(across))
    return best


def det_boxes(textmap, linkmap, text_threshold, link_threshold, low_text, estimate_num_chars=False):
    """craft_utils.getDetBoxes_core: (h, w) float32 maps -> (boxes, labels, mapper).

    boxes: list of (4, 2) float32 corners, clockwise from the one with the smallest x + y;
    labels: (h, w) int32 components of the thresholded maps; mapper: each box's label (or, with
    estimate_num_chars, its number of character blobs, as EasyOCR counts them).
    """
    textmap = np.asarray(textmap, np.float32)
    linkmap = np.asarray(linkmap, np.float32)
    img_h, img_w = textmap.shape
    # cv2.threshold(BINARY): strictly above the threshold, compared in float32
    text = textmap > F32(low_text)
    link = linkmap > F32(link_threshold)
    n, labels, stats = label4(text | link)
    boxes, mapper = [], []
    for k in range(1, n):
        x, y, w, h, size = (int(v) for v in stats[k])
        if size < 10:                                           # too small
            continue
        if textmap[labels == k].max() < F32(text_threshold):    # no confident character
            continue
        if estimate_num_chars:  # EasyOCR: blobs of (text - link) above text_threshold
            segmap = np.where(labels == k, np.uint8(255), np.uint8(0))
            chars = (textmap - linkmap) * segmap / 255.0 > F32(text_threshold)
            mapper.append(label4(chars)[0] - 1)
        else:
            mapper.append(k)
        # the component, less its link-only pixels, grown by a square that scales with the
        # component's thickness (area / length); the dilation works on a window around it
        segmap = (labels == k) & ~(link & ~text)
        niter = int(math.sqrt(size * min(w, h) / (w * h)) * 2)
        sx, sy = max(x - niter, 0), max(y - niter, 0)
        ex, ey = min(x + w + niter + 1, img_w), min(y + h + niter + 1, img_h)
        segmap[sy:ey, sx:ex] = dilate(segmap[sy:ey, sx:ex], 1 + niter)
        # the minimum-area rectangle of the pixel centres, points in np.where (raster) order
        ys, xs = np.nonzero(segmap)
        box = cv_ops.box_points(cv_ops.min_area_rect(np.stack([xs, ys], axis=1)))
        # "align diamond-shape": a near-square box becomes the axis-aligned bounds
        bw, bh = np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])
        if abs(1 - max(bw, bh) / (min(bw, bh) + F32(1e-5))) <= F32(0.1):
            l, r, t, b = xs.min(), xs.max(), ys.min(), ys.max()
            box = np.array([[l, t], [r, t], [r, b], [l, b]], np.float32)
        # clockwise from the corner with the smallest x + y (the first one on ties)
        boxes.append(np.roll(box, 4 - int(box.sum(axis=1).argmin()), axis=0))
    return boxes, labels, mapper
