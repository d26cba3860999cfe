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

from ocr_base.geometry import side_lengths
from ocr_base.image_io import load_image

from .craft import craft_forward
from .postprocess import adjust_result_coordinates, get_det_boxes
from .preprocess import MAX_CANVAS, normalize_mean_variance, resize_aspect_ratio
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
    refined: whether the LinkRefiner made score_link (then boxes are whole lines, not words).
    """
    boxes: np.ndarray
    polys: list = field(default_factory=list)
    score_text: np.ndarray | None = None
    score_link: np.ndarray | None = None
    ratio: float = 1.0
    refined: bool = False



@dataclass(frozen=True)
class DetectOptions:
    """Every setting of `detect`, each default written once (CRAFT-pytorch `test.py`'s CLI defaults).

    canvas_size, mag_ratio: the image's long side is scaled by mag_ratio, capped at canvas_size.
    width:          instead scale the image to exactly this width (overrides canvas_size and mag_ratio).
    Bounds: canvas_size and width <= MAX_CANVAS (4096), mag_ratio <= 16, and the canvas itself at most
    4096 x 4096 pixels (a tall image at a given width is refused): CRAFT peaks at ~450-600 bytes per
    canvas pixel, so the largest legal canvas needs ~8-10 GB.
    text_threshold: a component is kept if its peak region score reaches this (CRAFT's text_threshold).
    link_threshold: affinity score above which neighbouring characters are joined into one word.
    low_text:       region score above which a pixel belongs to a character's area.
    poly:           also fit polygons to curved text.
    size_threshold: drop boxes whose longer side is below this many original-image pixels;
                    0 keeps everything (the reference's behaviour), -1 is `automatic_size_threshold`.
    refiner:        path of LinkRefiner weights (.pth or converted .safetensors), or None: with it the
                    refined link map joins whole lines, and poly is on (as in CRAFT `test.py --refine`).
    """
    canvas_size: int = 1280
    mag_ratio: float = 1.5
    width: int | None = None
    text_threshold: float = 0.7
    link_threshold: float = 0.4
    low_text: float = 0.4
    poly: bool = False
    size_threshold: float = -1
    refiner: str | None = None

    def __post_init__(self):
        def bad(name, what):
            raise ValueError(f"DetectOptions.{name} must be {what}; got {getattr(self, name)!r}")
        for name in ("canvas_size", "width"):
            v = getattr(self, name)
            if v is None and name == "width":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_CANVAS:
                bad(name, f"an integer from 1 to {MAX_CANVAS}")
        if isinstance(self.mag_ratio, bool) or not isinstance(self.mag_ratio, (int, float)) \
                or not 0 < self.mag_ratio <= 16:
            bad("mag_ratio", "a number in (0, 16]")
        for name in ("text_threshold", "link_threshold", "low_text"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                bad(name, "a number from 0 to 1")
        if not isinstance(self.poly, bool):
            bad("poly", "True or False")
        v = self.size_threshold
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 or v == -1) or v == float("inf"):
            bad("size_threshold", "a number >= 0, or -1 for automatic")
        if self.refiner is not None and not isinstance(self.refiner, (str, bytes)) \
                and not hasattr(self.refiner, "__fspath__"):
            bad("refiner", "a path or None")


_default_params = None


def _default_craft():
    global _default_params
    if _default_params is None:
        _default_params = load_craft()
    return _default_params


def as_rgb_array(image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a path, bytes, file object, PIL image or array.

    An (H, W, 3) uint8 array is used as is (taken to be RGB, like the reference's `loadImage`
    output); anything else goes through `ocr_base.image_io.load_image` (EXIF rotation, any mode).
    """
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return np.asarray(load_image(image).convert("RGB"))


def automatic_size_threshold(boxes: np.ndarray) -> float:
    """The rule behind size_threshold=-1: half the median box height, and at least 3 px.

    Text on a page comes in a few sizes; fragments whose longer side is below half the typical
    text height are specks, dots and noise, not words. Scale-free, so it works at any resolution.
    """
    if len(boxes) == 0:
        return 0.0
    heights = side_lengths(boxes)[:, :2].min(1)                  # short side of each box
    return max(3.0, 0.5 * float(np.median(heights)))


def detect(image, params=None, options: DetectOptions = DetectOptions(), refiner=None) -> Detection:
    """Detect text in `image` with CRAFT (and the LinkRefiner when `options.refiner` or `refiner` is given).

    image:   path, bytes, PIL image or (H, W[, C]) array.
    params:  CRAFT params, or the path of CRAFT weights (default `load_craft()`: craft_mlt_25k).
    options: a DetectOptions (thresholds, canvas, poly, size_threshold, refiner path).
    refiner: LinkRefiner params already loaded (`load_refiner`); overrides options.refiner.
    """
    o = options
    if params is None:
        params = _default_craft()
    elif isinstance(params, (str, bytes)) or hasattr(params, "__fspath__"):
        params = load_craft(params)                              # a .pth or converted .safetensors
    if refiner is None and o.refiner is not None:
        refiner = load_refiner(o.refiner)

    img = as_rgb_array(image)
    canvas, ratio, _ = resize_aspect_ratio(img, o.canvas_size, o.mag_ratio, o.width)
    x = normalize_mean_variance(canvas)                          # (H32, W32, 3)
    y, feature = craft_forward(params, x)                        # (h, w, 2), (h, w, 32)
    score_text = np.ascontiguousarray(y[:, :, 0])
    score_link = np.ascontiguousarray(y[:, :, 1])
    poly = o.poly
    if refiner is not None:
        score_link = np.ascontiguousarray(refiner_forward(refiner, y, feature)[:, :, 0])
        poly = True
    del feature

    # CRAFT's getDetBoxes takes its three thresholds and the poly flag as arguments; keep its signature
    boxes, polys, _ = get_det_boxes(score_text, score_link, o.text_threshold, o.link_threshold, o.low_text,
                                    poly=poly)
    inv = 1 / ratio
    boxes = np.asarray(adjust_result_coordinates(boxes, inv, inv), np.float32).reshape(-1, 4, 2)
    polys = adjust_result_coordinates(polys, inv, inv)
    polys = [np.asarray(boxes[k] if p is None else p, np.float32) for k, p in enumerate(polys)]

    size_threshold = automatic_size_threshold(boxes) if o.size_threshold == -1 else o.size_threshold
    if size_threshold and len(boxes):
        keep = side_lengths(boxes)[:, :2].max(1) >= size_threshold
        boxes = boxes[keep]
        polys = [p for p, k in zip(polys, keep) if k]
    return Detection(boxes=boxes, polys=polys, score_text=score_text, score_link=score_link, ratio=ratio,
                     refined=refiner is not None)
