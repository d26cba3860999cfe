"""The fast post-processing (Numba) held equal to the readable reference, detector_np.postprocess_ref.

No OpenCV, no torch: this runs on a bare install. The OpenCV parity of the same code lives in
tests/test_postprocess.py. Score maps are drawn here with NumPy alone: random rotated bars,
ellipses and specks, touching and corner-touching components, thin and thick diagonals, maps
cut by the borders, empty, single-pixel, checkerboard and all-foreground maps.
"""
import math

import numpy as np
import pytest

from detector_np import cv_ops, postprocess, postprocess_ref as ref

THRESHOLDS = (0.7, 0.4, 0.4)  # text_threshold, link_threshold, low_text (CRAFT's defaults)


# ------------------------------------------------------------------------------------------
# score maps from NumPy alone

def bar(h, w, cx, cy, length, width, angle_deg):
    """(h, w) bool: pixel centres inside a rotated rectangle."""
    ys, xs = np.mgrid[0:h, 0:w]
    a = math.radians(angle_deg)
    u = (xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)
    v = -(xs - cx) * math.sin(a) + (ys - cy) * math.cos(a)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def ellipse(h, w, cx, cy, rx, ry):
    ys, xs = np.mgrid[0:h, 0:w]
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def blur(a, passes):
    """A few passes of a separable [1, 2, 1] / 4 filter (zero outside): a cheap Gaussian."""
    a = a.astype(np.float32)
    for _ in range(passes):
        for axis in (0, 1):
            p = np.pad(a, [(1, 1) if ax == axis else (0, 0) for ax in (0, 1)])
            lo, mid, hi = (np.take(p, range(i, i + a.shape[axis]), axis=axis) for i in range(3))
            a = ((lo + 2 * mid + hi) / 4).astype(np.float32)
    return a


def random_maps(seed, h=72, w=96):
    """Word-like bars, near-squares, ellipses, thin lines and specks; affinity bars across some."""
    rng = np.random.default_rng(seed)
    text = np.zeros((h, w), np.float32)
    link = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 9)):
        cx, cy, angle = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5), rng.uniform(0, 180)
        kind = rng.integers(0, 5)
        if kind == 0:    # word
            m = bar(h, w, cx, cy, rng.uniform(4, 50), rng.uniform(2, 12), angle)
        elif kind == 1:  # near-square (diamond rule)
            s = rng.uniform(3, 18)
            m = bar(h, w, cx, cy, s, s * rng.uniform(0.9, 1.1), angle)
        elif kind == 2:  # ellipse
            m = ellipse(h, w, cx, cy, rng.uniform(2, 15), rng.uniform(2, 15))
        elif kind == 3:  # thin line
            m = bar(h, w, cx, cy, rng.uniform(8, 60), rng.uniform(0.5, 1.5), angle)
        else:            # speck (size filter)
            m = bar(h, w, cx, cy, rng.uniform(1, 4), rng.uniform(1, 4), angle)
        text = np.maximum(text, m * np.float32(rng.uniform(0.3, 1.0)))
        if rng.random() < 0.5:  # an affinity bar across the blob, sometimes bridging two
            m = bar(h, w, cx + rng.uniform(-12, 12), cy, rng.uniform(5, 40), rng.uniform(1, 5), angle)
            link = np.maximum(link, m * np.float32(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.7:
        text, link = blur(text, rng.integers(1, 4)), blur(link, 1)
    if rng.random() < 0.3:
        text = text + rng.uniform(0, 0.45, (h, w)).astype(np.float32)
    return text, link


def structured_cases():
    """(name, text, link, thresholds) for the corner cases of the box rule."""
    h, w = 40, 56
    z = np.zeros((h, w), np.float32)
    one = np.ones((h, w), np.float32)
    yield "empty", z, z, THRESHOLDS
    px = z.copy()
    px[5, 5] = px[20, 30] = px[39, 55] = px[0, 0] = 1.0
    yield "single pixels", px, z, THRESHOLDS
    line10 = z.copy()
    line10[10, 3:13] = 1.0  # exactly 10 pixels: kept, a zero-height rectangle
    yield "10-pixel line", line10, z, THRESHOLDS
    touch = z.copy()
    touch[5:15, 5:20] = 0.9
    touch[15:25, 12:30] = 0.8   # shares an edge: one component
    touch[25:35, 30:45] = 0.95  # meets the previous one at a corner only: separate
    yield "touching", touch, z, THRESHOLDS
    yield "linked by affinity", touch * (touch > 0.85), (touch == 0.8) * one, THRESHOLDS
    diag = z.copy()
    for i in range(30):
        diag[5 + i, 10 + i] = 1.0           # 1-px 45-degree line: 4-connected it is 30 specks
        diag[5 + i, 40 - i // 2] = 1.0      # slope 2, also pixels apart
    yield "thin diagonals", diag, z, THRESHOLDS
    thick = z.copy()
    for i in range(30):
        thick[5 + i, 12 + i: 14 + i] = 1.0  # 2-px staircase: one exact 45-degree component
    yield "thick diagonal", thick, z, THRESHOLDS
    yield "thick diagonal + link", thick, np.roll(thick, 3, axis=1), THRESHOLDS
    border = z.copy()
    border[0:6, :] = border[:, 0:4] = border[-3:, 20:50] = border[15:25, -2:] = 0.9
    yield "borders", border, z, THRESHOLDS
    yield "all foreground", one, z, THRESHOLDS
    yield "all link", z + 0.75, one, (0.7, 0.4, 0.8)   # text below low_text everywhere
    yield "checkerboard", (np.indices((h, w)).sum(0) % 2).astype(np.float32), z, THRESHOLDS
    squares = z.copy()
    for x0, side in ((2, 10), (15, 11), (29, 12), (43, 9)):  # ratios around the 10% bound
        squares[5:5 + 10, x0:x0 + side] = 0.9
    squares[25:38, 3:16] = bar(13, 13, 6, 6, 9, 9, 45) * 0.9  # a 45-degree square
    yield "near squares", squares, z, THRESHOLDS
    sweep = np.zeros((150, 190), np.float32)  # rotated near-squares across the 10% bound
    for i in range(30):
        r, angle = 1.04 + 0.005 * i, 7 + 11 * i
        sweep = np.maximum(sweep, bar(150, 190, 18 + 31 * (i % 6), 16 + 29 * (i // 6),
                                      13, 13 / r, angle) * np.float32(0.9))
    yield "near-square sweep", sweep, z[:1, :1].repeat(150, 0).repeat(190, 1), THRESHOLDS
    big = z.copy()
    big[4:36, 8:48] = 1.0  # niter = int(sqrt(32) * 2) = 11: the window reaches the borders
    yield "big block", big, z, THRESHOLDS
    # text_threshold below low_text: a component made of link-only pixels has an empty segmap
    yield "empty segmap", (bar(h, w, 28, 20, 30, 6, 10) * 0.3).astype(np.float32), \
        bar(h, w, 28, 20, 30, 6, 10).astype(np.float32), (0.2, 0.4, 0.4)


STRUCTURED = list(structured_cases())


# ------------------------------------------------------------------------------------------
# the box rule

def assert_same_detection(text, link, thresholds, estimate_num_chars=False):
    boxes, labels, mapper = postprocess.get_det_boxes_core(text, link, *thresholds,
                                                           estimate_num_chars=estimate_num_chars)
    ref_boxes, ref_labels, ref_mapper = ref.det_boxes(text, link, *thresholds,
                                                      estimate_num_chars=estimate_num_chars)
    np.testing.assert_array_equal(labels, ref_labels)
    assert mapper.tolist() == ref_mapper
    assert boxes.shape == (len(ref_boxes), 4, 2) and boxes.dtype == np.float32
    for i, (ours, theirs) in enumerate(zip(boxes, ref_boxes)):
        # the same primitives on the same points: bit-identical, not merely close
        np.testing.assert_array_equal(ours, theirs, err_msg=f"box {i}")
    return len(ref_boxes)


@pytest.mark.parametrize("seed", range(60))
def test_boxes_random_maps(seed):
    text, link = random_maps(seed)
    rng = np.random.default_rng(1000 + seed)
    thresholds = THRESHOLDS if seed % 3 else tuple(rng.uniform(0.2, 0.8, 3))
    assert_same_detection(text, link, thresholds)


def test_random_maps_give_boxes():
    """The random maps above exercise the box rule, not only its filters."""
    counts = [len(ref.det_boxes(*random_maps(seed), *THRESHOLDS)[0]) for seed in range(20)]
    assert sum(counts) >= 20 and sum(c > 0 for c in counts) >= 10


@pytest.mark.parametrize("name, text, link, thresholds", STRUCTURED, ids=[c[0] for c in STRUCTURED])
def test_boxes_structured_maps(name, text, link, thresholds):
    n = assert_same_detection(text, link, thresholds)
    assert (n == 0) == (name in ("empty", "single pixels", "thin diagonals", "checkerboard"))


@pytest.mark.parametrize("seed", range(12))
def test_estimate_num_chars(seed):
    text, link = random_maps(seed)
    assert_same_detection(text, link, THRESHOLDS, estimate_num_chars=True)


def test_get_det_boxes_wraps_the_core():
    text, link = random_maps(12)
    boxes, polys, mapper = postprocess.get_det_boxes(text, link, *THRESHOLDS)
    ref_boxes, _, ref_mapper = ref.det_boxes(text, link, *THRESHOLDS)
    assert len(boxes) == len(ref_boxes) > 0 and polys == [None] * len(boxes)
    assert mapper == ref_mapper
    for ours, theirs in zip(boxes, ref_boxes):
        np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------------------------------
# the primitives

def random_masks():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(1, 30, 2)
        yield rng.random((h, w)) < rng.uniform(0.05, 0.9)
    text, link = random_maps(3)
    yield (text > 0.4) | (link > 0.4)
    yield np.ones((7, 9), bool)
    yield np.zeros((7, 9), bool)
    yield np.indices((9, 13)).sum(0) % 2 == 0
    yield np.ones((1, 1), bool)
    yield np.zeros((1, 1), bool)


@pytest.mark.parametrize("i, mask", list(enumerate(random_masks())))
def test_label_components(i, mask):
    n, labels, stats = cv_ops.label_components(mask)
    ref_n, ref_labels, ref_stats = ref.label4(mask)
    assert n == ref_n
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(stats, ref_stats)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8, 13])
def test_dilate_rect(k):
    for mask in random_masks():
        np.testing.assert_array_equal(cv_ops.dilate_rect(mask.astype(np.uint8), k), ref.dilate(mask, k))


def random_point_sets():
    rng = np.random.default_rng(1)
    for i in range(150):
        n = int(rng.integers(1, 60))
        span = int(rng.choice([2, 5, 40, 300]))
        pts = rng.integers(0, span, (n, 2))
        if i % 10 == 0:
            pts[:, 1] = pts[:, 0] * 2 + 3  # collinear
        yield pts
    yield np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [2, 0], [0, 0]])  # square, extras
    yield np.array([[3, 3]] * 5)                                              # one point


@pytest.mark.parametrize("i, pts", list(enumerate(random_point_sets())))
def test_convex_hull_and_min_area_rect(i, pts):
    """cv_ops' hull is Andrew's hull, only started where OpenCV starts it; its minAreaRect is a
    rectangle of the smallest area that holds every point."""
    idx = cv_ops._convex_hull(pts[:, 0].astype(np.int64), pts[:, 1].astype(np.int64),
                              np.arange(len(pts), dtype=np.int64))
    ours = [tuple(p) for p in pts[idx].tolist()]
    theirs = ref.convex_hull(pts)
    assert len(ours) == len(theirs)
    start = theirs.index(ours[0])
    assert ours == theirs[start:] + theirs[:start]

    (cx, cy), (w, h), angle = cv_ops.min_area_rect(pts)
    assert -90 <= angle < 0
    np.testing.assert_allclose(w * h, ref.min_rect_area(pts), rtol=1e-5, atol=1e-6)
    # every point inside the rectangle (up to float32 rounding of its centre and sides)
    a = math.radians(angle)
    u = (pts[:, 0] - cx) * math.cos(a) + (pts[:, 1] - cy) * math.sin(a)
    v = -(pts[:, 0] - cx) * math.sin(a) + (pts[:, 1] - cy) * math.cos(a)
    slack = 1e-4 * max(1.0, float(np.abs(pts).max()))
    assert np.all(np.abs(u) <= w / 2 + slack) and np.all(np.abs(v) <= h / 2 + slack)
