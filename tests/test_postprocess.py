"""Live parity of detector_np.postprocess and its primitives (detector_np.cv_ops) against
EasyOCR's craft_utils (OpenCV 5) in-process.

Every OpenCV primitive the reference uses is compared on its own (labelling, dilation, convex
hull, minAreaRect/boxPoints, getPerspectiveTransform, warpPerspective NEAREST, line), then the
whole getDetBoxes (poly False and True) on random and text-like score maps.
"""
import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import _easyocr_ref  # noqa: E402
from detector_np import cv_ops as C, postprocess as P  # noqa: E402

cu = _easyocr_ref.load("craft_utils")
if cu is None:
    pytest.skip("easyocr (installed with --no-deps) is needed for the reference", allow_module_level=True)

BOX_TOL = 1e-3  # px: cv2.boxPoints' float32 rounding differs from ours in the last ulps
SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)


# ------------------------------------------------------------------------------------------
# score-map generators

def blob_maps(seed, h, w, n_blobs, noise=True):
    """Random rotated rectangles / lines / near-squares as region and affinity maps."""
    rng = np.random.default_rng(seed)
    text = np.zeros((h, w), np.float32)
    link = np.zeros((h, w), np.float32)
    for _ in range(n_blobs):
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:    # word-like rotated rectangle
            size = (rng.uniform(4, 60), rng.uniform(3, 15))
        elif kind == 1:  # near-square (diamond fix)
            s = rng.uniform(3, 20)
            size = (s, s * rng.uniform(0.92, 1.08))
        elif kind == 2:  # thin line
            size = (rng.uniform(10, 80), 1)
        else:            # small speck (area filter)
            size = (rng.uniform(1, 4), rng.uniform(1, 4))
        pts = cv2.boxPoints(((cx, cy), size, rng.uniform(0, 180))).astype(np.int32)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [pts], 1)
        text = np.maximum(text, m * np.float32(rng.uniform(0.3, 1.0)))
        if rng.random() < 0.5:  # an affinity bar overlapping the blob, sometimes bridging two
            pts = cv2.boxPoints(((cx + rng.uniform(-15, 15), cy), (size[0] * 1.3, max(size[1] / 3, 1)),
                                 rng.uniform(0, 180))).astype(np.int32)
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [pts], 1)
            link = np.maximum(link, m * np.float32(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.7:
        text = cv2.GaussianBlur(text, (0, 0), rng.uniform(0.5, 2.5))
        link = cv2.GaussianBlur(link, (0, 0), 1.0)
    if noise and rng.random() < 0.3:
        text = text + rng.uniform(0, 0.45, (h, w)).astype(np.float32)
    return text.astype(np.float32), link.astype(np.float32)


def text_maps(seed, lines=("Handwritten notes", "parity is the product", "CRAFT 2026"),
              angle=0.0, scale=1.0):
    """Region/affinity-like maps from text rendered with Pillow: glyphs blurred into blobs,
    gaps between neighbouring glyphs bridged by a horizontally smeared copy."""
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    try:
        font = ImageFont.load_default(size=int(22 * scale))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    img = Image.new("L", (int(420 * scale), int(60 + 40 * len(lines) * scale)), 0)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((10 + rng.integers(0, 30), 10 + i * 40 * scale), line, fill=255, font=font)
    if angle:
        img = img.rotate(angle, expand=True, resample=Image.BILINEAR)
    a = np.asarray(img, np.float32) / 255
    text = cv2.GaussianBlur(a, (0, 0), 2.0 * scale)
    text = np.clip(text / max(text.max(), 1e-6) * 1.1, 0, 1).astype(np.float32)
    link = cv2.blur(a, (int(9 * scale), 3))
    link = np.clip(link * 1.5 - text * 0.5, 0, 1).astype(np.float32)
    return text, link


def curved_maps(seed, h, w):
    """Curved text lines (sinusoidal strokes of circles) that getPoly turns into polygons."""
    rng = np.random.default_rng(seed)
    text = np.zeros((h, w), np.float32)
    link = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 5)):
        x0 = rng.uniform(0, w * 0.4)
        length = rng.uniform(30, w * 0.8)
        y0 = rng.uniform(10, h - 10)
        amp = rng.uniform(0, 25)
        phase = rng.uniform(0, 6)
        r = int(rng.uniform(3, 12))
        xs = np.arange(int(x0), int(min(w - 1, x0 + length)))
        ys = y0 + amp * np.sin(xs / length * 3 + phase)
        for x, y in zip(xs[::2], ys[::2]):
            cv2.circle(text, (int(x), int(y)), r, float(rng.uniform(0.5, 1)), -1)
        cv2.polylines(link, [np.stack([xs, ys], 1).astype(np.int32)], False, 0.8, 2)
    return cv2.GaussianBlur(text, (0, 0), 2).astype(np.float32), link


# ------------------------------------------------------------------------------------------
# comparison helpers

def assert_boxes_equal(ref_boxes, our_boxes):
    assert len(ref_boxes) == len(our_boxes)
    for i, (a, b) in enumerate(zip(ref_boxes, our_boxes)):
        a = np.asarray(a, np.float64)
        assert b.shape == (4, 2) and b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=0, atol=BOX_TOL, err_msg=f"box {i}")


def assert_polys_equal(ref_polys, our_polys):
    assert len(ref_polys) == len(our_polys)
    for i, (a, b) in enumerate(zip(ref_polys, our_polys)):
        assert (a is None) == (b is None), f"poly {i}: reference {a is None}, ours {b is None}"
        if a is not None:
            assert b.shape == a.shape
            np.testing.assert_allclose(b, a, rtol=0, atol=BOX_TOL, err_msg=f"poly {i}")


def check_det_boxes(text, link, thresholds=(0.7, 0.4, 0.4), poly=False):
    ref = cu.getDetBoxes(text, link, *thresholds, poly=poly)
    ours = P.get_det_boxes(text, link, *thresholds, poly=poly)
    assert ours[2] == list(ref[2])  # mapper (component labels)
    assert_boxes_equal(ref[0], ours[0])
    assert_polys_equal(ref[1], ours[1])
    return ours


# ------------------------------------------------------------------------------------------
# primitives

masks = st.builds(
    lambda seed, h, w, p: (np.random.default_rng(seed).random((h, w)) < p).astype(np.uint8),
    st.integers(0, 2**32 - 1), st.integers(1, 70), st.integers(1, 70), st.floats(0.0, 1.0))


@SETTINGS
@given(masks)
def test_label_components_equals_opencv(mask):
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    n2, labels2, stats2 = C.label_components(mask)
    assert n2 == n
    np.testing.assert_array_equal(labels2, labels)
    np.testing.assert_array_equal(stats2, stats)


def test_label_components_edge_cases():
    for mask in (np.zeros((5, 7), np.uint8), np.ones((5, 7), np.uint8), np.ones((1, 1), np.uint8),
                 (np.indices((9, 9)).sum(0) % 2).astype(np.uint8)):  # checkerboard: 41 labels
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        n2, labels2, stats2 = C.label_components(mask)
        assert n2 == n
        np.testing.assert_array_equal(labels2, labels)
        np.testing.assert_array_equal(stats2, stats)
    with pytest.raises(ValueError):
        C.label_components(np.zeros((2, 2, 2)))


@SETTINGS
@given(masks, st.integers(1, 9))
def test_dilate_equals_opencv(mask, k):
    mask = mask * np.uint8(255)
    ref = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    np.testing.assert_array_equal(C.dilate_rect(mask, k), ref)


unique_points = st.builds(
    lambda seed, n, span: np.random.default_rng(seed).permutation(
        np.unique(np.random.default_rng(seed + 1).integers(0, span, (n, 2)), axis=0)).astype(np.int32),
    st.integers(0, 2**31), st.integers(1, 40), st.integers(1, 60))


@SETTINGS
@given(unique_points)
def test_convex_hull_order_equals_opencv(pts):
    ref = cv2.convexHull(pts, clockwise=False, returnPoints=False)[:, 0]
    ours = C._convex_hull(pts[:, 0].astype(np.int64), pts[:, 1].astype(np.int64),
                          np.arange(len(pts), dtype=np.int64))
    np.testing.assert_array_equal(ours, ref)


# OpenCV 4.x reports minAreaRect angles in (0, 90] with another start corner (the final CRAFT
# box is the same); our emulation is of OpenCV 5, where it is bit-exact.
opencv5 = pytest.mark.skipif(int(cv2.__version__.split(".")[0]) < 5,
                             reason="minAreaRect/boxPoints conventions of OpenCV 5 emulated")


def _assert_rect_equal(ref, ours):
    assert ours == ref  # center, size and angle: bit-exact float32 values


@opencv5
@settings(max_examples=150, deadline=None, derandomize=True)
@given(unique_points)
def test_min_area_rect_and_box_points_equal_opencv(pts):
    ref = cv2.minAreaRect(pts)
    ours = C.min_area_rect(pts)
    _assert_rect_equal(ref, ours)
    np.testing.assert_array_equal(C.box_points(ours), cv2.boxPoints(ref))


@pytest.mark.parametrize("pts", [
    [[3, 4]],                                    # one point
    [[0, 0], [3, 3]],                            # two points
    [[0, 0], [0, 5], [0, 2], [0, 9]],            # vertical segment
    [[5, 1], [1, 1], [3, 1]],                    # horizontal segment
    [[0, 0], [1, 1], [2, 2], [3, 3], [5, 5]],    # diagonal segment
    [[0, 0], [1, 0], [0, 1], [1, 1]],            # 2x2 square of pixels
    [[0, 0], [10, 10], [9, 11], [-1, 1]],        # exact 45 degrees
    [[2, 0], [4, 2], [2, 4], [0, 2]],            # diamond
])
@opencv5
def test_min_area_rect_degenerate(pts):
    pts = np.array(pts, np.int32)
    ref = cv2.minAreaRect(pts)
    ours = C.min_area_rect(pts)
    _assert_rect_equal(ref, ours)
    np.testing.assert_array_equal(C.box_points(ours), cv2.boxPoints(ref))
    with pytest.raises(ValueError):
        C.min_area_rect(np.zeros((3, 3)))


@SETTINGS
@given(st.integers(0, 2**31), st.booleans())
def test_perspective_transform_and_warp_equal_opencv(seed, integral):
    rng = np.random.default_rng(seed)
    box = cv2.boxPoints(((rng.uniform(0, 80), rng.uniform(0, 80)), (rng.uniform(5, 120), rng.uniform(5, 40)),
                         rng.uniform(-90, 0))).astype(np.float32)
    if integral:  # the diamond fix gives integer, axis-aligned boxes: exact .5 rounding ties
        box = np.round(box).astype(np.float32)
    w = int(np.linalg.norm(box[0] - box[1]) + 1)
    h = int(np.linalg.norm(box[1] - box[2]) + 1)
    tar = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(box, tar)
    np.testing.assert_array_equal(C._perspective_transform(box, tar), m)  # bit-exact
    labels = rng.integers(0, 3, (100, 110)).astype(np.int32)
    ref = cv2.warpPerspective(labels, m, (w, h), flags=cv2.INTER_NEAREST) == 1
    np.testing.assert_array_equal(C._warp_label_mask(labels, m, w, h, 1).astype(bool), ref)


@SETTINGS
@given(st.integers(0, 2**31))
def test_line_hits_equals_opencv_line(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        h, w = rng.integers(1, 50, 2)
        x1, y1, x2, y2 = (int(v) for v in rng.integers(-70, 110, 4))
        drawn = np.zeros((h, w), np.uint8)
        cv2.line(drawn, (x1, y1), (x2, y2), 1, thickness=1)
        # probing with every single pixel shows the drawn set is the same
        ys, xs = np.nonzero(drawn)
        assert C._line_hits(np.ones((h, w), np.uint8), x1, y1, x2, y2) == bool(len(xs))
        sparse = (rng.random((h, w)) < 0.1).astype(np.uint8)
        assert C._line_hits(sparse, x1, y1, x2, y2) == bool((sparse & drawn).any())
        probe = np.zeros((h, w), np.uint8)
        for y, x in list(zip(ys, xs))[:5]:
            probe[y, x] = 1
            assert C._line_hits(probe, x1, y1, x2, y2)
            probe[y, x] = 0


# ------------------------------------------------------------------------------------------
# getDetBoxes

@SETTINGS
@given(st.integers(0, 2**31), st.integers(8, 160), st.integers(8, 200), st.integers(0, 14))
def test_det_boxes_random_maps(seed, h, w, n_blobs):
    text, link = blob_maps(seed, h, w, n_blobs)
    check_det_boxes(text, link)


@SETTINGS
@given(st.integers(0, 2**31), st.sampled_from([(0.7, 0.4, 0.4), (0.5, 0.3, 0.2), (0.9, 0.6, 0.5),
                                               (0.3, 0.4, 0.5)]))
def test_det_boxes_thresholds(seed, thresholds):
    text, link = blob_maps(seed, 90, 120, 8)
    check_det_boxes(text, link, thresholds)


@opencv5  # OpenCV 4 breaks these ties its own way
@SETTINGS
@given(st.integers(0, 2**31))
def test_det_boxes_45_degree_ties(seed):
    """Boxes at exactly 45 degrees have two corners with equal x + y; which one starts the box
    is decided by float32 rounding in cv2.boxPoints, so it must be emulated bit for bit."""
    rng = np.random.default_rng(seed)
    text = np.zeros((120, 160), np.float32)
    for _ in range(6):
        pts = cv2.boxPoints(((rng.uniform(0, 160), rng.uniform(0, 120)), (rng.uniform(8, 70), rng.uniform(2, 12)),
                             rng.choice([45.0, 135.0, -45.0, rng.uniform(0, 180)]))).astype(np.int32)
        m = np.zeros(text.shape, np.uint8)
        cv2.fillPoly(m, [pts], 1)
        text = np.maximum(text, m * np.float32(0.9))
    check_det_boxes(text, np.zeros_like(text))


@pytest.mark.parametrize("angle", [0, 7, -15, 30, 90])
@pytest.mark.parametrize("scale", [0.7, 1.0, 1.6])
def test_det_boxes_text_maps(angle, scale):
    text, link = text_maps(int(scale * 10) + abs(angle), angle=angle, scale=scale)
    boxes, _, _ = check_det_boxes(text, link)
    assert len(boxes) >= 3  # the generator really makes words


def test_det_boxes_empty_and_flat_maps():
    z = np.zeros((40, 50), np.float32)
    assert P.get_det_boxes(z, z, 0.7, 0.4, 0.4) == ([], [], [])
    check_det_boxes(z, z)
    check_det_boxes(np.ones((40, 50), np.float32), z)          # one full-map component
    check_det_boxes(np.full((40, 50), 0.5, np.float32), z)     # below text_threshold


def test_det_boxes_touching_components():
    text = np.zeros((40, 60), np.float32)
    text[5:15, 5:25] = 0.9
    text[15:25, 5:25] = 0.8   # touches the first: one component
    text[5:15, 26:40] = 0.9   # a 1-px gap: separate
    link = np.zeros_like(text)
    link[8:12, 24:28] = 0.9   # bridges the gap with link-only pixels
    link[30:33, 10:30] = 0.9  # a link-only component: removed pixels leave an empty segmap
    check_det_boxes(text, link)
    check_det_boxes(text, link, (0.7, 0.95, 0.4))


def test_det_boxes_estimate_num_chars():
    text, link = text_maps(3)
    ref = cu.getDetBoxes(text, link, 0.7, 0.4, 0.4, estimate_num_chars=True)
    ours = P.get_det_boxes(text, link, 0.7, 0.4, 0.4, estimate_num_chars=True)
    assert ours[2] == list(ref[2])
    assert_boxes_equal(ref[0], ours[0])
    with pytest.raises(ValueError):
        P.get_det_boxes(text, link, 0.7, 0.4, 0.4, poly=True, estimate_num_chars=True)


def test_det_boxes_bad_input():
    with pytest.raises(ValueError, match="score maps"):
        P.get_det_boxes(np.zeros((4, 5), np.float32), np.zeros((5, 4), np.float32), 0.7, 0.4, 0.4)
    with pytest.raises(ValueError, match="score maps"):
        P.get_det_boxes(np.zeros((2, 4, 5), np.float32), np.zeros((2, 4, 5), np.float32), 0.7, 0.4, 0.4)


# ------------------------------------------------------------------------------------------
# getPoly

@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 2**31), st.integers(60, 200), st.integers(80, 260))
def test_polys_curved_maps(seed, h, w):
    check_det_boxes(*curved_maps(seed, h, w), poly=True)


def test_polys_make_curves():
    """The curved generator must exercise the polygon path, not only the None exits."""
    n_poly = 0
    for seed in range(6):
        _, polys, _ = check_det_boxes(*curved_maps(seed, 150, 220), poly=True)
        n_poly += sum(p is not None for p in polys)
    assert n_poly >= 3


@pytest.mark.parametrize("angle", [0, 20])
def test_polys_text_maps(angle):
    check_det_boxes(*text_maps(5, angle=angle, scale=1.3), poly=True)


@SETTINGS
@given(st.integers(0, 2**31))
def test_polys_random_maps(seed):
    check_det_boxes(*blob_maps(seed, 100, 140, 10), poly=True)


# ------------------------------------------------------------------------------------------
# adjustResultCoordinates

def test_adjust_result_coordinates_equals_reference():
    text, link = text_maps(1, angle=10)
    boxes, _, _ = P.get_det_boxes(text, link, 0.7, 0.4, 0.4)
    ratio = 1 / 1.2834
    ref = cu.adjustResultCoordinates(list(boxes), ratio, ratio)
    ours = P.adjust_result_coordinates(list(boxes), ratio, ratio)
    assert ours.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)
    assert len(P.adjust_result_coordinates([], ratio, ratio)) == 0


def test_adjust_result_coordinates_ragged():
    """The reference crashes on NumPy >= 1.24 when polygons and None are mixed; ours scales each
    entry exactly as the reference does for a homogeneous list."""
    for seed in range(20):  # a map with both polygons and None entries
        boxes, polys, _ = P.get_det_boxes(*curved_maps(seed, 150, 220), 0.7, 0.4, 0.4, poly=True)
        if any(p is None for p in polys) and any(p is not None for p in polys):
            break
    else:
        pytest.fail("no curved map gave a mix of polygons and None")
    with pytest.raises(ValueError):
        cu.adjustResultCoordinates(polys, 0.8, 0.8)
    ours = P.adjust_result_coordinates(polys, 0.8, 0.9)
    for p, q in zip(polys, ours):
        if p is None:
            assert q is None
        else:
            np.testing.assert_array_equal(q, cu.adjustResultCoordinates([p], 0.8, 0.9)[0])


# ------------------------------------------------------------------------------------------
# real CRAFT score maps (our network on the shipped tests/data/idcard.png)

@pytest.fixture(scope="module")
def idcard_maps():
    import os
    from PIL import Image
    path = os.path.join(os.path.dirname(__file__), "data", "idcard.png")
    if not os.path.exists(path):
        pytest.skip("tests/data/idcard.png missing")
    try:
        from detector_np import DetectOptions, detect, load_craft
        params = load_craft()
    except (ImportError, FileNotFoundError, ValueError) as e:
        pytest.skip(f"CRAFT weights/network unavailable: {e}")
    det = detect(np.asarray(Image.open(path).convert("RGB")), params, DetectOptions(canvas_size=640, mag_ratio=1.0))
    return det.score_text, det.score_link


@pytest.mark.parametrize("poly", [False, True])
@pytest.mark.parametrize("thresholds", [(0.7, 0.4, 0.4), (0.5, 0.3, 0.3)])
def test_det_boxes_real_craft_maps(idcard_maps, poly, thresholds):
    boxes, _, _ = check_det_boxes(*idcard_maps, thresholds, poly=poly)
    assert len(boxes) >= 20
