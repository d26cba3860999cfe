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
from concurrent.futures import ThreadPoolExecutor
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

from .crop import crop_polygon, crop_quad, quad_size, split_wide, upright_polarity
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
    batch_size:   line crops decoded together (`recognize`): a page's crops, and in `ocr_files` the
                  crops of consecutive pages, gathered until there are this many, then encoded
                  (in memory-bounded chunks) and decoded as one batch, rows leaving as they finish.
                  Each running row holds ~57 MB of cross-attention K/V at TrOCR base/large
                  (docs/architecture.md, "Whole pages batched", says why 16).
    group_images: recognise crops together as above (Spark's groupImages); False: one crop at a
                  time, page by page.
    margin:       extra context around each crop, as a fraction of the line height.
    polarity:     turn light-on-dark line crops into dark-on-light before recognition
                  (`crop.upright_polarity`, decided per line).
    mask_outside: paint what lies outside the line's polygon in the paper's colour
                  (`crop.crop_polygon`: the neighbouring lines' ascenders and descenders).
    max_aspect:   recognise lines wider than this many heights in pieces cut at word gaps and
                  join their texts (`crop.split_wide`); 0: whole lines. The bundled model, trained on
                  lines of 1-8 tokens, reads a 10-15 word line better in pieces (benchmarks/bench_lines.py).
    words:        find each line's words, their boxes and confidences (Line.words; generation then
                  also returns cross-attention, which places words CRAFT's boxes do not match).
    pdf_dpi:      resolution PDF pages are rendered at.
    overlap:      in `ocr_files`, detect the next page on a thread while the current batch is
                  recognised. Off by default: on 2 cores both stages already use both
                  (benchmarks/bench_page.py measures it).
    """
    detect: DetectOptions = DetectOptions()
    lines: LineOptions = LineOptions()
    generation: GenerationOptions = GenerationOptions(max_new_tokens=64)
    batch_size: int = BATCH_SIZE
    group_images: bool = True
    margin: float = 0.0
    polarity: bool = True
    mask_outside: bool = True
    max_aspect: float = 12.0
    words: bool = True
    pdf_dpi: float = 300
    overlap: bool = False

    def __post_init__(self):
        for name, cls in (("detect", DetectOptions), ("lines", LineOptions), ("generation", GenerationOptions)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"PageOptions.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"PageOptions.batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("polarity", "mask_outside", "overlap"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PageOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.group_images, bool):
            raise ValueError(f"PageOptions.group_images must be True or False, got {self.group_images!r}")
        if isinstance(self.max_aspect, bool) or not isinstance(self.max_aspect, (int, float)) \
                or not 0 <= self.max_aspect < float("inf"):
            raise ValueError(f"PageOptions.max_aspect must be a number >= 0, got {self.max_aspect!r}")
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


def _join_readings(parts: list) -> Reading:
    """The Readings of one line's pieces (`crop.split_wide`) -> one: texts joined by a space, the
    mean confidence, tokens and their character spans in order. The attention columns of pieces
    span different crops, so a joined line has none (its words come from the detector's boxes)."""
    if len(parts) == 1:
        return parts[0]
    text, spans, tokens = "", [], []
    for r in parts:
        base = len(text) + (1 if text else 0)
        text = f"{text} {r.text}" if text else r.text
        tokens = None if tokens is None or r.tokens is None else tokens + list(r.tokens)
        spans = None if spans is None or r.spans is None else spans + [
            None if sp is None else (sp[0] + base, sp[1] + base) for sp in r.spans]
    return Reading(text, float(np.mean([r.confidence for r in parts])), tokens, spans, None)


@dataclass
class PageRegions:
    """The text lines of a page in reading order, before recognition (page pixel coordinates).

    boxes:    M (4, 2) float32 quads, TL TR BR BL: what gets cropped.
    polygons: M (K, 2) float32 outlines: what gets drawn (the quad itself without a refiner).
    rows:     M reading-order row indices (lines of one row are joined by a space in the page text).
    scores:   M mean CRAFT region scores (`detector_np.lines.region_scores`).
    word_boxes: M (n, 4, 2) CRAFT word boxes inside each line (`trocr_np.words.words_in_lines`), or None
              (options.words off, or a refined detection, whose boxes are lines).
    """
    boxes: list
    polygons: list
    rows: list
    scores: list
    word_boxes: list | None = None


def page_regions(rgb: np.ndarray, craft, options: PageOptions = PageOptions(), *, refiner=None,
                 timings: dict | None = None, detection=None) -> PageRegions:
    """(H, W, 3) uint8 page -> its lines in reading order: detect, find_lines, reading_order, scores.

    craft / refiner: loaded params (`resolve_detector`). timings: if given, gets "detect" and "group" seconds.
    detection: a `detector_np.Detection` of this page already made (then craft / refiner are unused).
    """
    t = {} if timings is None else timings
    t0 = time.perf_counter()
    det = detection if detection is not None else detect(rgb, craft, options.detect, refiner=refiner)
    t["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    boxes, polys = find_lines(det, (rgb.shape[1], rgb.shape[0]), options.lines)
    rows = reading_order(boxes)
    order = [i for r in rows for i in r]
    row_of = {i: k for k, r in enumerate(rows) for i in r}
    # the detector's maps are at half the resized image: page coords * ratio / 2
    map_scale = float(np.mean(np.asarray(det.ratio, np.float64))) / 2
    scores = region_scores(det.score_text, [polys[i] for i in order], map_scale, options.detect.low_text)
    members = words_in_lines(det.boxes, boxes) if options.words and not det.refined else None
    word_boxes = None if members is None else [np.asarray(det.boxes)[members[i]] for i in order]
    t["group"] = time.perf_counter() - t0
    return PageRegions(boxes=[boxes[i] for i in order], polygons=[polys[i] for i in order],
                       rows=[row_of[i] for i in order], scores=list(scores), word_boxes=word_boxes)


def page_crops(rgb: np.ndarray, regions: PageRegions, options: PageOptions = PageOptions()) -> list[np.ndarray]:
    """An upright (h, w, 3) uint8 strip per line: the quad cropped (outside the polygon painted as
    paper with options.mask_outside), then turned dark-on-light where it is light-on-dark."""
    crops = [crop_polygon(rgb, box, poly, margin=options.margin) if options.mask_outside
             else crop_quad(rgb, box, margin=options.margin) for box, poly in zip(regions.boxes, regions.polygons)]
    return [upright_polarity(c) for c in crops] if options.polarity else crops


def read_crops(crops: list, recognizer: Callable, options: PageOptions = PageOptions()) -> list[Reading]:
    """A Reading per crop. Crops wider than options.max_aspect heights are read in pieces cut at word
    gaps and their readings joined; all pieces go to the recogniser in one call (group_images) or
    one call per piece."""
    pieces = [split_wide(c, options.max_aspect) for c in crops]
    flat = [p for ps in pieces for p in ps]
    got = []
    if flat:
        step = len(flat) if options.group_images else 1
        for k in range(0, len(flat), step):
            got += [_as_recognition(r) for r in recognizer(flat[k:k + step])]
        if len(got) != len(flat):
            raise ValueError(f"recogniser returned {len(got)} results for {len(flat)} crops")
    recs, k = [], 0
    for ps in pieces:
        recs.append(_join_readings(got[k:k + len(ps)]))
        k += len(ps)
    return recs


def page_lines(regions: PageRegions, recs: list[Reading], crop_widths: list[int],
               options: PageOptions = PageOptions()) -> list[Line]:
    """Lines from the regions and their readings (coordinates rounded to 0.01 px, scores to 1e-4);
    with options.words, each line's words (`trocr_np.words.line_words`)."""
    lines = []
    word_boxes = regions.word_boxes or [None] * len(regions.boxes)
    for box, poly, row, s, r, width, wb in zip(regions.boxes, regions.polygons, regions.rows, regions.scores,
                                                recs, crop_widths, word_boxes):
        c = r.confidence
        words = None
        if options.words:
            m = int(round(options.margin * quad_size(box)[0]))  # crop_quad's margin in pixels
            words = line_words(r, box, width, m, wb) or None
        lines.append(Line(text=r.text, polygon=np.round(poly, 2).tolist(), box=np.round(box, 2).tolist(),
                          score=round(s, 4), confidence=round(c, 4) if c == c else c, row=row,
                          words=words, tokens=r.tokens))
    return lines


@dataclass
class _Pending:
    """A page between detection and recognition: what `_finish_page` needs."""
    image: Image.Image
    regions: PageRegions
    crops: list
    timings: dict
    source: str
    page: int
    page_count: int = 1


def _start_page(image, craft, ref, options: PageOptions, source: str, page: int, detection=None) -> _Pending:
    """Load, detect, find the lines and crop them: everything before recognition."""
    t = {}
    t0 = time.perf_counter()
    im = load_image(image)
    t["load"] = time.perf_counter() - t0
    rgb = np.asarray(im)
    regions = page_regions(rgb, craft, options, refiner=ref, timings=t, detection=detection)
    t0 = time.perf_counter()
    crops = page_crops(rgb, regions, options)
    t["crop"] = time.perf_counter() - t0
    return _Pending(im, regions, crops, t, source, page)


def _finish_page(p: _Pending, recs: list, recognize_s: float, options: PageOptions) -> PageResult:
    t = p.timings
    t["recognize"] = recognize_s
    t0 = time.perf_counter()
    lines = page_lines(p.regions, recs, [crop.shape[1] for crop in p.crops], options)
    t["group"] += time.perf_counter() - t0   # words are part of finding the lines' layout
    t["total"] = sum(v for k, v in t.items() if k != "total")
    return PageResult(source=p.source, page=p.page, width=p.image.size[0], height=p.image.size[1], lines=lines,
                      timings={k: round(v, 4) for k, v in t.items()}, image=p.image, page_count=p.page_count)


def ocr_page(image, model=None, detector_params=None, options: PageOptions = PageOptions(), *,
             refiner=None, recognizer: Callable | None = None, source: str = "<image>", page: int = 1,
             detection=None) -> PageResult:
    """OCR one page.

    image:            anything `ocr_base.image_io.load_image` takes (path, bytes, PIL, ndarray).
    model:            TrOCRModel, trocr-np or HF model folder, or None for the bundled model.
    detector_params:  CRAFT params dict (detector_np.load_craft()), a weights path, or None (default weights).
    options:          PageOptions (detector, line grouping, generation, batching).
    refiner:          LinkRefiner params already loaded (else options.detect.refiner, a path, is loaded).
    recognizer:       optional callable(list of (h, w, 3) uint8 crops) -> list of (text, confidence),
                      Recognition or trocr_np.words.Reading; replaces `model` (e.g. a stand-in with
                      known output in tests).
    detection:        a `detector_np.Detection` of this image already made: detection is skipped
                      (benchmarks compare line finders on one detection).
    """
    craft, ref = resolve_detector(detector_params, options.detect, refiner) if detection is None else (None, None)
    if recognizer is None:
        recognizer = trocr_recognizer(resolve_model(model), options)
    p = _start_page(image, craft, ref, options, source, page, detection)
    t0 = time.perf_counter()
    recs = read_crops(p.crops, recognizer, options)
    return _finish_page(p, recs, time.perf_counter() - t0, options)


def _page_error(source, e, page=None, page_count=None) -> ErrorRecord:
    """Bad input (ValueError, OSError): the message says what is wrong; any other exception on a
    page is a bug, and its record keeps where it happened. Call it in the `except` block."""
    msg = str(e)
    if page is not None and not isinstance(e, (ValueError, OSError)):
        msg = f"{e}\n{traceback.format_exc(limit=-3)}".strip()
    return ErrorRecord(str(source), msg, type(e).__name__, page=page, page_count=page_count)


def _read_pages(pages: list, recognizer: Callable, options: PageOptions) -> Iterator[PageResult | ErrorRecord]:
    """The pending pages recognised and finished, in order: the crops of all of them in one
    `read_crops` call (each page's time its share by crops); if that fails, page by page, so that
    one bad page costs no other."""
    t0 = time.perf_counter()
    try:
        got = read_crops([c for p in pages for c in p.crops], recognizer, options)
    except Exception:  # noqa: BLE001 - the page it belongs to is found below
        got = None
    dt, n = time.perf_counter() - t0, max(1, sum(len(p.crops) for p in pages))
    k = 0
    for p in pages:
        try:
            if got is None:
                t0 = time.perf_counter()
                recs = read_crops(p.crops, recognizer, options)
                share = time.perf_counter() - t0
            else:
                recs, share = got[k:k + len(p.crops)], dt * len(p.crops) / n
                k += len(p.crops)
            res = _finish_page(p, recs, share, options)
        except Exception as e:  # noqa: BLE001 - one bad page must not stop the batch
            yield _page_error(p.source, e, p.page, p.page_count)
            continue
        yield res


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


def _started_pages(files, craft, ref, options: PageOptions, progress) -> Iterator[_Pending | ErrorRecord]:
    """Every page of every file loaded, detected and cropped (`_start_page`), or its error record."""
    for i, path in enumerate(files):
        if progress is not None:
            progress(i, len(files), path)
        t0 = time.perf_counter()
        try:
            n_pages, pages = iter_pages(path, dpi=options.pdf_dpi)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
            yield _page_error(path, e)
            continue
        open_s = time.perf_counter() - t0
        for k in range(1, n_pages + 1):
            t0 = time.perf_counter()
            try:
                pg = next(pages)    # a PDF page is rendered here
                load_s = time.perf_counter() - t0 + (open_s if k == 1 else 0.0)
                p = _start_page(pg, craft, ref, options, str(path), k)
            except Exception as e:  # noqa: BLE001 - one bad page must not stop the batch
                yield _page_error(path, e, k, n_pages)
                continue
            p.page_count, p.timings["load"] = n_pages, p.timings["load"] + load_s
            yield p


def _one_ahead(items: Iterator) -> Iterator:
    """`items`, each next one made on a thread while the caller works on the current one."""
    end = object()
    with ThreadPoolExecutor(1, thread_name_prefix="trocr_np_ahead") as ex:
        nxt = ex.submit(next, items, end)
        while (item := nxt.result()) is not end:
            nxt = ex.submit(next, items, end)
            yield item


def ocr_files(inputs: Iterable, model=None, detector_params=None, options: PageOptions = PageOptions(), *,
              refiner=None, recognizer=None, progress: Callable | None = None) -> Iterator[PageResult | ErrorRecord]:
    """OCR every page of every input (files or folders); a bad file yields an ErrorRecord and the rest go on.

    Models are loaded once. progress: optional callable(i, n, path) called before each file.
    With options.group_images, pages are held back, detected and cropped, until their crops number
    options.batch_size (or the inputs end); then all their crops are recognised together and the
    pages yielded, in input order with any error records between them. A page's "recognize" time
    is its share (by crops) of its batch's. With options.overlap, the next page is detected while
    the current batch is recognised. The other arguments are `ocr_page`'s.
    """
    craft, ref = resolve_detector(detector_params, options.detect, refiner)
    if recognizer is None:  # load the model once for the whole batch
        recognizer = trocr_recognizer(resolve_model(model), options)
    held, n_crops = [], 0            # pages waiting for recognition, and error records among them

    def flush():
        pages = [h for h in held if isinstance(h, _Pending)]
        done = iter(_read_pages(pages, recognizer, options))
        for h in held:
            yield h if isinstance(h, ErrorRecord) else next(done)
        held.clear()

    items = _started_pages(expand_inputs(inputs), craft, ref, options, progress)
    for item in _one_ahead(items) if options.overlap else items:
        held.append(item)
        n_crops += len(item.crops) if isinstance(item, _Pending) else 0
        if not n_crops or n_crops >= options.batch_size or not options.group_images:
            yield from flush()       # (an error record with nothing pending goes out at once)
            n_crops = 0
    yield from flush()
