"""CRAFT pre-processing against OpenCV and the reference `imgproc.py`, byte for byte.

`resize_linear_u8` must equal `cv2.resize(..., INTER_LINEAR)` exactly on uint8 images (it is
not float bilinear: ~13% of pixels would differ by 1), including the exact-2x downscale where
OpenCV silently switches to INTER_AREA.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _reference import rendered_text_image, real_image, require_reference
from detector_np.preprocess import normalize_mean_variance, resize_aspect_ratio, resize_linear_u8, target_size

cv2 = pytest.importorskip("cv2")


def cv2_resize(img, w, h):
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, *img.shape[2:])


def random_image(seed, h, w, c):
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:   # smooth gradients + noise: exercises the rounding, not only saturation
        yy, xx = np.mgrid[:h, :w]
        base = (xx * 255 // max(w, 1) + yy * 7) % 256
        img = (base[..., None] + rng.integers(0, 20, (h, w, c))) % 256
        return img.astype(np.uint8)
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8)


@settings(max_examples=400, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), th=st.integers(1, 150), tw=st.integers(1, 150),
       c=st.sampled_from([1, 3, 4]), seed=st.integers(0, 2**31))
def test_resize_matches_cv2(h, w, th, tw, c, seed):
    img = random_image(seed, h, w, c)
    np.testing.assert_array_equal(resize_linear_u8(img, tw, th), cv2_resize(img, tw, th))


@settings(max_examples=100, deadline=None)
@given(th=st.integers(1, 60), tw=st.integers(1, 60), c=st.sampled_from([1, 3]), seed=st.integers(0, 2**31))
def test_resize_exact_half_matches_cv2(th, tw, c, seed):
    """2x down in both axes: OpenCV's INTER_AREA fast path, (sum of 2x2 + 2) >> 2."""
    img = random_image(seed, 2 * th, 2 * tw, c)
    np.testing.assert_array_equal(resize_linear_u8(img, tw, th), cv2_resize(img, tw, th))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(2, 40), w=st.integers(2, 40), fy=st.sampled_from([2, 3, 4]), fx=st.sampled_from([2, 3, 4]),
       seed=st.integers(0, 2**31))
def test_resize_integer_upscale_and_2d_input(h, w, fy, fx, seed):
    img = random_image(seed, h, w, 1)[:, :, 0]             # (H, W) in, (h, w) out, like cv2
    out = resize_linear_u8(img, w * fx, h * fy)
    assert out.shape == (h * fy, w * fx)
    np.testing.assert_array_equal(out, cv2.resize(img, (w * fx, h * fy), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("size", [(1280, 806), (640, 403), (500, 315), (1999, 1259), (393, 250)])
def test_resize_real_photo(size):
    img = real_image("idcard2.jpg")
    np.testing.assert_array_equal(resize_linear_u8(img, *size), cv2_resize(img, *size))


@pytest.mark.parametrize("size", [(1280, 806), (333, 121), (720, 458)])
def test_resize_rendered_text(size):
    img = rendered_text_image(["The quick brown fox", "jumps over 13 lazy dogs."], font_size=30, angle=7)
    np.testing.assert_array_equal(resize_linear_u8(img, *size), cv2_resize(img, *size))


@pytest.mark.parametrize("canvas_size,mag_ratio", [(1280, 1.5), (2560, 1.0), (640, 1.5), (300, 0.7), (512, 2.0)])
@pytest.mark.parametrize("name", ["rendered", "idcard.png", "french.jpg"])
def test_resize_aspect_ratio_matches_imgproc(name, canvas_size, mag_ratio):
    ref = require_reference()
    img = rendered_text_image(["Hello, world", "second line"], 24, angle=-4) if name == "rendered" else real_image(name)
    ours = resize_aspect_ratio(img, canvas_size, mag_ratio)
    theirs = ref.imgproc.resize_aspect_ratio(img, canvas_size, cv2.INTER_LINEAR, mag_ratio)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1] == theirs[1] and ours[2] == theirs[2]
    np.testing.assert_array_equal(normalize_mean_variance(ours[0]), ref.imgproc.normalizeMeanVariance(theirs[0]))


def test_canvas_padding_and_normalisation():
    img = np.full((50, 70, 3), 200, np.uint8)
    canvas, ratio, heatmap = resize_aspect_ratio(img, 1280, 1.5)
    assert (ratio, canvas.shape, heatmap) == (1.5, (96, 128, 3), (64, 48))   # 75x105 padded to 96x128
    assert canvas[:75, :105].min() == 200 and canvas[75:].max() == 0 and canvas[:, 105:].max() == 0
    x = normalize_mean_variance(canvas)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[-1, -1], -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]), rtol=1e-6)


def test_target_size_truncates_and_width_option():
    assert target_size(630, 1000, 1280, 1.5) == (806, 1280, 1.28)          # capped at the canvas
    assert target_size(630, 1000, 2560, 1.0)[:2] == (630, 1000)
    h, w, r = target_size(500, 786, 1280, 1.5, new_width=720)             # craft-text-detector's long_size
    assert (h, w) == (int(500 * 720 / 786), int(786 * 720 / 786)) and r == 720 / 786


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_u8(np.zeros((4, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_linear_u8(np.zeros((4, 4), np.uint8), 0, 2)
    with pytest.raises(ValueError, match="shape"):
        resize_linear_u8(np.zeros((0, 4, 3), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="too small"):
        resize_aspect_ratio(np.zeros((1, 400, 3), np.uint8), 100, 1.0)
