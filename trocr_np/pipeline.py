"""End-to-end page OCR: image -> CRAFT regions -> text lines -> upright crops -> TrOCR -> reading order.

    ocr_page(image, model=None, detector_params=None, *, refiner=None, ...) -> PageResult
    ocr_files(inputs, model=None, ...) -> iterator of PageResult | ErrorRecord

The stages mirror a Spark OCR pipeline:

    BinaryToImage          image_io.load_pages        any file/bytes/array -> upright RGB pages
    ImageTextDetectorV2    detector_np.detect         CRAFT (+ LinkRefiner with `refiner=`)
                           group_lines                word boxes -> line boxes (without a refiner)
    ImageToTextV2          crop.crop_quad, recognize  upright strips, TrOCR in batches (`group_images`)
    (reading order)        layout.reading_order       rows top to bottom, left to right, columns
    ImageDrawRegions       detector_np.draw           `draw_regions(page.image, page.polygons())`

Line regions. With a LinkRefiner the refined link map already joins the words
of a line, so CRAFT's boxes are lines. Without it, CRAFT gives word boxes,
which are merged into lines with EasyOCR's `group_text_box` (detector_np.group,
an exact port) plus three steps for handwriting and skewed pages (see
`group_lines`): the boxes are de-rotated by the page skew (layout.skew_angle)
and the merged lines rotated back, so lines stay rotated quads that the crop's
perspective warp makes upright; word boxes tilted by < 25 degrees count as
horizontal; and pieces of one row that EasyOCR's height rule kept apart are
merged. `group_lines(..., deskew=False, straighten_deg=0, merge_rows=False)`
is EasyOCR's grouping exactly.

Scores. `Line.score` is the mean CRAFT region ("text") score over the text
pixels (score > low_text) inside the line's polygon; `Line.confidence` is the
recogniser's mean token probability.

References: EasyOCR `easyocr.py::Reader.readtext` (detect -> group_text_box ->
min_size -> recognise); CRAFT-pytorch `test.py` (refiner replaces the link map).
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from .crop import crop_quad
from .image_io import load_pages, load_image
from .layout import reading_order, skew_angle

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pbm", ".pgm", ".ppm",
                    ".pnm", ".jp2", ".jpx"}

# Lines can be longer than HF's 20-token default (transformers#17259); 64 BPE tokens
# is ~250 characters, longer than any line a 384x384 TrOCR input can resolve.
MAX_NEW_TOKENS = 64

# De-rotate before grouping only when the page is visibly skewed; below this the
# boxes go to group_text_box in page coordinates, as in EasyOCR.
DESKEW_MIN_DEG = 0.5
# Word boxes tilted less than this against the text direction count as horizontal (see group_lines).
STRAIGHTEN_DEG = 25.0
# Line boxes overlapping vertically by more than this fraction of the smaller height share a row.
ROW_OVERLAP = 0.6


# ---------------------------------------------------------------- results
@dataclass
class Line:
    """One text line: its region, its text and two confidences."""
    text: str
    polygon: list           # [[x, y], ...] region outline in page coordinates (what gets drawn)
    box: list               # [[x, y]] * 4, TL TR BR BL: the quad that was cropped
    score: float            # detection: mean CRAFT region score of the text pixels in the polygon, ~0.4..1
    confidence: float       # recognition: mean token probability, 0..1
    row: int = 0            # index of the reading-order row the line belongs to

    def to_dict(self) -> dict:
        return dict(text=self.text, polygon=self.polygon, box=self.box, score=self.score,
                    confidence=self.confidence, row=self.row)


@dataclass
class PageResult:
    """OCR of one page: lines in reading order, page text, timings in seconds per stage."""
    source: str
    page: int               # 1-based page number within the source (multi-page TIFF)
    width: int
    height: int
    lines: list[Line]
    timings: dict[str, float]
    image: Image.Image | None = field(default=None, repr=False, compare=False)  # the page, for drawing

    ok = True

    @property
    def text(self) -> str:
        """Page text: one row per line of output, lines sharing a row joined by a space."""
        rows: dict[int, list[str]] = {}
        for ln in self.lines:
            rows.setdefault(ln.row, []).append(ln.text)
        return "\n".join(" ".join(t for t in r if t) for _, r in sorted(rows.items()))

    def polygons(self) -> list:
        return [np.asarray(ln.polygon) for ln in self.lines]

    def to_dict(self) -> dict:
        return dict(source=self.source, page=self.page, width=self.width, height=self.height, text=self.text,
                    lines=[ln.to_dict() for ln in self.lines], timings=self.timings)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_hocr(self) -> str:  # the writers and their readers: trocr_np.formats
        from .formats import hocr_document
        return hocr_document([self])

    def to_alto(self) -> str:
        from .formats import alto_document
        return alto_document([self])

    def to_page_xml(self) -> str:
        from .formats import page_xml
        return page_xml(self)


@dataclass
class ErrorRecord:
    """A source that could not be processed (the batch goes on)."""
    source: str
    error: str
    error_type: str
    page: int | None = None

    ok = False

    def to_dict(self) -> dict:
        return dict(source=self.source, page=self.page, error=self.error, error_type=self.error_type)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


# ---------------------------------------------------------------- models
def default_model_dir() -> Path:
    """The bundled recogniser shipped with the package (see trocr_np.bundled)."""
    try:
        from .bundled import bundled_model_dir
    except ImportError:
        raise FileNotFoundError("no recogniser given and no bundled model installed (pass --model / model=)") from None
    return Path(bundled_model_dir())


def resolve_model(model):
    """A TrOCRModel, a converted model folder, or None (the bundled model) -> TrOCRModel."""
    if model is None:
        model = default_model_dir()
    if isinstance(model, (str, os.PathLike)):
        from .model import load_model
        return load_model(model)
    return model


def resolve_detector(detector_params=None, refiner=None):
    """(CRAFT params, refiner params or None); paths are loaded, None means the default CRAFT weights."""
    from detector_np.weights import load_craft, load_refiner
    if detector_params is None or isinstance(detector_params, (str, os.PathLike)):
        detector_params = load_craft(detector_params)
    if isinstance(refiner, (str, os.PathLike)):
        refiner = load_refiner(refiner)
    return detector_params, refiner


def trocr_recognizer(model, batch_size=8, num_beams=1, max_new_tokens=MAX_NEW_TOKENS, **generate_kwargs):
    """A recogniser callable: list of (h, w, 3) uint8 crops -> list of (text, confidence)."""
    from .recognize import recognize
    kw = dict(num_beams=num_beams, **generate_kwargs)
    if max_new_tokens is not None:
        kw["max_new_tokens"] = max_new_tokens

    def run(crops):
        return [(r.text, float(r.confidence)) for r in recognize(model, crops, batch_size=batch_size, **kw)]
    return run


# ---------------------------------------------------------------- stages
def _rotate(points, angle, center):
    c, s = np.cos(angle), np.sin(angle)
    return (np.asarray(points, np.float64) - center) @ np.array([[c, s], [-s, c]]) + center


def group_lines(boxes, image_size=None, slope_ths=0.1, ycenter_ths=0.5, height_ths=0.5, width_ths=0.5,
                add_margin=0.1, min_size=20, deskew=True, straighten_deg=STRAIGHTEN_DEG,
                merge_rows=True) -> np.ndarray:
    """Word boxes (N, 4, 2) -> line quads (M, 4, 2) in page coordinates, via EasyOCR's group_text_box.

    On a page skewed by more than DESKEW_MIN_DEG the boxes are de-rotated about
    the page centre first and the merged lines rotated back. Word boxes tilted by
    less than `straighten_deg` against the text direction are replaced by upright
    boxes of the same size and centre, so `group_text_box` (which only merges
    boxes with slope < slope_ths, about 6 degrees) can join them; CRAFT's min-area
    boxes around slanted handwritten words are often tilted by 10-20 degrees.
    With merge_rows, line boxes that `group_text_box` left apart although they
    overlap vertically by more than ROW_OVERLAP of the smaller height and are less
    than width_ths * height apart are merged: its height rule (|h - mean h| <
    height_ths * mean h) splits off handwritten words with long descenders.
    straighten_deg=0, deskew=False, merge_rows=False give EasyOCR's grouping exactly. Lines whose
    longer side is <= min_size pixels are dropped (EasyOCR's min_size).
    """
    from detector_np.group import group_text_box
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4, 2)
    if len(boxes) == 0:
        return np.zeros((0, 4, 2), np.float32)
    angle = skew_angle(boxes) if deskew else 0.0
    center = (np.asarray(image_size, np.float64) / 2) if image_size is not None else boxes.reshape(-1, 2).mean(0)
    rotate = abs(np.rad2deg(angle)) >= DESKEW_MIN_DEG
    b = _rotate(boxes, -angle, center) if rotate else boxes
    if straighten_deg > 0:
        b = _straighten(b, straighten_deg)
    polys = [np.asarray(q).astype(np.int32).reshape(-1) for q in b]  # EasyOCR: np.array(box).astype(np.int32)
    horizontal, free = group_text_box(polys, slope_ths=slope_ths, ycenter_ths=ycenter_ths, height_ths=height_ths,
                                      width_ths=width_ths, add_margin=add_margin, sort_output=False)
    horizontal = _merge_rows([list(map(float, h)) for h in horizontal], width_ths) if merge_rows else horizontal
    quads = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) for x0, x1, y0, y1 in horizontal]
    quads += [np.asarray(f, np.float64).reshape(4, 2) for f in free]
    out = []
    for q in quads:
        w = max(np.hypot(*(q[1] - q[0])), np.hypot(*(q[2] - q[3])))
        h = max(np.hypot(*(q[3] - q[0])), np.hypot(*(q[2] - q[1])))
        if max(w, h) > min_size:
            out.append(_rotate(q, angle, center) if rotate else q)
    return np.asarray(out, np.float32).reshape(-1, 4, 2)


def _straighten(boxes, max_deg):
    """Boxes (N, 4, 2) tilted less than max_deg -> upright boxes with the same centre, width and height."""
    out = boxes.copy()
    for k, q in enumerate(boxes):
        top = q[1] - q[0]
        if abs(np.rad2deg(np.arctan2(top[1], top[0]))) < max_deg:
            w = 0.5 * (np.hypot(*(q[1] - q[0])) + np.hypot(*(q[2] - q[3])))
            h = 0.5 * (np.hypot(*(q[3] - q[0])) + np.hypot(*(q[2] - q[1])))
            c = q.mean(0)
            out[k] = c + np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return out


def _merge_rows(boxes, width_ths):
    """Merge [x0, x1, y0, y1] boxes that share a row and nearly touch (see group_lines)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    while len(b) > 1:
        x0, x1, y0, y1 = (b[:, k] for k in range(4))
        h = np.minimum.outer(y1 - y0, y1 - y0)
        overlap = np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0)
        gap = np.maximum.outer(x0, x0) - np.minimum.outer(x1, x1)
        join = (h > 0) & (overlap > ROW_OVERLAP * h) & (gap < width_ths * h)
        np.fill_diagonal(join, False)
        if not join.any():
            break
        label = np.arange(len(b))  # connected components of `join` (label propagation)
        while True:
            new = np.minimum(label, np.where(join, label[None, :], len(b)).min(1))
            new = new[new]
            if np.array_equal(new, label):
                break
            label = new
        b = np.array([[b[label == k, 0].min(), b[label == k, 1].max(), b[label == k, 2].min(), b[label == k, 3].max()]
                      for k in np.unique(label)])
    return b.tolist()


def region_scores(score_text, polygons, scale, low_text=0.4) -> list[float]:
    """Mean CRAFT region score over each polygon's text pixels (score > low_text); 0 if none.

    page coords * scale = map coords. Averaging over the whole box would mostly
    measure the white space between letters; over text pixels it says how
    strongly the characters themselves were detected.
    """
    h, w = score_text.shape
    out = []
    for p in polygons:
        m = np.asarray(p, np.float64) * scale
        x0, y0 = np.clip(np.floor(m.min(0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(m.max(0)).astype(int) + 1, 0, [w, h])
        if x1 <= x0 or y1 <= y0:
            out.append(0.0)
            continue
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon([tuple(xy) for xy in (m - [x0, y0])], fill=1, outline=1)
        mk = np.asarray(mask, bool)
        v = score_text[y0:y1, x0:x1][mk]
        v = v[v > low_text]
        out.append(float(v.mean()) if len(v) else 0.0)
    return out


def _as_recognition(r) -> tuple[str, float]:
    if isinstance(r, tuple):
        return str(r[0]), float(r[1])
    if isinstance(r, str):
        return r, float("nan")
    return str(r.text), float(r.confidence)


def ocr_page(image, model=None, detector_params=None, *, refiner=None, recognizer: Callable | None = None,
             group_images: bool = True, batch_size: int = 8, num_beams: int = 1,
             max_new_tokens: int | None = MAX_NEW_TOKENS, margin: float = 0.0,
             canvas_size: int = 1280, mag_ratio: float = 1.5, width: int | None = None,
             text_threshold: float = 0.7, link_threshold: float = 0.4, low_text: float = 0.4,
             poly: bool = False, size_threshold: int = -1, group_options: dict | None = None,
             source: str = "<image>", page: int = 1) -> PageResult:
    """OCR one page.

    image:            anything `image_io.load_image` takes (path, bytes, PIL, ndarray).
    model:            TrOCRModel, converted model folder, or None for the bundled model.
    detector_params:  CRAFT params dict (detector_np.load_craft()), a weights path, or None (default weights).
    refiner:          LinkRefiner params dict or weights path: line regions straight from the refined link map.
    recognizer:       optional callable(list of (h, w, 3) uint8 crops) -> list of (text, confidence)
                      or Recognition; replaces `model` (e.g. a stand-in with known output in tests).
    group_images:     recognise the page's crops together in batches of `batch_size` (Spark's
                      groupImages); False: one crop at a time.
    margin:           extra context around each crop, as a fraction of the line height.
    canvas_size ... size_threshold: CRAFT options (see detector_np.detect).
    group_options:    keyword arguments for `group_lines` (slope_ths, ..., min_size).
    """
    from detector_np.detect import detect
    t = {}
    t0 = time.perf_counter()
    im = load_image(image)
    t["load"] = time.perf_counter() - t0

    craft, ref = resolve_detector(detector_params, refiner)
    if recognizer is None:
        recognizer = trocr_recognizer(resolve_model(model), batch_size=batch_size if group_images else 1,
                                      num_beams=num_beams, max_new_tokens=max_new_tokens)
    rgb = np.asarray(im)

    t0 = time.perf_counter()
    det = detect(rgb, craft, canvas_size=canvas_size, mag_ratio=mag_ratio, width=width,
                 text_threshold=text_threshold, link_threshold=link_threshold, low_text=low_text,
                 poly=poly or ref is not None, refiner=ref, size_threshold=size_threshold)
    t["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if ref is not None:  # refined link map: CRAFT's boxes are already lines
        boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4, 2)
        polys = [np.asarray(p if p is not None else b, np.float32) for p, b in zip(det.polys, boxes)]
    else:
        boxes = group_lines(det.boxes, image_size=im.size, **(group_options or {}))
        polys = list(boxes)
    rows = reading_order(boxes)
    order = [i for r in rows for i in r]
    row_of = {i: k for k, r in enumerate(rows) for i in r}
    # the detector's maps are at half the resized image: page coords * ratio / 2
    map_scale = float(np.mean(np.asarray(det.ratio, np.float64))) / 2
    scores = region_scores(det.score_text, [polys[i] for i in order], map_scale, low_text)
    t["group"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    crops = [crop_quad(rgb, boxes[i], margin=margin) for i in order]
    t["crop"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    recs = []
    if crops:
        step = len(crops) if group_images else 1
        for k in range(0, len(crops), step):
            recs += [_as_recognition(r) for r in recognizer(crops[k:k + step])]
        if len(recs) != len(crops):
            raise ValueError(f"recogniser returned {len(recs)} results for {len(crops)} crops")
    t["recognize"] = time.perf_counter() - t0
    t["total"] = sum(t.values())

    lines = [Line(text=text, polygon=np.round(polys[i], 2).tolist(), box=np.round(boxes[i], 2).tolist(),
                  score=round(s, 4), confidence=round(c, 4) if c == c else c, row=row_of[i])
             for i, s, (text, c) in zip(order, scores, recs)]
    return PageResult(source=source, page=page, width=im.size[0], height=im.size[1], lines=lines,
                      timings={k: round(v, 4) for k, v in t.items()}, image=im)


# ---------------------------------------------------------------- batches
def expand_inputs(inputs: Iterable) -> list[Path]:
    """Files as given; folders searched recursively for image files (sorted)."""
    out = []
    for x in inputs:
        p = Path(x)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(p)  # missing files become error records later
    return out


def ocr_files(inputs: Iterable, model=None, detector_params=None, *, refiner=None, recognizer=None,
              progress: Callable | None = None, **page_kwargs) -> Iterator[PageResult | ErrorRecord]:
    """OCR every page of every input (files or folders); a bad file yields an ErrorRecord and the rest go on.

    Models are loaded once. progress: optional callable(i, n, path) called before each file.
    Other keyword arguments go to `ocr_page`.
    """
    craft, ref = resolve_detector(detector_params, refiner)
    batch_size = page_kwargs.pop("batch_size", 8)
    num_beams = page_kwargs.pop("num_beams", 1)
    max_new_tokens = page_kwargs.pop("max_new_tokens", MAX_NEW_TOKENS)
    if recognizer is None:  # load the model once for the whole batch
        recognizer = trocr_recognizer(resolve_model(model), num_beams=num_beams, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size if page_kwargs.get("group_images", True) else 1)
    files = expand_inputs(inputs)
    for i, path in enumerate(files):
        if progress is not None:
            progress(i, len(files), path)
        t0 = time.perf_counter()
        try:
            pages = load_pages(path)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
            yield ErrorRecord(str(path), str(e), type(e).__name__)
            continue
        load_s = (time.perf_counter() - t0) / len(pages)
        for k, pg in enumerate(pages, 1):
            try:
                res = ocr_page(pg, detector_params=craft, refiner=ref, recognizer=recognizer, source=str(path),
                               page=k, **page_kwargs)
            except (ValueError, OSError) as e:  # bad input: the message says what is wrong
                yield ErrorRecord(str(path), str(e), type(e).__name__, page=k)
                continue
            except Exception as e:  # noqa: BLE001 - a bug: keep where it happened in the record
                yield ErrorRecord(str(path), f"{e}\n{traceback.format_exc(limit=-3)}".strip(), type(e).__name__,
                                  page=k)
                continue
            res.timings["load"] = round(res.timings["load"] + load_s, 4)
            res.timings["total"] = round(sum(v for key, v in res.timings.items() if key != "total"), 4)
            yield res
