"""detector_np.draw.draw_regions: colour on every region, rotated vs axis-aligned, fill, numbers, bad input."""
import numpy as np
import pytest
from PIL import Image

from detector_np.draw import draw_regions

RED = (255, 0, 0)


def _quad(cx, cy, w, h, deg):
    a = np.deg2rad(deg)
    d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c = np.array([cx, cy])
    return np.array([c - w / 2 * d - h / 2 * n, c + w / 2 * d - h / 2 * n, c + w / 2 * d + h / 2 * n,
                     c - w / 2 * d + h / 2 * n])


def _is(a, rgb):
    return np.all(a == np.array(rgb, np.uint8), axis=-1)


def _near_edges(mask_hw, quad, tol):
    """Which of the True pixels lie within tol px of the polygon's edges."""
    ys, xs = np.nonzero(mask_hw)
    p = np.stack([xs + 0.5, ys + 0.5], 1)
    best = np.full(len(p), np.inf)
    for a, b in zip(quad, np.roll(quad, -1, 0)):
        t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        best = np.minimum(best, np.hypot(*(p - (a + t[:, None] * (b - a))).T))
    return best <= tol


def test_outline_colour_on_every_region_and_nowhere_else():
    img = np.full((200, 300, 3), 255, np.uint8)
    quads = [_quad(80, 50, 100, 30, 0), _quad(200, 120, 120, 40, 12), _quad(90, 160, 80, 25, -8)]
    out = np.asarray(draw_regions(img, quads, color=RED, width=3))
    red = _is(out, RED)
    assert red.sum() > 0
    on_some_edge = np.zeros(red.sum(), bool)
    for q in quads:
        near = _near_edges(red, q, 3)
        on_some_edge |= near
        assert near.sum() > 2 * np.hypot(*(q[1] - q[0])), "each region gets an outline along its sides"
    assert on_some_edge.all(), "no red pixel away from the polygons"
    assert (np.asarray(img) == 255).all(), "input not modified"


def test_pil_input_and_colour_names():
    img = Image.new("L", (60, 40), 255)
    out = draw_regions(img, [_quad(30, 20, 40, 20, 0)], color="blue", width=1)
    assert out.mode == "RGB" and out.size == (60, 40) and img.mode == "L"
    assert _is(np.asarray(out), (0, 0, 255)).sum() > 100


def test_axis_aligned_mode_draws_bounding_rectangles():
    img = np.full((200, 200, 3), 255, np.uint8)
    q = _quad(100, 100, 120, 30, 20)
    rot = _is(np.asarray(draw_regions(img, [q], width=1, rotated=True)), RED)
    box = _is(np.asarray(draw_regions(img, [q], width=1, rotated=False)), RED)
    (x0, y0), (x1, y1) = np.floor(q.min(0)).astype(int), np.floor(q.max(0)).astype(int)
    # rotated=False: the bounding rectangle's corners are red, and every red pixel is on it
    for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]:
        assert box[y, x]
    ys, xs = np.nonzero(box)
    assert np.all((np.abs(xs - x0) <= 1) | (np.abs(xs - x1) <= 1) | (np.abs(ys - y0) <= 1) | (np.abs(ys - y1) <= 1))
    assert not rot[y0, x0]  # the rotated outline does not pass through the bbox corner


def test_fill_blends_with_alpha():
    img = np.full((50, 80, 3), 255, np.uint8)
    q = [[10, 10], [70, 10], [70, 40], [10, 40]]
    out = np.asarray(draw_regions(img, [q], color=RED, width=0, fill=(0, 0, 255, 128)))
    inside = out[20:30, 20:60].reshape(-1, 3)
    assert np.all(np.abs(inside.astype(int) - [127, 127, 255]) <= 1)  # 50% blue over white
    assert (out[45:, :] == 255).all() and not _is(out, RED).any()      # width=0: no outline


def test_numbers_are_drawn_near_each_region():
    img = np.full((200, 300, 3), 255, np.uint8)
    quads = [_quad(150, 60, 200, 30, 0), _quad(150, 140, 200, 30, 0)]
    plain = np.asarray(draw_regions(img, quads, width=2))
    numbered = np.asarray(draw_regions(img, quads, width=2, numbers=True))
    diff = np.any(plain != numbered, axis=-1)
    for q in quads:
        x0, y0 = q.min(0).astype(int)
        assert diff[max(0, y0 - 30):y0 + 5, x0:x0 + 40].any(), "a label near the top-left corner"


def test_bad_inputs():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="region 0"):
        draw_regions(img, [[[0, 0], [1, 1]]])
    with pytest.raises(ValueError, match="region 1"):
        draw_regions(img, [_quad(5, 5, 4, 4, 0), [[0, 0], [1, np.nan], [2, 2]]])
    with pytest.raises(ValueError, match="color"):
        draw_regions(img, [], color=(300, 0, 0))
    with pytest.raises(ValueError, match="uint8"):
        draw_regions(img.astype(np.float32), [])
    assert np.array_equal(np.asarray(draw_regions(img, [])), img)  # nothing to draw: a plain copy
