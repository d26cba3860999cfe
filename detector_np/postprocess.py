"""CRAFT post-processing: region/affinity score maps -> word boxes and polygons.

A NumPy + Numba re-implementation of `craft_utils.getDetBoxes`, `getPoly_core` and
`adjustResultCoordinates` (clovaai/CRAFT-pytorch; EasyOCR's copy adds `estimate_num_chars`),
without OpenCV. Every OpenCV call the reference makes is emulated here with the semantics
it has in OpenCV 5.0 (checked against cv2 in tests/test_postprocess.py):

  cv2.threshold(BINARY)          strict `>` against the threshold cast to float32
  cv2.connectedComponentsWithStats(connectivity=4)
                                 labels in raster order of each component's first pixel
  cv2.dilate(rect kernel k)      dst(p) = max src(p + d), d in [-k//2, k-1-k//2]; border ignored
  cv2.minAreaRect                convex hull (counter-clockwise, OpenCV's start point) +
                                 rotating calipers in float32, angle normalised to [-90, 0)
  cv2.boxPoints                  RotatedRect::points, float32 arithmetic as OpenCV 5 does it
  cv2.getPerspectiveTransform / warpPerspective(INTER_NEAREST) / line(LINE_8)   (poly=True)

All maps are (h, w) float32 at half the network input resolution; boxes are (4, 2) float32
corner lists (x, y) in map pixels, clockwise from the top-left corner.
"""
import math

import numpy as np
from numba import njit

F32 = np.float32


# --------------------------------------------------------------------------------------------
# connected components (cv2.connectedComponentsWithStats, connectivity=4)

@njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def _label4(mask):
    """(h, w) uint8 -> n_labels, labels (h, w) int32, stats (n_labels, 5) int32 [x, y, w, h, area].

    Two-pass union-find. Roots are always the smallest provisional label, and provisional labels
    are created in raster order, so the final labels come out in raster order of each component's
    first pixel, as OpenCV's (and scipy.ndimage.label's) do.
    """
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    parent = np.empty(h * w // 2 + 2, np.int32)  # a 4-connected checkerboard has ceil(h*w/2) blobs
    parent[0] = 0
    nxt = 1
    for y in range(h):
        for x in range(w):
            if mask[y, x] == 0:
                continue
            up = labels[y - 1, x] if y > 0 else 0
            left = labels[y, x - 1] if x > 0 else 0
            if up == 0 and left == 0:
                parent[nxt] = nxt
                labels[y, x] = nxt
                nxt += 1
            elif up == 0:
                labels[y, x] = left
            elif left == 0 or left == up:
                labels[y, x] = up
            else:
                ru = _find(parent, up)
                rl = _find(parent, left)
                if ru < rl:
                    parent[rl] = ru
                elif rl < ru:
                    parent[ru] = rl
                labels[y, x] = left
    # provisional -> final labels, in increasing order of the root (= first pixel in raster order)
    final = np.zeros(nxt, np.int32)
    n = 1
    for i in range(1, nxt):
        r = _find(parent, i)
        if r == i:
            final[i] = n
            n += 1
        else:
            final[i] = final[r]
    big = np.int32(2 ** 30)
    x0 = np.full(n, big, np.int32)
    y0 = np.full(n, big, np.int32)
    x1 = np.full(n, -1, np.int32)
    y1 = np.full(n, -1, np.int32)
    area = np.zeros(n, np.int32)
    for y in range(h):
        for x in range(w):
            k = final[labels[y, x]]
            labels[y, x] = k
            area[k] += 1
            if x < x0[k]:
                x0[k] = x
            if x > x1[k]:
                x1[k] = x
            if y < y0[k]:
                y0[k] = y
            if y > y1[k]:
                y1[k] = y
    stats = np.zeros((n, 5), np.int32)
    for k in range(n):
        if area[k] > 0:
            stats[k, 0] = x0[k]
            stats[k, 1] = y0[k]
            stats[k, 2] = x1[k] - x0[k] + 1
            stats[k, 3] = y1[k] - y0[k] + 1
        else:  # only the background can be empty (an all-foreground mask): OpenCV's values
            stats[k, 0] = -1
            stats[k, 1] = 2147483647
        stats[k, 4] = area[k]
    return n, labels, stats


def label_components(mask):
    """4-connected labelling: (h, w) mask (nonzero = foreground) -> (n_labels, labels, stats).

    Equal to `cv2.connectedComponentsWithStats(mask.astype(uint8), connectivity=4)[:3]`:
    label 0 is the background, labels (int32) in raster order of first pixel, stats (n, 5)
    int32 columns x, y, width, height, area.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"label_components expects a 2-D mask, got shape {mask.shape}")
    return _label4(np.ascontiguousarray(mask != 0).view(np.uint8))


# --------------------------------------------------------------------------------------------
# dilation with a k x k rectangle (cv2.dilate + getStructuringElement(MORPH_RECT))

@njit(cache=True)
def _dilate_binary(src, k):
    """(h, w) uint8 0/1 -> (h, w) uint8 0/1. Separable running count over each window."""
    h, w = src.shape
    lo = k // 2          # OpenCV's default anchor: window is [p - k//2, p + k - 1 - k//2]
    hi = k - 1 - lo
    tmp = np.zeros((h, w), np.uint8)
    for y in range(h):
        cnt = 0
        for x in range(min(hi, w - 1) + 1):  # window of x = 0 is [-lo, hi]
            cnt += src[y, x]
        for x in range(w):
            if cnt > 0:
                tmp[y, x] = 1
            if x + hi + 1 < w:
                cnt += src[y, x + hi + 1]
            if x - lo >= 0:
                cnt -= src[y, x - lo]
    out = np.zeros((h, w), np.uint8)
    for x in range(w):
        cnt = 0
        for y in range(min(hi, h - 1) + 1):
            cnt += tmp[y, x]
        for y in range(h):
            if cnt > 0:
                out[y, x] = 1
            if y + hi + 1 < h:
                cnt += tmp[y + hi + 1, x]
            if y - lo >= 0:
                cnt -= tmp[y - lo, x]
    return out


def dilate_rect(mask, k):
    """Binary dilation of a (h, w) mask by a k x k square, equal to
    `cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))` for a 0/v mask:
    returns uint8 with v (the mask's maximum) where dilated, 0 elsewhere. Pixels outside the
    image never contribute (OpenCV's default border for dilation)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or k < 1:
        raise ValueError(f"dilate_rect expects a 2-D mask and k >= 1, got {mask.shape}, k={k}")
    on = _dilate_binary(np.ascontiguousarray(mask != 0).view(np.uint8), int(k))
    value = mask.max() if mask.size else 0
    return (on * np.uint8(value if mask.dtype == np.uint8 else 1)).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# minimum-area rectangle (cv2.minAreaRect) and its corners (cv2.boxPoints)

@njit(cache=True)
def _convex_hull(px, py, key):
    """Indices of the convex hull vertices, in the order cv2.convexHull(clockwise=False) gives.

    px, py: (N,) int64 point coordinates (duplicates allowed); key: (N,) int64, the points'
    positions in the caller's point list (OpenCV's output depends on it).
    Andrew's monotone chain without collinear vertices; OpenCV starts a counter-clockwise hull
    (y axis up) at the largest (x, y) point, then cyclically shifts it to start at the smallest
    (largest) input index when that makes the indices ascending (descending).
    """
    n = px.shape[0]
    span = py.max() - py.min() + 1
    order = np.argsort((px - px.min()) * span + (py - py.min()), kind="mergesort")
    # unique points sorted by (x, y); of duplicates keep the earliest in the caller's list
    uniq = np.empty(n, np.int64)
    m = 0
    for t in range(n):
        i = order[t]
        if m > 0 and px[uniq[m - 1]] == px[i] and py[uniq[m - 1]] == py[i]:
            if key[i] < key[uniq[m - 1]]:
                uniq[m - 1] = i
            continue
        uniq[m] = i
        m += 1
    if m == 1:
        return uniq[:1].copy()
    stack = np.empty(2 * m + 1, np.int64)
    # lower chain, left to right
    s = 0
    for t in range(m):
        i = uniq[t]
        while s >= 2:
            a = stack[s - 2]
            b = stack[s - 1]
            cross = (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a])
            if cross > 0:
                break
            s -= 1
        stack[s] = i
        s += 1
    n_lower = s
    # upper chain, right to left
    for t in range(m - 2, -1, -1):
        i = uniq[t]
        while s >= n_lower + 1:
            a = stack[s - 2]
            b = stack[s - 1]
            cross = (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a])
            if cross > 0:
                break
            s -= 1
        stack[s] = i
        s += 1
    # stack = lower (P0 .. Pmax) + upper (.. P0); drop the repeated P0, start at Pmax
    nh = s - 1
    hull = np.empty(nh, np.int64)
    for t in range(nh):
        hull[t] = stack[(n_lower - 1 + t) % nh]
    if nh >= 3:
        kmin = 0
        kmax = 0
        for t in range(1, nh):
            if key[hull[t]] < key[hull[kmin]]:
                kmin = t
            if key[hull[t]] > key[hull[kmax]]:
                kmax = t
        asc = True
        desc = True
        for t in range(nh - 1):
            if key[hull[(kmin + t) % nh]] >= key[hull[(kmin + t + 1) % nh]]:
                asc = False
            if key[hull[(kmax + t) % nh]] <= key[hull[(kmax + t + 1) % nh]]:
                desc = False
        start = kmin if asc else (kmax if desc else 0)
        if start != 0:
            hull = np.concatenate((hull[start:], hull[:start]))
    return hull


@njit(cache=True)
def _rotating_calipers(hx, hy):
    """OpenCV's rotatingCalipers(CALIPERS_MINAREARECT) on a hull (n >= 3), in float32.

    Returns corner (px, py), edge vector 1 (x, y) and edge vector 2 (x, y) as 6 float32."""
    n = hx.shape[0]
    vx = np.empty(n, np.float32)
    vy = np.empty(n, np.float32)
    inv_len = np.empty(n, np.float32)
    left = 0
    bottom = 0
    right = 0
    top = 0
    left_x = hx[0]
    right_x = hx[0]
    top_y = hy[0]
    bottom_y = hy[0]
    for i in range(n):
        if hx[i] < left_x:
            left_x = hx[i]
            left = i
        if hx[i] > right_x:
            right_x = hx[i]
            right = i
        if hy[i] > top_y:
            top_y = hy[i]
            top = i
        if hy[i] < bottom_y:
            bottom_y = hy[i]
            bottom = i
        j = i + 1 if i + 1 < n else 0
        dx = np.float64(hx[j] - hx[i])
        dy = np.float64(hy[j] - hy[i])
        vx[i] = np.float32(dx)
        vy[i] = np.float32(dy)
        inv_len[i] = np.float32(1.0 / math.sqrt(dx * dx + dy * dy))
    # orientation of the hull: sign of the first non-zero turn
    orientation = np.float32(0.0)
    ax = np.float64(vx[n - 1])
    ay = np.float64(vy[n - 1])
    for i in range(n):
        bx = np.float64(vx[i])
        by = np.float64(vy[i])
        conv = ax * by - ay * bx
        if conv != 0:
            orientation = np.float32(1.0) if conv > 0 else np.float32(-1.0)
            break
        ax = bx
        ay = by
    base_a = orientation
    base_b = np.float32(0.0)
    seq = np.array([bottom, right, top, left], np.int64)
    rvx = np.empty(4, np.float32)
    rvy = np.empty(4, np.float32)
    minarea = np.float32(3.4028234663852886e38)
    best_left = 0
    best_bottom = 0
    best_a = base_a
    best_b = base_b
    best_w = np.float32(0.0)
    best_h = np.float32(0.0)
    for _ in range(n):
        # caliper sides rotated into a common frame; pick the one with the smallest angle to its
        # polygon edge by the sign of a cross product (OpenCV >= 4.5.4)
        rvx[0] = vx[seq[0]]
        rvy[0] = vy[seq[0]]
        rvx[1] = vy[seq[1]]
        rvy[1] = -vx[seq[1]]
        rvx[2] = -vx[seq[2]]
        rvy[2] = -vy[seq[2]]
        rvx[3] = -vy[seq[3]]
        rvy[3] = vx[seq[3]]
        main = 0
        for i in range(1, 4):
            if rvy[i] * rvx[main] + (-rvx[i]) * rvy[main] < np.float32(0.0):
                main = i
        p = seq[main]
        lead_x = vx[p] * inv_len[p]
        lead_y = vy[p] * inv_len[p]
        if main == 0:
            base_a = lead_x
            base_b = lead_y
        elif main == 1:
            base_a = lead_y
            base_b = -lead_x
        elif main == 2:
            base_a = -lead_x
            base_b = -lead_y
        else:
            base_a = -lead_y
            base_b = lead_x
        seq[main] += 1
        if seq[main] == n:
            seq[main] = 0
        dx = hx[seq[1]] - hx[seq[3]]
        dy = hy[seq[1]] - hy[seq[3]]
        width = dx * base_a + dy * base_b
        dx = hx[seq[2]] - hx[seq[0]]
        dy = hy[seq[2]] - hy[seq[0]]
        height = -dx * base_b + dy * base_a
        area = width * height
        if area <= minarea:
            minarea = area
            best_left = seq[3]
            best_a = base_a
            best_w = width
            best_b = base_b
            best_h = height
            best_bottom = seq[0]
    a1 = best_a
    b1 = best_b
    a2 = -best_b
    b2 = best_a
    c1 = a1 * hx[best_left] + hy[best_left] * b1
    c2 = a2 * hx[best_bottom] + hy[best_bottom] * b2
    idet = np.float32(1.0) / (a1 * b2 - a2 * b1)
    out = np.empty(6, np.float32)
    out[0] = (c1 * b2 - c2 * b1) * idet
    out[1] = (a1 * c2 - a2 * c1) * idet
    out[2] = a1 * best_w
    out[3] = b1 * best_w
    out[4] = a2 * best_h
    out[5] = b2 * best_h
    return out


@njit(cache=True)
def _min_area_rect(px, py, key):
    """-> float32 [cx, cy, width, height, angle_degrees] as cv2.minAreaRect (OpenCV 5.0)."""
    res = np.zeros(5, np.float32)
    if px.shape[0] == 0:
        res[4] = -90.0
        return res
    idx = _convex_hull(px, py, key)
    n = idx.shape[0]
    hx = px[idx].astype(np.float32)
    hy = py[idx].astype(np.float32)
    half = np.float32(0.5)
    angle = 0.0  # radians, float64 until the end as OpenCV 5 does
    if n > 2:
        o = _rotating_calipers(hx, hy)
        res[0] = o[0] + (o[2] + o[4]) * half
        res[1] = o[1] + (o[3] + o[5]) * half
        o2 = np.float64(o[2])
        o3 = np.float64(o[3])
        o4 = np.float64(o[4])
        o5 = np.float64(o[5])
        res[2] = np.float32(math.sqrt(o2 * o2 + o3 * o3))
        res[3] = np.float32(math.sqrt(o4 * o4 + o5 * o5))
        angle = math.atan2(o3, o2)
    elif n == 2:
        res[0] = (hx[0] + hx[1]) * half
        res[1] = (hy[0] + hy[1]) * half
        dx = np.float64(hx[1] - hx[0])
        dy = np.float64(hy[1] - hy[0])
        res[2] = np.float32(math.sqrt(dx * dx + dy * dy))
        res[3] = 0.0
        angle = math.atan2(dy, dx)
    else:
        res[0] = hx[0]
        res[1] = hy[0]
    angle = angle * 180.0 / math.pi
    # OpenCV 5 reports angles in [-90, 0): rotating by -90 degrees swaps width and height
    while angle >= 0.0:
        angle -= 90.0
        res[2], res[3] = res[3], res[2]
    while angle < -90.0:
        angle += 90.0
        res[2], res[3] = res[3], res[2]
    res[4] = np.float32(angle)
    return res


@njit(cache=True)
def _box_points(rect):
    """float32 [cx, cy, w, h, angle] -> (4, 2) float32 corners (RotatedRect::points order)."""
    ang = np.float64(rect[4]) * math.pi / 180.0
    b = np.float32(math.cos(ang)) * np.float32(0.5)
    a = np.float32(math.sin(ang)) * np.float32(0.5)
    cx, cy, w, h = rect[0], rect[1], rect[2], rect[3]
    pts = np.empty((4, 2), np.float32)
    pts[0, 0] = cx - a * h - b * w
    pts[0, 1] = cy + b * h - a * w
    pts[1, 0] = cx + a * h - b * w
    pts[1, 1] = cy - b * h - a * w
    pts[2, 0] = cx + a * h + b * w  # OpenCV 5 mirrors the corners this way, not as 2c - p
    pts[2, 1] = cy - b * h + a * w
    pts[3, 0] = cx - a * h + b * w
    pts[3, 1] = cy + b * h + a * w
    return pts


def min_area_rect(points):
    """(N, 2) integer points (x, y) -> ((cx, cy), (w, h), angle) like cv2.minAreaRect.

    The rectangle covers the point coordinates themselves (pixel centres). Among rectangles of
    equal area the one OpenCV picks is picked, which depends on the points' order, as in OpenCV.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"min_area_rect expects (N, 2) points, got shape {pts.shape}")
    if pts.size and not np.array_equal(pts, np.round(pts)):
        raise ValueError("min_area_rect supports integer point coordinates only")
    pts = pts.astype(np.int64)
    r = _min_area_rect(np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
                       np.arange(len(pts), dtype=np.int64))
    return (float(r[0]), float(r[1])), (float(r[2]), float(r[3])), float(r[4])


def box_points(rect):
    """((cx, cy), (w, h), angle) -> (4, 2) float32 corners like cv2.boxPoints."""
    (cx, cy), (w, h), angle = rect
    return _box_points(np.array([cx, cy, w, h, angle], np.float32))


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

@njit(cache=True)
def _lu_solve(a, b):
    """Solve a x = b (n x n float64) like OpenCV's LU (DECOMP_LU): partial pivoting on the
    largest |a[j, i]|, elimination with d = -1/pivot, then back substitution dividing by the
    pivot. Same operation order, so the same rounding. Returns (ok, x)."""
    a = a.copy()
    b = b.copy()
    n = a.shape[0]
    eps = 2.220446049250313e-16 * 100
    for i in range(n):
        k = i
        for j in range(i + 1, n):
            if abs(a[j, i]) > abs(a[k, i]):
                k = j
        if abs(a[k, i]) < eps:
            return False, b
        if k != i:
            for j in range(i, n):
                a[i, j], a[k, j] = a[k, j], a[i, j]
            b[i], b[k] = b[k], b[i]
        d = -1.0 / a[i, i]
        for j in range(i + 1, n):
            alpha = a[j, i] * d
            for c in range(i + 1, n):
                a[j, c] += alpha * a[i, c]
            b[j] += alpha * b[i]
    for i in range(n - 1, -1, -1):
        s = b[i]
        for c in range(i + 1, n):
            s -= a[i, c] * b[c]
        b[i] = s / a[i, i]
    return True, b


@njit(cache=True)
def _perspective_transform(src, dst):
    """(4, 2) float32 src, dst -> (3, 3) float64 M mapping src to dst (cv2.getPerspectiveTransform).

    Like OpenCV, the -x*u products are taken in float32 before the 8x8 double system is solved."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i in range(4):
        a[i, 0] = src[i, 0]
        a[i + 4, 3] = src[i, 0]
        a[i, 1] = src[i, 1]
        a[i + 4, 4] = src[i, 1]
        a[i, 2] = 1.0
        a[i + 4, 5] = 1.0
        a[i, 6] = -src[i, 0] * dst[i, 0]
        a[i, 7] = -src[i, 1] * dst[i, 0]
        a[i + 4, 6] = -src[i, 0] * dst[i, 1]
        a[i + 4, 7] = -src[i, 1] * dst[i, 1]
        b[i] = dst[i, 0]
        b[i + 4] = dst[i, 1]
    ok, x = _lu_solve(a, b)
    m = np.zeros((3, 3))
    if ok:  # OpenCV leaves a singular system's M at zero (but for M[2, 2])
        for i in range(8):
            m[i // 3, i % 3] = x[i]
    m[2, 2] = 1.0
    return m


@njit(cache=True)
def _invert3(m):
    """3x3 inverse as OpenCV's invert(DECOMP_LU) computes it for n <= 3 (adjugate / det)."""
    d = (m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
         - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
         + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0]))
    t = np.zeros((3, 3))
    if d == 0.0:
        return t
    d = 1.0 / d
    t[0, 0] = (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1]) * d
    t[0, 1] = (m[0, 2] * m[2, 1] - m[0, 1] * m[2, 2]) * d
    t[0, 2] = (m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]) * d
    t[1, 0] = (m[1, 2] * m[2, 0] - m[1, 0] * m[2, 2]) * d
    t[1, 1] = (m[0, 0] * m[2, 2] - m[0, 2] * m[2, 0]) * d
    t[1, 2] = (m[0, 2] * m[1, 0] - m[0, 0] * m[1, 2]) * d
    t[2, 0] = (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0]) * d
    t[2, 1] = (m[0, 1] * m[2, 0] - m[0, 0] * m[2, 1]) * d
    t[2, 2] = (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) * d
    return t


@njit(cache=True)
def _warp_label_mask(labels, m, out_w, out_h, k):
    """(out_h, out_w) uint8: 1 where cv2.warpPerspective(labels, m, (out_w, out_h),
    INTER_NEAREST) == k. OpenCV maps each output pixel through inv(m) in 32x32-pixel-area blocks
    (the block origin enters the arithmetic) and rounds to nearest-even; outside -> 0."""
    im = _invert3(m)
    src_h, src_w = labels.shape
    out = np.zeros((out_h, out_w), np.uint8)
    if out_w <= 0 or out_h <= 0:
        return out
    bh0 = min(16, out_h)
    bw0 = min(1024 // bh0, out_w)
    int_min = -2147483648.0
    int_max = 2147483647.0
    for y in range(out_h):
        for bx in range(0, out_w, bw0):
            x0 = im[0, 0] * bx + im[0, 1] * y + im[0, 2]
            y0 = im[1, 0] * bx + im[1, 1] * y + im[1, 2]
            w0 = im[2, 0] * bx + im[2, 1] * y + im[2, 2]
            for x1 in range(min(bw0, out_w - bx)):
                ww = w0 + im[2, 0] * x1
                ww = 1.0 / ww if ww != 0.0 else 0.0
                fx = max(int_min, min(int_max, (x0 + im[0, 0] * x1) * ww))
                fy = max(int_min, min(int_max, (y0 + im[1, 0] * x1) * ww))
                sx = int(np.rint(fx))
                sy = int(np.rint(fy))
                # OpenCV stores the map as int16 (saturating)
                sx = max(-32768, min(32767, sx))
                sy = max(-32768, min(32767, sy))
                if 0 <= sx < src_w and 0 <= sy < src_h and labels[sy, sx] == k:
                    out[y, bx + x1] = 1
    return out


@njit(cache=True)
def _clip_line(w, h, x1, y1, x2, y2):
    """OpenCV's clipLine to [0, w-1] x [0, h-1] (integer Cohen-Sutherland, truncating)."""
    right = w - 1
    bottom = h - 1
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += int(np.float64(a - y1) * (x2 - x1) / (y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += int(np.float64(a - y2) * (x2 - x1) / (y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += int(np.float64(a - x1) * (y2 - y1) / (x2 - x1))
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += int(np.float64(a - x2) * (y2 - y1) / (x2 - x1))
                x2 = a
                c2 = 0
    return (c1 | c2) == 0, x1, y1, x2, y2


@njit(cache=True)
def _line_hits(mask, x1, y1, x2, y2):
    """True if cv2.line(zeros_like(mask), (x1, y1), (x2, y2), 1, thickness=1) (LINE_8) touches
    a nonzero pixel of mask: clip, then Bresenham as OpenCV's LineIterator walks it."""
    h, w = mask.shape
    if not (0 <= x1 < w and 0 <= x2 < w and 0 <= y1 < h and 0 <= y2 < h):
        inside, x1, y1, x2, y2 = _clip_line(w, h, x1, y1, x2, y2)
        if not inside:
            return False
    dx = x2 - x1
    dy = y2 - y1
    if dx < 0:  # always walk left to right
        dx = -dx
        dy = -dy
        x1, x2 = x2, x1
        y1, y2 = y2, y1
    sx = 1
    sy = 1
    if dy < 0:
        dy = -dy
        sy = -1
    vert = dy > dx
    if vert:
        dx, dy = dy, dx
    err = dx - (dy + dy)
    x = x1
    y = y1
    for _ in range(dx + 1):
        if mask[y, x]:
            return True
        minor = err < 0
        err += -(dy + dy) + ((dx + dx) if minor else 0)
        if vert:
            y += sy
            if minor:
                x += sx
        else:
            x += sx
            if minor:
                y += sy
    return False


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
