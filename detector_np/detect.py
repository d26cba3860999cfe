"""`detect`: image -> CRAFT word (or, with the LinkRefiner, line) boxes in original image coordinates.

The steps of clovaai/CRAFT-pytorch `test.py::test_net` (EasyOCR `detection.py::get_textbox` is the
same with other defaults): resize onto a padded canvas, normalise, run CRAFT, optionally replace the
link map by the RefineNet's output (which also turns polygons on, as `test.py --refine` does),
threshold and group the maps into boxes (`detector_np.postprocess`), and scale back by the resize
ratio and the network's factor 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .craft import craft_forward
from .postprocess import adjust_result_coordinates, get_det_boxes
from .preprocess import normalize_mean_variance, resize_aspect_ratio
from .refiner import refiner_forward
from .weights import load_craft, load_refiner


@dataclass
class Detection:
    """What `detect` returns. Coordinates are (x, y) in pixels of the original image.

    boxes: (N, 4, 2) float32, corners clockwise from the top-left (TL, TR, BR, BL).
    polys: list of N (K, 2) float32 polygons (a 14-point polygon for curved text when poly=True,
           else the box itself).
    score_text, score_link: (h, w) float32 maps at half the canvas resolution (score_link is the
           refined one when a refiner was used).
    ratio: the resize factor applied to the image before the network (canvas pixels per image pixel).
    """
    boxes: np.ndarray
    polys: list = field(default_factory=list)
    score_text: np.ndarray | None = None
    score_link: np.ndarray | None = None
    ratio: float = 1.0


_default_params = None


def _default_craft():
    global _default_params
    if _default_params is None:
        _default_params = load_craft()
    return _default_params


def as_rgb_array(image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a path, bytes, file object, PIL image or array.

    An (H, W, 3) uint8 array is used as is (taken to be RGB, like the reference's `loadImage`
    output); anything else goes through `trocr_np.image_io.load_image` (EXIF rotation, any mode).
    """
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    from trocr_np.image_io import load_image

    return np.asarray(load_image(image).convert("RGB"))


def automatic_size_threshold(boxes: np.ndarray) -> float:
    """The rule behind size_threshold=-1: half the median box height, and at least 3 px.

    Text on a page comes in a few sizes; fragments whose longer side is below half the typical
    text height are specks, dots and noise, not words. Scale-free, so it works at any resolution.
    """
    if len(boxes) == 0:
        return 0.0
    heights = np.minimum(np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1),
                         np.linalg.norm(boxes[:, 2] - boxes[:, 1], axis=1))    # short side of each box
    return max(3.0, 0.5 * float(np.median(heights)))


def detect(image, params=None, *, canvas_size=1280, mag_ratio=1.5, width=None, text_threshold=0.7,
           link_threshold=0.4, low_text=0.4, poly=False, refiner=None, size_threshold=-1) -> Detection:
    """Detect text in `image` with CRAFT (and the LinkRefiner when `refiner` is given).

    image: path, bytes, PIL image or (H, W[, C]) array; params: CRAFT params, or the path of CRAFT
    weights (default `load_craft()`: craft_mlt_25k);
    canvas_size, mag_ratio: the image's long side is scaled by mag_ratio, capped at canvas_size;
    width: instead scale the image to exactly this width (overrides canvas_size and mag_ratio);
    text_threshold, link_threshold, low_text: the reference's thresholds;
    poly: also fit polygons to curved text; refiner: RefineNet params or the path of its weights
    (then score_link is the refined map and poly is on, as in CRAFT `test.py --refine`);
    size_threshold: drop boxes whose longer side is below this many original-image pixels;
    0 keeps everything (the reference's behaviour), -1 is `automatic_size_threshold`.
    """
    if params is None:
        params = _default_craft()
    elif isinstance(params, (str, bytes)) or hasattr(params, "__fspath__"):
        params = load_craft(params)                              # a .pth or converted .safetensors
    if isinstance(refiner, (str, bytes)) or hasattr(refiner, "__fspath__"):
        refiner = load_refiner(refiner)
    for name, v in (("canvas_size", canvas_size), ("width", width if width is not None else 1)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not mag_ratio > 0:
        raise ValueError(f"mag_ratio must be positive, got {mag_ratio!r}")
    if size_threshold < 0 and size_threshold != -1:
        raise ValueError(f"size_threshold must be >= 0, or -1 for automatic; got {size_threshold!r}")

    img = as_rgb_array(image)
    canvas, ratio, _ = resize_aspect_ratio(img, canvas_size, mag_ratio, width)
    x = normalize_mean_variance(canvas)                          # (H32, W32, 3)
    y, feature = craft_forward(params, x)                        # (h, w, 2), (h, w, 32)
    score_text = np.ascontiguousarray(y[:, :, 0])
    score_link = np.ascontiguousarray(y[:, :, 1])
    if refiner is not None:
        score_link = np.ascontiguousarray(refiner_forward(refiner, y, feature)[:, :, 0])
        poly = True
    del feature

    boxes, polys, _ = get_det_boxes(score_text, score_link, text_threshold, link_threshold, low_text, poly=poly)
    inv = 1 / ratio
    boxes = np.asarray(adjust_result_coordinates(boxes, inv, inv), np.float32).reshape(-1, 4, 2)
    polys = adjust_result_coordinates(polys, inv, inv)
    polys = [np.asarray(boxes[k] if p is None else p, np.float32) for k, p in enumerate(polys)]

    if size_threshold == -1:
        size_threshold = automatic_size_threshold(boxes)
    if size_threshold and len(boxes):
        long_side = np.maximum(np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1),
                               np.linalg.norm(boxes[:, 2] - boxes[:, 1], axis=1))
        keep = long_side >= size_threshold
        boxes = boxes[keep]
        polys = [p for p, k in zip(polys, keep) if k]
    return Detection(boxes=boxes, polys=polys, score_text=score_text, score_link=score_link, ratio=ratio)
