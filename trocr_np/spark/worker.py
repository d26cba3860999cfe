"""What runs on the Spark executors: row schemas, the per-worker model cache, and one partition function per stage.

Each stage of `trocr_np.spark.stages` is one `DataFrame.mapInPandas` call over Arrow batches:

    run_binary_to_image(job, batches)   content bytes -> image structs (one row per page)
    run_detect(job, batches)            image -> region structs (CRAFT + line finding + reading order)
    run_read(job, batches)              image + regions -> page text and line structs (TrOCR)
    run_draw(job, batches)              image + regions -> image struct with the regions drawn

`job` is a small frozen dataclass built on the driver (column names and the stage's options objects),
bound with functools.partial and pickled to the executors; the functions themselves are found there
by import, so the executors need trocr-np installed (README "Run on Spark").

Models are loaded once per Python worker process, keyed by what was asked for (a model name or path),
and stay loaded while Spark reuses the worker for later tasks (spark.python.worker.reuse, the default).
The threads a task may use are spark.task.cpus (TaskContext.cpus()): `ocr_base.threads.set_threads`
sets our worker threads and OpenBLAS's to that, so that tasks running side by side do not fight for
the cores (Spark itself sets OMP_NUM_THREADS to the same number for Python workers).

A row whose stage fails gets the error in its `exception` column and nulls in the stage's outputs; later
stages pass such rows through (outputs null, the first error kept), and the job goes on.
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image
from pyspark.sql import types as T

from detector_np.draw import draw_regions
from detector_np.weights import load_craft
from ocr_base import threads
from ocr_base.image_io import load_pages

from ..bundled import BUNDLED_NAME, bundled_model_dir
from ..pipeline import PageOptions, PageRegions, PageResult, page_crops, page_lines, page_regions, read_crops, \
    trocr_recognizer

CRAFT_NAME = "craft_mlt_25k"     # the default CRAFT weights (detector_np.load_craft())
EXCEPTION_COL = "exception"

# java.awt.image.BufferedImage type codes, the `mode` of an image struct (ImageType in stages.py)
TYPE_3BYTE_BGR, TYPE_4BYTE_ABGR, TYPE_BYTE_GRAY = 5, 6, 10
CHANNELS = {TYPE_3BYTE_BGR: 3, TYPE_4BYTE_ABGR: 4, TYPE_BYTE_GRAY: 1}

IMAGE_SCHEMA = T.StructType([
    T.StructField("origin", T.StringType()),         # the source file's path
    T.StructField("height", T.IntegerType()),
    T.StructField("width", T.IntegerType()),
    T.StructField("nChannels", T.IntegerType()),
    T.StructField("mode", T.IntegerType()),           # ImageType code (BufferedImage type)
    T.StructField("resolution", T.IntegerType()),     # dpi from the file, 0 when it has none
    T.StructField("data", T.BinaryType()),            # row-major bytes, channels as `mode` says
])
POINTS = T.ArrayType(T.ArrayType(T.DoubleType()))     # [[x, y], ...] page pixels
REGION_SCHEMA = T.StructType([
    T.StructField("index", T.IntegerType()),          # position in reading order, from 0
    T.StructField("page", T.IntegerType()),           # the image's pagenum
    T.StructField("x", T.DoubleType()),               # the quad's top-left corner ...
    T.StructField("y", T.DoubleType()),
    T.StructField("width", T.DoubleType()),           # ... |TR - TL| and |BL - TL| ...
    T.StructField("height", T.DoubleType()),
    T.StructField("score", T.DoubleType()),           # mean CRAFT region score (PageRegions.scores)
    T.StructField("angle", T.DoubleType()),           # ... and TL -> TR in degrees (y down, clockwise > 0)
    T.StructField("points", POINTS),                  # outline polygon: what is drawn
    T.StructField("box", POINTS),                     # the quad TL TR BR BL: what is cropped
    T.StructField("row", T.IntegerType()),            # reading-order row (lines of a row share a text line)
    T.StructField("words", T.ArrayType(POINTS)),      # CRAFT's word boxes in the line (null: none known)
])
LINE_SCHEMA = T.StructType([
    T.StructField("text", T.StringType()),
    T.StructField("polygon", POINTS),
    T.StructField("box", POINTS),
    T.StructField("score", T.DoubleType()),
    T.StructField("confidence", T.DoubleType()),      # mean token probability
    T.StructField("row", T.IntegerType()),
    T.StructField("words", T.ArrayType(T.StructType([  # Line.words (trocr_np.words)
        T.StructField("text", T.StringType()), T.StructField("box", POINTS),
        T.StructField("confidence", T.DoubleType()), T.StructField("method", T.StringType())]))),
    T.StructField("tokens", T.ArrayType(T.StructType([  # Line.tokens: [text, probability]
        T.StructField("text", T.StringType()), T.StructField("probability", T.DoubleType())]))),
])


def line_struct(line) -> dict:
    """A pipeline.Line -> LINE_SCHEMA dict."""
    d = line.to_dict()
    d["words"] = line.words
    d["tokens"] = None if line.tokens is None else [dict(text=t, probability=float(p)) for t, p in line.tokens]
    return {f.name: d[f.name] for f in LINE_SCHEMA.fields}


# ---------------------------------------------------------------- image structs
def image_struct(page: Image.Image, origin: str, mode: int) -> dict:
    """An RGB PIL page -> image struct dict with the bytes laid out as `mode` says."""
    rgb = np.asarray(page.convert("RGB"))
    if mode == TYPE_3BYTE_BGR:
        data = rgb[:, :, ::-1]
    elif mode == TYPE_4BYTE_ABGR:
        data = np.concatenate([np.full(rgb.shape[:2] + (1,), 255, np.uint8), rgb[:, :, ::-1]], axis=2)
    elif mode == TYPE_BYTE_GRAY:
        data = np.asarray(page.convert("L"))
    else:
        raise ValueError(f"unsupported image type {mode} (supported: {sorted(CHANNELS)})")
    try:
        resolution = int(round(float(page.info["dpi"][0])))
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        resolution = 0
    return dict(origin=origin, height=rgb.shape[0], width=rgb.shape[1], nChannels=CHANNELS[mode], mode=mode,
                resolution=resolution, data=np.ascontiguousarray(data).tobytes())


def struct_to_rgb(image: dict) -> np.ndarray:
    """Image struct dict -> (H, W, 3) uint8 RGB."""
    mode, h, w, c = (int(image[k]) for k in ("mode", "height", "width", "nChannels"))
    if CHANNELS.get(mode) != c:
        raise ValueError(f"{image.get('origin')}: image struct mode {mode} with {c} channels is not supported "
                         f"(supported modes and channels: {CHANNELS})")
    a = np.frombuffer(image["data"], np.uint8)
    if a.size != h * w * c:
        raise ValueError(f"{image.get('origin')}: image data has {a.size} bytes, expected {h}x{w}x{c}")
    a = a.reshape(h, w, c)
    if mode == TYPE_BYTE_GRAY:
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    return np.ascontiguousarray(a[:, :, ::-1][:, :, :3] if mode == TYPE_3BYTE_BGR else a[:, :, :0:-1])


def _points(values) -> np.ndarray:
    """Arrow's nested lists (numpy object arrays of arrays) -> (K, 2) float32."""
    return np.asarray([list(p) for p in values], np.float32).reshape(-1, 2)


def regions_from_structs(structs) -> PageRegions:
    rs = list(structs) if structs is not None else []
    words = None
    if rs and all(r.get("words") is not None for r in rs):
        words = [np.asarray([_points(q) for q in r["words"]], np.float32).reshape(-1, 4, 2) for r in rs]
    return PageRegions(boxes=[_points(r["box"]) for r in rs], polygons=[_points(r["points"]) for r in rs],
                       rows=[int(r["row"]) for r in rs], scores=[float(r["score"]) for r in rs], word_boxes=words)


def region_structs(regions: PageRegions, page: int) -> list[dict]:
    out = []
    words = regions.word_boxes or [None] * len(regions.boxes)
    for k, (box, poly, row, score, wb) in enumerate(zip(regions.boxes, regions.polygons, regions.rows,
                                                         regions.scores, words)):
        b = np.asarray(box, np.float64)
        (dx, dy), side = b[1] - b[0], b[3] - b[0]
        out.append(dict(index=k, page=page, x=float(b[0, 0]), y=float(b[0, 1]), width=float(np.hypot(dx, dy)),
                        height=float(np.hypot(*side)), score=float(score), angle=float(np.degrees(np.arctan2(dy, dx))),
                        points=np.asarray(poly, np.float64).tolist(), box=b.tolist(), row=int(row),
                        words=None if wb is None else np.asarray(wb, np.float64).tolist()))
    return out


# ---------------------------------------------------------------- per-worker state
_cache: dict = {}
_cache_lock = threading.Lock()
_task_cpus = None                # what use_task_cpus last set in this process


def cached(key, load: Callable):
    """load() once per Python worker process for each key; later tasks in the same worker reuse it."""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def detector_params(model: str, refiner: str | None):
    """(CRAFT params, LinkRefiner params or None): CRAFT from the package cache (`load_craft`) or a path."""
    from detector_np.weights import load_refiner
    craft = cached(("craft", model), lambda: load_craft(None if model == CRAFT_NAME else model))
    ref = cached(("refiner", refiner), lambda: load_refiner(refiner)) if refiner else None
    return craft, ref


def recognizer_dir(model: str) -> Path:
    """The bundled model's folder for its name, else the folder given (a trocr-np folder, or a Hugging Face
    one, which `load_model` converts once into $TROCR_NP_CACHE)."""
    return Path(bundled_model_dir()) if model == BUNDLED_NAME else Path(model)


def recognizer_model(model: str):
    from ..model import load_model
    return cached(("trocr", model), lambda: load_model(recognizer_dir(model)))


def use_task_cpus() -> int:
    """Threads for this task = spark.task.cpus (TaskContext.cpus()); set once per worker process."""
    from pyspark import TaskContext
    tc = TaskContext.get()
    if tc is None:                                     # not in a Spark task (called on the driver)
        return threads.THREADS
    global _task_cpus
    n = max(1, int(tc.cpus()))
    if _task_cpus != n:
        threads.set_threads(n)
        _task_cpus = n
    return n


# ---------------------------------------------------------------- the row loop
def _map_rows(batches: Iterator[pd.DataFrame], inputs: tuple, outputs: tuple, fn: Callable,
              origin_col: str) -> Iterator[pd.DataFrame]:
    """For every row (a dict): fn(row) -> list of {output: value} (one per output row, usually one).

    A row with an earlier exception, or a null in one of `inputs`, gets null outputs; fn raising gives
    the row the error (naming the row's file, from origin_col) and null outputs. The other columns are
    carried, repeated per output row.
    """
    use_task_cpus()
    for pdf in batches:
        if EXCEPTION_COL not in pdf.columns:
            pdf = pdf.assign(**{EXCEPTION_COL: None})
        rows = []
        for row in pdf.to_dict("records"):
            nulls = {k: None for k in outputs}
            if not _is_null(row[EXCEPTION_COL]) or any(_is_null(row[c]) for c in inputs):
                rows.append({**row, **nulls})
                continue
            try:
                rows += [{**row, **out} for out in fn(row)]
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the job
                rows.append({**row, **nulls, EXCEPTION_COL: f"{_origin(row, origin_col)}: {type(e).__name__}: {e}"})
        cols = [c for c in pdf.columns if c != EXCEPTION_COL] + [k for k in outputs if k not in pdf.columns]
        yield pd.DataFrame(rows, columns=cols + [EXCEPTION_COL])


def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _origin(row: dict, col: str) -> str:
    v = row.get(col)
    return str(v.get("origin") if isinstance(v, dict) else v)


# ---------------------------------------------------------------- the stages' jobs
@dataclass(frozen=True)
class BinaryJob:
    input_col: str
    output_col: str
    pagenum_col: str
    image_type: int
    path_col: str = "path"


def run_binary_to_image(job: BinaryJob, batches):
    def pages(row):
        origin = str(row.get(job.path_col) or "")
        return [{job.output_col: image_struct(p, origin, job.image_type), job.pagenum_col: k}
                for k, p in enumerate(load_pages(bytes(row[job.input_col])))]
    yield from _map_rows(batches, (job.input_col,), (job.output_col, job.pagenum_col), pages, job.path_col)


@dataclass(frozen=True)
class DetectJob:
    input_col: str
    output_col: str
    pagenum_col: str
    model: str
    options: PageOptions          # .detect and .lines are used


def run_detect(job: DetectJob, batches):
    craft, ref = detector_params(job.model, job.options.detect.refiner)

    def regions(row):
        page = row.get(job.pagenum_col)
        regions = page_regions(struct_to_rgb(row[job.input_col]), craft, job.options, refiner=ref)
        return [{job.output_col: region_structs(regions, 0 if _is_null(page) else int(page))}]
    yield from _map_rows(batches, (job.input_col,), (job.output_col,), regions, job.input_col)


@dataclass(frozen=True)
class ReadJob:
    image_col: str
    regions_col: str
    output_col: str
    lines_col: str
    confidence_col: str | None    # None: no page confidence column
    model: str
    options: PageOptions          # .generation, .batch_size, .group_images, .margin are used


def run_read(job: ReadJob, batches):
    recognizer = trocr_recognizer(recognizer_model(job.model), job.options)
    outputs = (job.output_col, job.lines_col) + ((job.confidence_col,) if job.confidence_col else ())

    def read(row):
        image, structs = row[job.image_col], row[job.regions_col]
        rgb = struct_to_rgb(image)
        regions = regions_from_structs(structs)
        crops = page_crops(rgb, regions, job.options)
        lines = page_lines(regions, read_crops(crops, recognizer, job.options),
                           [crop.shape[1] for crop in crops], job.options)
        page = PageResult(source=str(image.get("origin")), page=0, width=rgb.shape[1], height=rgb.shape[0],
                          lines=lines, timings={})
        out = {job.output_col: page.text, job.lines_col: [line_struct(ln) for ln in lines]}
        if job.confidence_col:
            conf = [ln.confidence for ln in lines if ln.confidence == ln.confidence]
            out[job.confidence_col] = float(np.mean(conf)) if conf else None
        return [out]
    yield from _map_rows(batches, (job.image_col, job.regions_col), outputs, read, job.image_col)


@dataclass(frozen=True)
class DrawJob:
    image_col: str
    regions_col: str
    output_col: str
    color: tuple
    line_width: int
    rotated: bool
    filled: bool


def run_draw(job: DrawJob, batches):
    def draw(row):
        image = row[job.image_col]
        rgb = struct_to_rgb(image)
        polys = regions_from_structs(row[job.regions_col]).polygons
        drawn = draw_regions(rgb, polys, color=job.color, width=job.line_width, rotated=job.rotated,
                             fill=tuple(job.color) + (255,) if job.filled else None)
        return [{job.output_col: image_struct(drawn, image.get("origin"), int(image["mode"]))}]
    yield from _map_rows(batches, (job.image_col, job.regions_col), (job.output_col,), draw, job.image_col)


def bind(fn, job):
    """The function mapInPandas gets: fn with its job bound (pickled by reference + the job's values)."""
    return functools.partial(fn, job)
