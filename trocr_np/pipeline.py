"""End-to-end page OCR: image -> CRAFT regions -> text lines -> upright crops -> TrOCR -> reading order.

    ocr_page(image, model=None, detector_params=None, options=PageOptions()) -> PageResult
    ocr_files(inputs, model=None, detector_params=None, options=PageOptions()) -> iterator of PageResult | ErrorRecord

This module is the hall above the two wings: it calls the detector (`detector_np`) and the
recogniser (`trocr_np.recognize`), and neither of them knows about it. The stages mirror a Spark OCR
pipeline:

    BinaryToImage          ocr_base.image_io.load_pages  any file/bytes/array -> upright RGB pages
    ImageTextDetectorV2    detector_np.detect            CRAFT (+ LinkRefiner with DetectOptions.refiner)
                           detector_np.lines.find_lines  word boxes -> line boxes (without a refiner)
    ImageToTextV2          crop.crop_quad, recognize     upright strips, TrOCR in batches (`group_images`)
    (reading order)        detector_np.layout            rows top to bottom, left to right, columns
    ImageDrawRegions       detector_np.draw              `draw_regions(page.image, page.polygons())`

One options object per stage, carried whole from the CLI to the function that uses it:
`PageOptions(detect=DetectOptions(...), lines=LineOptions(...), generation=GenerationOptions(...))`.

Scores. `Line.score` is the mean CRAFT region ("text") score over the text pixels (score > low_text)
inside the line's polygon; `Line.confidence` is the recogniser's mean token probability.
`Line.tokens` are the generated tokens with their probabilities, `Line.words` the words with their
boxes and confidences (`trocr_np.words`: CRAFT's word boxes where they match, else cross-attention).

References: EasyOCR `easyocr.py::Reader.readtext` (detect -> group_text_box -> min_size -> recognise);
CRAFT-pytorch `test.py` (refiner replaces the link map).
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from detector_np.detect import DetectOptions, detect
from detector_np.layout import reading_order
from detector_np.lines import LineOptions, find_lines, region_scores
from detector_np.weights import load_craft, load_refiner
from ocr_base.image_io import iter_pages, load_image

from .crop import crop_quad, quad_size
from .generate import GenerationOptions
from .recognize import BATCH_SIZE, recognize
from .tokenizer import decode
from .words import Reading, attention_columns, line_words, token_spans, words_in_lines

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pbm", ".pgm", ".ppm",
                    ".pnm", ".jp2", ".jpx", ".pdf"}


@dataclass(frozen=True)
class PageOptions:
    """Everything `ocr_page` / `ocr_files` do, one object per stage.

    detect:       CRAFT (detector_np.DetectOptions).
    lines:        word boxes -> lines (detector_np.lines.LineOptions).
    generation:   TrOCR decoding (GenerationOptions). Lines can be longer than HF's 20-token default
                  (transformers#17259); 64 BPE tokens is ~250 characters, longer than any line a
                  384x384 TrOCR input can resolve.
    batch_size:   line crops recognised together.
    group_images: recognise a page's crops together in batches of batch_size (Spark's groupImages);
                  False: one crop at a time.
    margin:       extra context around each crop, as a fraction of the line height.
    words:        find each line's words, their boxes and confidences (Line.words; generation then
                  also returns cross-attention, which places words CRAFT's boxes do not match).
    pdf_dpi:      resolution PDF pages are rendered at.
    """
    detect: DetectOptions = DetectOptions()
    lines: LineOptions = LineOptions()
    generation: GenerationOptions = GenerationOptions(max_new_tokens=64)
    batch_size: int = BATCH_SIZE
    group_images: bool = True
    margin: float = 0.0
    words: bool = True
    pdf_dpi: float = 300

    def __post_init__(self):
        for name, cls in (("detect", DetectOptions), ("lines", LineOptions), ("generation", GenerationOptions)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"PageOptions.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"PageOptions.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.group_images, bool):
            raise ValueError(f"PageOptions.group_images must be True or False, got {self.group_images!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 2:
            raise ValueError(f"PageOptions.margin must be a number from 0 to 2, got {self.margin!r}")
        if not isinstance(self.words, bool):
            raise ValueError(f"PageOptions.words must be True or False, got {self.words!r}")
        if isinstance(self.pdf_dpi, bool) or not isinstance(self.pdf_dpi, (int, float)) or not 0 < self.pdf_dpi <= 2400:
            raise ValueError(f"PageOptions.pdf_dpi must be a number in (0, 2400], got {self.pdf_dpi!r}")


# ---------------------------------------------------------------- results
@dataclass
class Line:
    """One text line: its region, its text and two confidences (and, where known, its words and tokens)."""
    text: str
    polygon: list           # [[x, y], ...] region outline in page coordinates (what gets drawn)
    box: list               # [[x, y]] * 4, TL TR BR BL: the quad that was cropped
    score: float            # detection: mean CRAFT region score of the text pixels in the polygon, ~0.4..1
    confidence: float       # recognition: mean token probability, 0..1
    row: int = 0            # index of the reading-order row the line belongs to
    words: list | None = None   # [{text, box [[x, y]] * 4, confidence, method}] (trocr_np.words)
    tokens: list | None = None  # [[text, probability]] per generated token, EOS included

    def to_dict(self) -> dict:
        d = dict(text=self.text, polygon=self.polygon, box=self.box, score=self.score,
                 confidence=self.confidence, row=self.row)
        d.update({k: getattr(self, k) for k in ("words", "tokens") if getattr(self, k) is not None})
        return d


@dataclass
class PageResult:
    """OCR of one page: lines in reading order, page text, timings in seconds per stage."""
    source: str
    page: int               # 1-based page number within the source (multi-page TIFF, PDF)
    width: int
    height: int
    lines: list[Line]
    timings: dict[str, float]
    image: Image.Image | None = field(default=None, repr=False, compare=False)  # the page, for drawing
    page_count: int = 1     # pages in the source

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
        return dict(source=self.source, page=self.page, page_count=self.page_count, width=self.width,
                    height=self.height, text=self.text, lines=[ln.to_dict() for ln in self.lines],
                    timings=self.timings)

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
    page_count: int | None = None

    ok = False

    def to_dict(self) -> dict:
        return dict(source=self.source, page=self.page, page_count=self.page_count, error=self.error,
                    error_type=self.error_type)

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
    """A TrOCRModel, a trocr-np or HF model folder, or None (the bundled model) -> TrOCRModel."""
    if model is None:
        model = default_model_dir()
    if isinstance(model, (str, os.PathLike)):
        from .model import load_model
        return load_model(model)
    return model


def resolve_detector(detector_params=None, options: DetectOptions = DetectOptions(), refiner=None):
    """(CRAFT params, LinkRefiner params or None), loaded once for a batch.

    detector_params: params, a weights path, or None (the default CRAFT weights); the refiner comes
    from `refiner` (params) or else options.refiner (a path).
    """
    if detector_params is None or isinstance(detector_params, (str, os.PathLike)):
        detector_params = load_craft(detector_params)
    if refiner is None and options.refiner is not None:
        refiner = load_refiner(options.refiner)
    return detector_params, refiner


def trocr_recognizer(model, options: PageOptions = PageOptions()):
    """A recogniser callable: list of (h, w, 3) uint8 crops -> list of `trocr_np.words.Reading`
    (text, confidence, tokens with their probabilities and, with options.words, attention columns)."""
    batch_size = options.batch_size if options.group_images else 1
    generation = replace(options.generation, output_attentions=True) if options.words else options.generation
    tok = model.tokenizer

    def reading(r):
        probs = [round(float(np.exp(x)), 4) for x in r.token_logprobs]
        if tok is None:
            return Reading(r.text, float(r.confidence))
        spans = token_spans(tok, r.token_ids, r.text)
        tokens = [[decode(tok, [i], False) if sp is None else r.text[sp[0]:sp[1]], p]
                  for sp, i, p in zip(spans, r.token_ids, probs)]
        cols = attention_columns(r.cross_attention, model.config) if r.cross_attention is not None else None
        return Reading(r.text, float(r.confidence), tokens, spans, cols)

    def run(crops):
        return [reading(r) for r in recognize(model, crops, generation, batch_size)]
    return run


# ---------------------------------------------------------------- stages
def _as_recognition(r) -> Reading:
    if isinstance(r, Reading):
        return r
    if isinstance(r, tuple):
        return Reading(str(r[0]), float(r[1]))
    if isinstance(r, str):
        return Reading(r, float("nan"))
    return Reading(str(r.text), float(r.confidence))


def ocr_page(image, model=None, detector_params=None, options: PageOptions = PageOptions(), *,
             refiner=None, recognizer: Callable | None = None, source: str = "<image>", page: int = 1) -> PageResult:
    """OCR one page.

    image:            anything `ocr_base.image_io.load_image` takes (path, bytes, PIL, ndarray).
    model:            TrOCRModel, trocr-np or HF model folder, or None for the bundled model.
    detector_params:  CRAFT params dict (detector_np.load_craft()), a weights path, or None (default weights).
    options:          PageOptions (detector, line grouping, generation, batching).
    refiner:          LinkRefiner params already loaded (else options.detect.refiner, a path, is loaded).
    recognizer:       optional callable(list of (h, w, 3) uint8 crops) -> list of (text, confidence),
                      Recognition or trocr_np.words.Reading; replaces `model` (e.g. a stand-in with
                      known output in tests).
    """
    t = {}
    t0 = time.perf_counter()
    im = load_image(image)
    t["load"] = time.perf_counter() - t0

    craft, ref = resolve_detector(detector_params, options.detect, refiner)
    if recognizer is None:
        recognizer = trocr_recognizer(resolve_model(model), options)
    rgb = np.asarray(im)

    t0 = time.perf_counter()
    det = detect(rgb, craft, options.detect, refiner=ref)
    t["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    boxes, polys = find_lines(det, im.size, options.lines)
    rows = reading_order(boxes)
    order = [i for r in rows for i in r]
    row_of = {i: k for k, r in enumerate(rows) for i in r}
    # the detector's maps are at half the resized image: page coords * ratio / 2
    map_scale = float(np.mean(np.asarray(det.ratio, np.float64))) / 2
    scores = region_scores(det.score_text, [polys[i] for i in order], map_scale, options.detect.low_text)
    t["group"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    crops = [crop_quad(rgb, boxes[i], margin=options.margin) for i in order]
    t["crop"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    recs = []
    if crops:
        step = len(crops) if options.group_images else 1
        for k in range(0, len(crops), step):
            recs += [_as_recognition(r) for r in recognizer(crops[k:k + step])]
        if len(recs) != len(crops):
            raise ValueError(f"recogniser returned {len(recs)} results for {len(crops)} crops")
    t["recognize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    members = words_in_lines(det.boxes, boxes) if options.words and not det.refined else None
    lines = []
    for i, s, r, crop in zip(order, scores, recs, crops):
        c = r.confidence
        words = None
        if options.words:
            m = int(round(options.margin * quad_size(boxes[i])[0]))  # crop_quad's margin in pixels
            words = line_words(r, boxes[i], crop.shape[1], m,
                               None if members is None else np.asarray(det.boxes)[members[i]]) or None
        lines.append(Line(text=r.text, polygon=np.round(polys[i], 2).tolist(), box=np.round(boxes[i], 2).tolist(),
                          score=round(s, 4), confidence=round(c, 4) if c == c else c, row=row_of[i],
                          words=words, tokens=r.tokens))
    t["group"] += time.perf_counter() - t0   # words are part of finding the lines' layout
    t["total"] = sum(v for k, v in t.items() if k != "total")
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


def ocr_files(inputs: Iterable, model=None, detector_params=None, options: PageOptions = PageOptions(), *,
              refiner=None, recognizer=None, progress: Callable | None = None) -> Iterator[PageResult | ErrorRecord]:
    """OCR every page of every input (files or folders); a bad file yields an ErrorRecord and the rest go on.

    Models are loaded once. progress: optional callable(i, n, path) called before each file.
    The other arguments are `ocr_page`'s.
    """
    craft, ref = resolve_detector(detector_params, options.detect, refiner)
    if recognizer is None:  # load the model once for the whole batch
        recognizer = trocr_recognizer(resolve_model(model), options)
    files = expand_inputs(inputs)
    for i, path in enumerate(files):
        if progress is not None:
            progress(i, len(files), path)
        t0 = time.perf_counter()
        try:
            n_pages, pages = iter_pages(path, dpi=options.pdf_dpi)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
            yield ErrorRecord(str(path), str(e), type(e).__name__)
            continue
        open_s = time.perf_counter() - t0
        for k in range(1, n_pages + 1):
            t0 = time.perf_counter()
            try:
                pg = next(pages)    # a PDF page is rendered here
                load_s = time.perf_counter() - t0 + (open_s if k == 1 else 0.0)
                res = ocr_page(pg, None, craft, options, refiner=ref, recognizer=recognizer, source=str(path),
                               page=k)
            except (ValueError, OSError) as e:  # bad input: the message says what is wrong
                yield ErrorRecord(str(path), str(e), type(e).__name__, page=k, page_count=n_pages)
                continue
            except Exception as e:  # noqa: BLE001 - a bug: keep where it happened in the record
                yield ErrorRecord(str(path), f"{e}\n{traceback.format_exc(limit=-3)}".strip(), type(e).__name__,
                                  page=k, page_count=n_pages)
                continue
            res.page_count = n_pages
            res.timings["load"] = round(res.timings["load"] + load_s, 4)
            res.timings["total"] = round(sum(v for key, v in res.timings.items() if key != "total"), 4)
            yield res
