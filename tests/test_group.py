"""detector_np.group against easyocr.utils.group_text_box, run in-process."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
cv2 = pytest.importorskip("cv2")
from hypothesis import given, settings, strategies as st  # noqa: E402

import _easyocr_ref  # noqa: E402
from detector_np import postprocess as P  # noqa: E402
from detector_np.group import group_text_box  # noqa: E402
from detector_np.lines import LineOptions, group_lines  # noqa: E402

EASYOCR = LineOptions(method="easyocr")

ut = _easyocr_ref.load("utils")
if ut is None:
    pytest.skip("easyocr (installed with --no-deps) and its deps are needed", allow_module_level=True)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


def random_word_boxes(seed, n):
    """int32 boxes as EasyOCR's detector hands them over: words on a few text lines, some
    tilted, some overlapping, some tiny, clockwise from the top-left corner."""
    rng = np.random.default_rng(seed)
    line_ys = rng.uniform(20, 600, rng.integers(1, 5))
    boxes = []
    for _ in range(n):
        cy = rng.choice(line_ys) + rng.normal(0, 4)
        angle = rng.choice([0.0, -90.0, rng.uniform(-90, 0), rng.uniform(-5, 0)])
        size = (rng.uniform(3, 160), rng.uniform(3, 45))
        b = cv2.boxPoints(((rng.uniform(0, 900), cy), size, angle))
        b = np.roll(b, -int(b.sum(1).argmin()), 0)
        boxes.append(b.astype(np.int32).reshape(-1))
    return boxes


def assert_lists_equal(ref, ours):
    assert len(ref) == len(ours)
    for a, b in zip(ref, ours):
        np.testing.assert_array_equal(np.asarray(b, np.float64), np.asarray(a, np.float64))


params = st.fixed_dictionaries({
    "slope_ths": st.sampled_from([0.1, 0.05, 0.3]),
    "ycenter_ths": st.floats(0.1, 1.5),
    "height_ths": st.floats(0.1, 1.5),
    "width_ths": st.floats(0.0, 2.0),
    "add_margin": st.floats(0.0, 0.3),
    "sort_output": st.booleans(),
})


@SETTINGS
@given(st.integers(0, 2**31), st.integers(0, 30), params)
def test_group_text_box_equals_easyocr(seed, n, kw):
    boxes = random_word_boxes(seed, n)
    ref = ut.group_text_box(boxes, **kw)
    ours = group_text_box(boxes, **kw)
    assert_lists_equal(ref[0], ours[0])
    assert_lists_equal(ref[1], ours[1])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.floats(-50, 1000, allow_nan=False), min_size=8, max_size=8), max_size=12))
def test_group_text_box_float_boxes(polys):
    """Arbitrary (even non-rectangular) float quads give the same numbers too."""
    polys = [np.array(p) for p in polys]
    kw = dict(slope_ths=0.1, ycenter_ths=0.5, height_ths=0.5, width_ths=0.5, add_margin=0.1)
    ref = ut.group_text_box(polys, **kw)
    ours = group_text_box(polys, **kw)
    assert_lists_equal(ref[0], ours[0])
    assert_lists_equal(ref[1], ours[1])


def test_group_text_box_defaults_are_readers():
    boxes = random_word_boxes(0, 20)
    ref = ut.group_text_box(boxes, 0.1, 0.5, 0.5, 0.5, 0.1, True)  # Reader.detect's values
    ours = group_text_box(boxes)
    assert_lists_equal(ref[0], ours[0])
    assert_lists_equal(ref[1], ours[1])
    assert group_text_box([]) == ([], [])
    with pytest.raises(ValueError, match="8 coordinates"):
        group_text_box([np.zeros(6)])


def _reader_detect_lines(boxes, min_size=20):
    """What easyocr.Reader.detect does after the detector: int32 boxes -> group -> min_size."""
    polys = [np.array(b).astype(np.int32).reshape(-1) for b in boxes]
    h, f = ut.group_text_box(polys, 0.1, 0.5, 0.5, 0.5, 0.1, True)
    h = [i for i in h if max(i[1] - i[0], i[3] - i[2]) > min_size]
    f = [i for i in f if max(ut.diff([c[0] for c in i]), ut.diff([c[1] for c in i])) > min_size]
    return h, f


@pytest.mark.parametrize("seed", range(6))
def test_easyocr_lines_from_detector_boxes(seed):
    """Word boxes from get_det_boxes (scaled to image pixels) -> the lines EasyOCR would crop."""
    import test_postprocess as tp
    text, link = tp.text_maps(seed, angle=[0, 3, 25][seed % 3], scale=1.0 + 0.2 * seed)
    boxes, _, _ = P.get_det_boxes(text, link, 0.7, 0.4, 0.4)
    boxes = P.adjust_result_coordinates(boxes, 1.3, 1.3)
    h, f = _reader_detect_lines(boxes)
    quads = group_lines(boxes, EASYOCR)
    assert quads.shape == (len(h) + len(f), 4, 2) and quads.dtype == np.float32
    for (x0, x1, y0, y1), q in zip(h, quads):
        np.testing.assert_array_equal(q, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    for fq, q in zip(f, quads[len(h):]):
        np.testing.assert_array_equal(q, np.float32(fq))
    assert len(quads) > 0


def test_easyocr_lines_merge_words_of_a_line():
    words = np.float32([[[10, 10], [50, 10], [50, 30], [10, 30]],
                        [[55, 11], [90, 11], [90, 31], [55, 31]],
                        [[10, 60], [80, 60], [80, 82], [10, 82]]])
    quads = group_lines(words, EASYOCR)
    assert len(quads) == 2  # first two words on one line
    assert quads[0][0][0] < 10 and quads[0][1][0] > 90
    assert group_lines(np.zeros((0, 4, 2)), EASYOCR).shape == (0, 4, 2)
    with pytest.raises(ValueError):
        group_lines(np.zeros((3, 8)), EASYOCR)
