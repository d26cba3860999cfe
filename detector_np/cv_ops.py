"""OpenCV-exact image primitives in NumPy + Numba: the layer below CRAFT's post-processing.

Each function reproduces one OpenCV call that `craft_utils` makes, with the semantics (and,
where the result depends on it, the float32/float64 arithmetic) of OpenCV 5.0, so the boxes
come out bit-identical without OpenCV installed. Checked against cv2 in tests/test_postprocess.py,
and against readable references in tests/test_postprocess_reference.py. Points are (x, y), y down.

  label_components   cv2.connectedComponentsWithStats(connectivity=4): labels in raster order
                     of each component's first pixel, stats [x, y, w, h, area]
  dilate_rect        cv2.dilate with getStructuringElement(MORPH_RECT, (k, k)), border ignored:
                     dst(p) = max src(p + d), d in [-k//2, k-1-k//2]
  _convex_hull       cv2.convexHull(clockwise=False) vertex indices, OpenCV's start vertex
  _rotating_calipers rotatingCalipers(CALIPERS_MINAREARECT), float32
  min_area_rect      cv2.minAreaRect, angle normalised to [-90, 0)
  box_points         cv2.boxPoints (RotatedRect::points, float32)
  _perspective_transform  cv2.getPerspectiveTransform (8x8 system by _lu_solve = DECOMP_LU)
  _warp_label_mask   cv2.warpPerspective(INTER_NEAREST) of a label map, compared with one label
  _line_hits         cv2.line(thickness=1, LINE_8) drawn and tested against a mask (clipLine +
                     LineIterator's Bresenham)
References: OpenCV 5.0 modules/imgproc (connectedcomponents.cpp, morph.dispatch.cpp, convhull.cpp,
rotcalipers.cpp, imgwarp.cpp, drawing.cpp), modules/core (lapack.cpp, types.cpp); Andrew, "Another
efficient algorithm for convex hulls in two dimensions", IPL 1979.
"""
import math

import numpy as np
from numba import njit


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
    stats = np.zeros((n, 5), np.int32)  # columns 2, 3 hold the last x, y until the end
    stats[:, :2] = 2 ** 30
    stats[:, 2:4] = -1
    for y in range(h):
        for x in range(w):
            k = final[labels[y, x]]
            labels[y, x] = k
            stats[k, 4] += 1
            if x < stats[k, 0]:
                stats[k, 0] = x
            if x > stats[k, 2]:
                stats[k, 2] = x
            if y < stats[k, 1]:  # rows come in order: only the first pixel of a label sets it
                stats[k, 1] = y
            stats[k, 3] = y
    for k in range(n):
        if stats[k, 4] > 0:
            stats[k, 2] -= stats[k, 0] - 1
            stats[k, 3] -= stats[k, 1] - 1
        else:  # only the background can be empty (an all-foreground mask): OpenCV's values
            stats[k, :4] = np.array([-1, 2147483647, 0, 0], np.int32)
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
def _chain(px, py, pts, stack, s, base):
    """One chain of Andrew's monotone chain: push each of `pts` onto stack[:s], first popping
    vertices that would not make a strict left turn (y up; collinear ones are dropped too).
    The chain's own vertices start at stack[base], which is never popped. -> new stack size."""
    for i in pts:
        while s >= base + 2:
            a = stack[s - 2]
            b = stack[s - 1]
            if (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a]) > 0:
                break
            s -= 1
        stack[s] = i
        s += 1
    return s


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
    n_lower = _chain(px, py, uniq[:m], stack, 0, 0)                        # left to right
    s = _chain(px, py, uniq[m - 2::-1], stack, n_lower, n_lower - 1)       # back, from Pmax
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
def _rot90(x, y, k):
    """(x, y) turned by k quarter turns the way OpenCV's calipers turn their sides (exact)."""
    if k == 0:
        return x, y
    if k == 1:
        return y, -x
    if k == 2:
        return -x, -y
    return -y, x


@njit(cache=True)
def _rotating_calipers(hx, hy):
    """OpenCV's rotatingCalipers(CALIPERS_MINAREARECT) on a hull (n >= 3), in float32.

    Returns corner (px, py), edge vector 1 (x, y) and edge vector 2 (x, y) as 6 float32."""
    n = hx.shape[0]
    vx = np.empty(n, np.float32)
    vy = np.empty(n, np.float32)
    inv_len = np.empty(n, np.float32)
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        dx = np.float64(hx[j] - hx[i])
        dy = np.float64(hy[j] - hy[i])
        vx[i] = np.float32(dx)
        vy[i] = np.float32(dy)
        inv_len[i] = np.float32(1.0 / math.sqrt(dx * dx + dy * dy))
    # OpenCV starts from the hull's orientation (the sign of its first non-zero turn): +1 here,
    # as _convex_hull returns strict left turns only
    base_a = np.float32(1.0)
    base_b = np.float32(0.0)
    # the four calipers start at the first extreme vertices (bottom, right, top, left)
    seq = np.array([np.argmin(hy), np.argmax(hx), np.argmax(hy), np.argmin(hx)], np.int64)
    rvx = np.empty(4, np.float32)
    rvy = np.empty(4, np.float32)
    minarea = np.float32(3.4028234663852886e38)
    zero = np.float32(0.0)
    best = (np.int64(0), np.int64(0), base_a, base_b, zero, zero)  # left, bottom, a, b, w, h
    for _ in range(n):
        # caliper sides rotated into a common frame; pick the one with the smallest angle to its
        # polygon edge by the sign of a cross product (OpenCV >= 4.5.4)
        for i in range(4):
            rvx[i], rvy[i] = _rot90(vx[seq[i]], vy[seq[i]], i)
        main = 0
        for i in range(1, 4):
            if rvy[i] * rvx[main] + (-rvx[i]) * rvy[main] < np.float32(0.0):
                main = i
        p = seq[main]
        base_a, base_b = _rot90(vx[p] * inv_len[p], vy[p] * inv_len[p], main)
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
        if area <= minarea:  # the last of equal areas wins
            minarea = area
            best = (seq[3], seq[0], base_a, base_b, width, height)
    best_left, best_bottom, a1, b1, best_w, best_h = best
    a2 = -b1
    b2 = a1
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
        o2, o3, o4, o5 = np.float64(o[2]), np.float64(o[3]), np.float64(o[4]), np.float64(o[5])
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
# perspective warp (cv2.getPerspectiveTransform, cv2.warpPerspective INTER_NEAREST)

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
        for c in range(2):  # row i: the equation for u = dst x; row i + 4: for v = dst y
            r = i + 4 * c
            a[r, 3 * c] = src[i, 0]
            a[r, 3 * c + 1] = src[i, 1]
            a[r, 3 * c + 2] = 1.0
            a[r, 6] = -src[i, 0] * dst[i, c]
            a[r, 7] = -src[i, 1] * dst[i, c]
            b[r] = dst[i, c]
    ok, x = _lu_solve(a, b)
    m = np.zeros((3, 3))
    if ok:  # OpenCV leaves a singular system's M at zero (but for M[2, 2])
        for i in range(8):
            m[i // 3, i % 3] = x[i]
    m[2, 2] = 1.0
    return m


@njit(cache=True)
def _invert3(m):
    """3x3 inverse as OpenCV's invert(DECOMP_LU) computes it for n <= 3: adjugate / det, each
    cofactor as one difference of two products (cyclic indices give OpenCV's exact terms)."""
    c = np.zeros((3, 3))  # c[i, j]: cofactor of m[i, j]
    for i in range(3):
        i1, i2 = (i + 1) % 3, (i + 2) % 3
        for j in range(3):
            j1, j2 = (j + 1) % 3, (j + 2) % 3
            c[i, j] = m[i1, j1] * m[i2, j2] - m[i1, j2] * m[i2, j1]
    d = m[0, 0] * c[0, 0] + m[0, 1] * c[0, 1] + m[0, 2] * c[0, 2]
    if d == 0.0:
        return np.zeros((3, 3))
    return c.T * (1.0 / d)


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
                # rounded to nearest-even; OpenCV stores the map as int16 (saturating)
                sx = max(-32768, min(32767, int(np.rint(fx))))
                sy = max(-32768, min(32767, int(np.rint(fy))))
                if 0 <= sx < src_w and 0 <= sy < src_h and labels[sy, sx] == k:
                    out[y, bx + x1] = 1
    return out


# --------------------------------------------------------------------------------------------
# a one-pixel line against a mask (cv2.line(thickness=1, LINE_8): clipLine + LineIterator)

@njit(cache=True)
def _outcode(x, y, right, bottom):
    """Cohen-Sutherland outcode: 1 left, 2 right, 4 above, 8 below [0, right] x [0, bottom]."""
    return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8


@njit(cache=True)
def _slide(x, y, xo, yo, a):
    """End (x, y) of the line to (xo, yo) slid along it to y = a: -> (x', a), x' truncated."""
    return x + int(np.float64(a - y) * (xo - x) / (yo - y)), a


@njit(cache=True)
def _clip_line(w, h, x1, y1, x2, y2):
    """OpenCV's clipLine to [0, w-1] x [0, h-1] (integer Cohen-Sutherland, truncating): both
    ends onto a horizontal border first, then onto a vertical one, each move seeing the other
    end's moved position, as OpenCV orders them."""
    right = w - 1
    bottom = h - 1
    c1 = _outcode(x1, y1, right, bottom)
    c2 = _outcode(x2, y2, right, bottom)
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            x1, y1 = _slide(x1, y1, x2, y2, 0 if c1 < 8 else bottom)
            c1 = _outcode(x1, y1, right, bottom)
        if c2 & 12:
            x2, y2 = _slide(x2, y2, x1, y1, 0 if c2 < 8 else bottom)
            c2 = _outcode(x2, y2, right, bottom)
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:  # the same slide with x and y swapped: onto x = 0 or x = right
                y1, x1 = _slide(y1, x1, y2, x2, 0 if c1 == 1 else right)
                c1 = 0
            if c2:
                y2, x2 = _slide(y2, x2, y1, x1, 0 if c2 == 1 else right)
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
        x1, y1, x2, y2, dx, dy = x2, y2, x1, y1, -dx, -dy
    sy = 1 if dy >= 0 else -1
    dy = abs(dy)
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
                x += 1
        else:
            x += 1
            if minor:
                y += sy
    return False

