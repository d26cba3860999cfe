"""Pipeline geometry without models: perspective crops (vs OpenCV) and reading order on synthetic boxes."""
import numpy as np
import pytest

from trocr_np.crop import crop_quad, perspective_transform, quad_size, warp_perspective
from detector_np.layout import dominant_angle, reading_order

# OpenCV's warpPerspective (4.x) interpolates with 5-bit fixed-point weights, so a
# bilinear sample can differ from exact float math by up to 255 * 2/64 ~ 8 levels on
# noise images; on these inputs nearly every pixel must agree to within 1 level.
CV2_MAX_ABS_DIFF = 8
CV2_MAX_FRAC_OVER_1 = 0.01


def _rect_quad(cx, cy, w, h, angle=0.0):
    d = np.array([np.cos(angle), np.sin(angle)])
    n = np.array([-np.sin(angle), np.cos(angle)])
    c = np.array([cx, cy], float)
    return np.array([c - w / 2 * d - h / 2 * n, c + w / 2 * d - h / 2 * n,
                     c + w / 2 * d + h / 2 * n, c - w / 2 * d + h / 2 * n])


# ---------------------------------------------------------------- crops
def test_axis_aligned_quad_is_a_plain_crop():
    img = np.random.default_rng(0).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in [(10, 20, 60, 45), (0, 0, 140, 90), (139, 89, 140, 90), (5, 7, 6, 80)]:
        q = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        np.testing.assert_array_equal(crop_quad(img, q), img[y0:y1, x0:x1])
        np.testing.assert_array_equal(crop_quad(img[..., 0], q), img[y0:y1, x0:x1, 0])  # 2-D input


def test_crop_matches_opencv_warp_perspective():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    worst, frac = 0, 0.0
    for t in range(60):
        img = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
        q = _rect_quad(*rng.uniform([30, 20], [90, 60]), rng.uniform(10, 80), rng.uniform(5, 30),
                       rng.uniform(-0.6, 0.6)) + rng.normal(0, 1.5, (4, 2))  # rotated, slightly perspective
        h, w = quad_size(q)
        rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        # our edge coordinates -> OpenCV's pixel-centre coordinates: subtract 0.5 on both sides
        M = cv2.getPerspectiveTransform((q - 0.5).astype(np.float32), (rect - 0.5).astype(np.float32))
        for border, mode in (("replicate", cv2.BORDER_REPLICATE), ("constant", cv2.BORDER_CONSTANT)):
            ref = cv2.warpPerspective(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode,
                                      borderValue=(255, 255, 255))
            d = np.abs(crop_quad(img, q, border=border, fill=255).astype(int) - ref)
            worst, frac = max(worst, d.max()), max(frac, (d > 1).mean())
    assert worst <= CV2_MAX_ABS_DIFF and frac <= CV2_MAX_FRAC_OVER_1, (worst, frac)


def test_compiled_crop_equals_the_numpy_reference():
    # the Numba kernel repeats warp_perspective's float64 arithmetic in the same order: bit-exact
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for t in range(150):
        q = _rect_quad(*rng.uniform([-20, -20], [180, 140]), rng.uniform(3, 200), rng.uniform(2, 50),
                       rng.uniform(-1.5, 1.5)) + rng.normal(0, 2, (4, 2))  # partly outside the image too
        edges = np.roll(q, -1, 0) - q
        turns = edges[:, 0] * np.roll(edges, -1, 0)[:, 1] - edges[:, 1] * np.roll(edges, -1, 0)[:, 0]
        if not (np.all(turns > 0) or np.all(turns < 0)):  # the noise folded a thin quad: both refuse it
            for fast in (True, False):
                with pytest.raises(ValueError, match="self-intersecting"):
                    crop_quad(img, q, margin=0.1, fast=fast)
            continue
        for border in ("replicate", "constant"):
            fast = crop_quad(img, q, margin=0.1, border=border, fill=200)
            ref = crop_quad(img, q, margin=0.1, border=border, fill=200, fast=False)
            np.testing.assert_array_equal(fast, ref, err_msg=f"quad {t}, {border}")


def test_homography_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    src = np.array([[3, 4], [100, 10], [96, 50], [1, 40]], np.float32)
    dst = np.array([[0, 0], [97, 0], [97, 40], [0, 40]], np.float32)
    np.testing.assert_allclose(perspective_transform(src, dst), cv2.getPerspectiveTransform(src, dst),
                               rtol=1e-6, atol=1e-9)


def test_rotated_crop_samples_the_right_points():
    # On a linear ramp image bilinear sampling is exact, so the crop must equal the ramp
    # evaluated at the mapped centres of the output pixels.
    H, W = 120, 160
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 0.7 * xx + 0.3 * yy            # pixel (i, j) value at its centre (j + .5, i + .5)
    angle = np.deg2rad(25)
    q = _rect_quad(80, 60, 60, 20, angle)
    out = crop_quad(img, q)
    h, w = out.shape
    assert (h, w) == (20, 60)
    v, u = np.mgrid[0:h, 0:w] + 0.5
    d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    px = q[0, 0] + u * d[0] + v * n[0] - 0.5
    py = q[0, 1] + u * d[1] + v * n[1] - 0.5
    np.testing.assert_allclose(out, 0.7 * px + 0.3 * py, atol=1e-6)


def test_margin_extends_the_quad_along_its_own_sides():
    img = np.random.default_rng(2).integers(0, 256, (100, 100), dtype=np.uint8)
    q = [[30, 40], [70, 40], [70, 60], [30, 60]]
    out = crop_quad(img, q, margin=0.25)  # 0.25 * height 20 = 5 px on every side
    np.testing.assert_array_equal(out, img[35:65, 25:75])


def test_out_of_image_borders():
    img = np.full((10, 10), 7, np.uint8)
    q = [[-5, 0], [5, 0], [5, 10], [-5, 10]]
    assert (crop_quad(img, q, border="constant", fill=255)[:, :5] == 255).all()
    assert (crop_quad(img, q)[:, :5] == 7).all()  # replicate (default): no black/white bars
    with pytest.raises(ValueError, match="border"):
        warp_perspective(img, np.eye(3), (2, 2), border="wrap")


def test_degenerate_and_non_finite_quads():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="degenerate"):
        crop_quad(img, [[0, 0], [5, 0], [9, 0], [2, 0]])
    with pytest.raises(ValueError, match="non-finite"):
        crop_quad(img, [[0, 0], [5, 0], [5, np.nan], [0, 5]])


# ---------------------------------------------------------------- reading order
def _rotate(quads, angle, center=(300, 300)):
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    return (np.asarray(quads) - center) @ R.T + center


def _shuffled(quads, seed):
    perm = np.random.default_rng(seed).permutation(len(quads))
    return np.asarray(quads)[perm], perm


def _flat(rows):
    return [i for r in rows for i in r]


@pytest.mark.parametrize("deg", [0.0, -3.0, 2.0, 4.0])
def test_single_column_with_words_on_rows(deg):
    # 7 rows, each split into 1-3 segments (e.g. word groups the detector did not merge)
    quads, truth_rows = [], []
    for r in range(7):
        y = 60 + r * 40
        xs = [(40, 250), (270, 380), (400, 560)][: 1 + r % 3]
        truth_rows.append(list(range(len(quads), len(quads) + len(xs))))
        quads += [_rect_quad((a + b) / 2, y, b - a, 24) for a, b in xs]
    quads = _rotate(quads, np.deg2rad(deg))
    assert abs(np.rad2deg(dominant_angle(quads)) - deg) < 0.01
    shuffled, perm = _shuffled(quads, 3)
    rows = reading_order(shuffled)
    assert [[int(perm[i]) for i in r] for r in rows] == truth_rows


@pytest.mark.parametrize("deg", [0.0, 2.5, -2.0])
@pytest.mark.parametrize("uneven", [False, True])
def test_title_two_columns_footer(deg, uneven):
    title = [_rect_quad(300, 40, 480, 30)]
    n_left, n_right = (6, 4) if uneven else (5, 5)
    left = [_rect_quad(150, 100 + 36 * i, 220 - 20 * (i % 2), 24) for i in range(n_left)]
    # right column lines are offset by half a line: rows of the two columns do not align
    right = [_rect_quad(455, 118 + 36 * i, 230 - 30 * (i % 3), 24) for i in range(n_right)]
    footer = [_rect_quad(300, 100 + 36 * max(n_left, n_right) + 30, 500, 24)]
    quads = _rotate(title + left + right + footer, np.deg2rad(deg))
    shuffled, perm = _shuffled(quads, 5)
    order = [int(perm[i]) for i in _flat(reading_order(shuffled))]
    assert order == list(range(len(quads)))


def test_two_columns_aligned_rows_read_column_by_column():
    left = [_rect_quad(140, 80 + 40 * i, 200, 24) for i in range(5)]
    right = [_rect_quad(440, 80 + 40 * i, 200, 24) for i in range(5)]
    rows = reading_order(left + right)
    assert _flat(rows) == list(range(10))
    assert all(len(r) == 1 for r in rows)


def test_narrow_gap_is_not_a_gutter():
    # two segments per row separated by less than the gutter: one column, row by row
    quads = []
    for i in range(5):
        quads += [_rect_quad(140, 80 + 40 * i, 200, 24), _rect_quad(275, 80 + 40 * i, 50, 24)]  # gap 20 px < 1.5 * 24
    assert reading_order(quads) == [[2 * i, 2 * i + 1] for i in range(5)]


def test_reading_order_edge_cases():
    assert reading_order(np.zeros((0, 4, 2))) == []
    assert reading_order([_rect_quad(10, 10, 5, 5)]) == [[0]]
    same = [_rect_quad(50, 50, 40, 20)] * 3  # identical boxes: stable, no infinite recursion
    assert sorted(_flat(reading_order(same))) == [0, 1, 2]
