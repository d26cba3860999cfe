"""The OCR pipeline as four pyspark.ml Transformers, with the names and setters of the production stages.

    BinaryToImage        content bytes -> image struct (+ pagenum: one row per page of a multi-page TIFF)
    ImageTextDetectorV2  image -> text regions (CRAFT, line finding, reading order)    ONE DetectOptions
    ImageToTextV2        image + regions -> page text and line structs (TrOCR)          ONE PageOptions
    ImageDrawRegions     image + regions -> image with the regions drawn               detector_np.draw

Each stage reads its Params on the driver into one options object (`detect_options()`,
`page_options()`), so a bad value fails at `transform`, naming the Param, before any task runs; the
executors get the options object whole (`trocr_np.spark.worker`). Defaults are set with `_setDefault`
from the options' own dataclass fields, except where the production stage documents another
(`sizeThreshold` 10). Params are saved and loaded with the stage (DefaultParamsWritable/Readable), so a
`PipelineModel` of these stages round-trips through `save` / `PipelineModel.load`.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from enum import Enum

from PIL import ImageColor
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasInputCols, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import types as T

from detector_np.detect import DetectOptions
from detector_np.draw import draw_regions

from ..bundled import BUNDLED_NAME
from ..pipeline import PageOptions
from . import worker
from .worker import CRAFT_NAME, EXCEPTION_COL

# sizeThreshold's default in the production stage (detector_np's own default is -1, automatic)
SIZE_THRESHOLD = 10
OUTPUT_FORMATS = ("text",)      # hOCR / ALTO / PAGE (trocr_np.outputs) are not wired in yet
_DRAW = inspect.signature(draw_regions).parameters


class ImageType(Enum):
    """Pixel layout of an image struct: java.awt.image.BufferedImage's type codes (the struct's `mode`)."""
    TYPE_3BYTE_BGR = worker.TYPE_3BYTE_BGR     # 3 bytes per pixel, B G R
    TYPE_4BYTE_ABGR = worker.TYPE_4BYTE_ABGR   # 4 bytes per pixel, A B G R (A = 255: pages are opaque)
    TYPE_BYTE_GRAY = worker.TYPE_BYTE_GRAY     # 1 byte per pixel, PIL's "L" (ITU-R 601-2 luma)


class Color(Enum):
    """Named colours for ImageDrawRegions.setRectColor: java.awt.Color's constants."""
    black = (0, 0, 0)
    blue = (0, 0, 255)
    cyan = (0, 255, 255)
    darkGray = (64, 64, 64)
    gray = (128, 128, 128)
    green = (0, 255, 0)
    lightGray = (192, 192, 192)
    magenta = (255, 0, 255)
    orange = (255, 200, 0)
    pink = (255, 175, 175)
    red = (255, 0, 0)
    white = (255, 255, 255)
    yellow = (255, 255, 0)


def _to_image_type(v) -> int:
    if isinstance(v, ImageType):
        return v.value
    if isinstance(v, str) and v in ImageType.__members__:
        return ImageType[v].value
    if isinstance(v, int) and not isinstance(v, bool) and v in {t.value for t in ImageType}:
        return v
    raise TypeError(f"imageType must be one of {', '.join(ImageType.__members__)}; got {v!r}")


def _to_color(v) -> list:
    if isinstance(v, Color):
        return list(v.value)
    if isinstance(v, str):
        if v in Color.__members__:
            return list(Color[v].value)
        try:
            return list(ImageColor.getrgb(v)[:3])
        except ValueError:
            raise TypeError(f"rectColor: unknown colour name {v!r}") from None
    c = list(v) if isinstance(v, (list, tuple)) else None
    if c is None or len(c) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in c):
        raise TypeError(f"rectColor must be a Color, a colour name or an (R, G, B) tuple of 0..255; got {v!r}")
    return c


def _to_output_format(v) -> str:
    v = TypeConverters.toString(v)
    if v.lower() not in OUTPUT_FORMATS:
        raise TypeError(f"outputFormat {v!r} is not available (available: {', '.join(OUTPUT_FORMATS)}; "
                        "hOCR, ALTO and PAGE are written by trocr-np ocr --format, not yet by this stage)")
    return v.lower()


def _param(name, doc, conv):
    return Param(Params._dummy(), name, doc, typeConverter=conv)


def _out_schema(schema: T.StructType, new: list[T.StructField]) -> T.StructType:
    """The input's columns (an output replaces a column of its name), then new outputs, then `exception`."""
    by_name = {f.name: f for f in new}
    fields = [by_name.get(f.name, f) for f in schema.fields if f.name != EXCEPTION_COL]
    fields += [f for f in new if f.name not in schema.names]
    return T.StructType(fields + [T.StructField(EXCEPTION_COL, T.StringType())])


def _options(build, params: dict):
    """build() -> an options object; its ValueError re-raised naming the stage's Param too.

    params: {options field: the Param it is set from}.
    """
    try:
        return build()
    except ValueError as e:
        names = [p for f, p in params.items() if f".{f} " in str(e)] or list(params.values())
        raise ValueError(f"{' / '.join(names)}: {e}") from None


def _pretrained(name, lang, remote_loc, known: tuple, what: str, is_path, path_what: str) -> str:
    """A known model name, or an existing path (made absolute); anything else is an error listing both."""
    if lang not in (None, "en"):
        raise ValueError(f"no {what} for language {lang!r}; the bundled models read English ('en')")
    if remote_loc is not None:
        raise ValueError(f"remote_loc={remote_loc!r}: trocr-np downloads nothing; pass a local path instead")
    if name is None:
        return known[0]
    if name in known:
        return name
    if is_path(name):
        return os.path.abspath(name)
    raise ValueError(f"unknown pretrained {what} {name!r}; available: {', '.join(known)}, or the path of {path_what}")


class _Stage(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Common to the four stages: keyword construction with Params, copy of a stage's defaults."""

    def _init(self, defaults: dict, kwargs: dict):
        super().__init__()
        self._setDefault(**defaults)
        self._set(**{k: v for k, v in kwargs.items() if v is not None})

    def _get(self, name):
        return self.getOrDefault(getattr(self, name))


# ---------------------------------------------------------------- BinaryToImage
class BinaryToImage(_Stage, HasInputCol, HasOutputCol):
    """`content` (binaryFile bytes) -> `image` struct and `pagenum`, via `ocr_base.image_io.load_pages`.

    Every page is normalised as load_pages does (EXIF rotation, transparency on white, 16-bit scaled),
    then laid out as `imageType` says. A multi-page TIFF gives one row per page, `pagenum` 0, 1, ...;
    the other columns are repeated. A file that cannot be read gives one row with `exception` set and
    a null image (the message names the file); later stages pass it through.
    """
    imageType = _param("imageType", "pixel layout of the image struct (ImageType)", _to_image_type)
    pageNumCol = _param("pageNumCol", "output column of the 0-based page number", TypeConverters.toString)

    def __init__(self, *, inputCol=None, outputCol=None, imageType=None, pageNumCol=None):
        self._init(dict(inputCol="content", outputCol="image", imageType=ImageType.TYPE_3BYTE_BGR.value,
                        pageNumCol="pagenum"), dict(inputCol=inputCol, outputCol=outputCol, imageType=imageType,
                                                    pageNumCol=pageNumCol))

    def setInputCol(self, value): return self._set(inputCol=value)
    def setOutputCol(self, value): return self._set(outputCol=value)
    def setImageType(self, value): return self._set(imageType=value)
    def setPageNumCol(self, value): return self._set(pageNumCol=value)
    def getImageType(self) -> ImageType: return ImageType(self._get("imageType"))
    def getPageNumCol(self) -> str: return self._get("pageNumCol")

    def _transform(self, dataset):
        job = worker.BinaryJob(self.getInputCol(), self.getOutputCol(), self.getPageNumCol(), self._get("imageType"))
        schema = _out_schema(dataset.schema, [T.StructField(job.output_col, worker.IMAGE_SCHEMA),
                                              T.StructField(job.pagenum_col, T.IntegerType())])
        return dataset.mapInPandas(worker.bind(worker.run_binary_to_image, job), schema)


# ---------------------------------------------------------------- ImageTextDetectorV2
class ImageTextDetectorV2(_Stage, HasInputCol, HasOutputCol):
    """`image` -> `text_regions`: CRAFT (`detector_np.detect`), then `detector_np.lines.find_lines` and
    reading order (`trocr_np.pipeline.page_regions`, what `ocr_page` does).

    The Params build ONE `DetectOptions` (`detect_options()`); each maps onto one field:

        scoreThreshold  0.7   -> text_threshold  a component is kept if its peak region score reaches this
        textThreshold   0.4   -> low_text        region score above which a pixel is text
        linkThreshold   0.4   -> link_threshold  affinity score that joins characters into words
        sizeThreshold   10    -> size_threshold  drop regions whose longer side is below this many pixels;
                                                 -1 automatic (half the median text height)
        width           0     -> width           scale the page to this width first (0: canvasSize/magRatio)
        canvasSize      1280  -> canvas_size     long side cap of the network's canvas
        magRatio        1.5   -> mag_ratio       long side magnification before the cap
        withRefiner     False -> refiner         refinerPath when True, else None: with the LinkRefiner
        refinerPath     ""                       the regions are whole lines with polygons (none is bundled)
        modelPath       craft_mlt_25k            CRAFT weights: the name of the package's weights (loaded
                                                 from its cache), or a .pth / .safetensors path

    Each output region is a struct {index, page, x, y, width, height, score, angle, points, box, row}:
    (x, y) is the line quad's top-left corner, width/height its sides, angle the direction of its top
    side in degrees; points is the outline drawn, box the quad cropped, row its reading-order row.
    """
    modelPath = _param("modelPath", "CRAFT weights: 'craft_mlt_25k' or a path", TypeConverters.toString)
    withRefiner = _param("withRefiner", "run the LinkRefiner (whole lines, polygons)", TypeConverters.toBoolean)
    refinerPath = _param("refinerPath", "LinkRefiner weights (.pth / .safetensors)", TypeConverters.toString)
    scoreThreshold = _param("scoreThreshold", "CRAFT text_threshold", TypeConverters.toFloat)
    textThreshold = _param("textThreshold", "CRAFT low_text", TypeConverters.toFloat)
    linkThreshold = _param("linkThreshold", "CRAFT link_threshold", TypeConverters.toFloat)
    sizeThreshold = _param("sizeThreshold", "min longer side in pixels; -1 automatic", TypeConverters.toFloat)
    width = _param("width", "scale pages to this width before CRAFT (0: off)", TypeConverters.toInt)
    canvasSize = _param("canvasSize", "CRAFT canvas_size", TypeConverters.toInt)
    magRatio = _param("magRatio", "CRAFT mag_ratio", TypeConverters.toFloat)
    pageNumCol = _param("pageNumCol", "column with the page number (the regions' `page`)", TypeConverters.toString)

    def __init__(self, **kwargs):
        d = DetectOptions
        self._init(dict(inputCol="image", outputCol="text_regions", modelPath=CRAFT_NAME, withRefiner=False,
                        refinerPath="", scoreThreshold=d.text_threshold, textThreshold=d.low_text,
                        linkThreshold=d.link_threshold, sizeThreshold=SIZE_THRESHOLD, width=0,
                        canvasSize=d.canvas_size, magRatio=d.mag_ratio, pageNumCol="pagenum"), kwargs)

    @classmethod
    def pretrained(cls, name=None, lang=None, remote_loc=None) -> "ImageTextDetectorV2":
        """A detector with the package's CRAFT weights (name None or 'craft_mlt_25k') or weights at a path."""
        return cls(modelPath=_pretrained(name, lang, remote_loc, (CRAFT_NAME,), "detector", os.path.isfile,
                                         "CRAFT weights (.pth / .safetensors)"))

    def setInputCol(self, value): return self._set(inputCol=value)
    def setOutputCol(self, value): return self._set(outputCol=value)
    def setModelPath(self, value): return self._set(modelPath=value)
    def setWithRefiner(self, value): return self._set(withRefiner=value)
    def setRefinerPath(self, value): return self._set(refinerPath=value)
    def setScoreThreshold(self, value): return self._set(scoreThreshold=value)
    def setTextThreshold(self, value): return self._set(textThreshold=value)
    def setLinkThreshold(self, value): return self._set(linkThreshold=value)
    def setSizeThreshold(self, value): return self._set(sizeThreshold=value)
    def setWidth(self, value): return self._set(width=value)
    def setCanvasSize(self, value): return self._set(canvasSize=value)
    def setMagRatio(self, value): return self._set(magRatio=value)
    def setPageNumCol(self, value): return self._set(pageNumCol=value)
    def getModelPath(self) -> str: return self._get("modelPath")
    def getWithRefiner(self) -> bool: return self._get("withRefiner")
    def getRefinerPath(self) -> str: return self._get("refinerPath")
    def getScoreThreshold(self) -> float: return self._get("scoreThreshold")
    def getTextThreshold(self) -> float: return self._get("textThreshold")
    def getLinkThreshold(self) -> float: return self._get("linkThreshold")
    def getSizeThreshold(self) -> float: return self._get("sizeThreshold")
    def getWidth(self) -> int: return self._get("width")
    def getCanvasSize(self) -> int: return self._get("canvasSize")
    def getMagRatio(self) -> float: return self._get("magRatio")
    def getPageNumCol(self) -> str: return self._get("pageNumCol")

    def detect_options(self) -> DetectOptions:
        """The one DetectOptions these Params stand for (see the class docstring)."""
        g = self._get
        if g("withRefiner") and not g("refinerPath"):
            raise ValueError("withRefiner is True but refinerPath is not set: no LinkRefiner weights are bundled; "
                             "setRefinerPath('craft_refiner_CTW1500.pth')")
        return _options(lambda: DetectOptions(
            canvas_size=g("canvasSize"), mag_ratio=g("magRatio"), width=g("width") or None,
            text_threshold=g("scoreThreshold"), link_threshold=g("linkThreshold"), low_text=g("textThreshold"),
            size_threshold=g("sizeThreshold"),
            refiner=g("refinerPath") if g("withRefiner") else None),
            dict(text_threshold="scoreThreshold", low_text="textThreshold", link_threshold="linkThreshold",
                 size_threshold="sizeThreshold", width="width", canvas_size="canvasSize", mag_ratio="magRatio"))

    def _transform(self, dataset):
        job = worker.DetectJob(self.getInputCol(), self.getOutputCol(), self.getPageNumCol(), self.getModelPath(),
                               PageOptions(detect=self.detect_options()))
        schema = _out_schema(dataset.schema, [T.StructField(job.output_col, T.ArrayType(worker.REGION_SCHEMA))])
        return dataset.mapInPandas(worker.bind(worker.run_detect, job), schema)


# ---------------------------------------------------------------- ImageToTextV2
class ImageToTextV2(_Stage, HasInputCols, HasOutputCol):
    """`image` + `text_regions` -> `text` (the page text, rows in reading order) and `text_lines`
    (one struct per region: text, polygon, box, score, confidence, row), like `ocr_page`.

    The Params build ONE `PageOptions` (`page_options()`) for the recogniser half of `ocr_page`:

        numBeams       -> generation.num_beams        (unset: the checkpoint's generation_config.json)
        maxNewTokens   -> generation.max_new_tokens   (64)
        batchSize      -> batch_size                  crops per TrOCR batch (16)
        groupImages    -> group_images                True: a page's crops together in batches of
                                                      batchSize; False: one crop at a time
        margin         -> margin                      context around each crop, fraction of its height
        modelPath      the recogniser: 'trocr-np-handwritten-small' (bundled), a converted folder, or a
                       Hugging Face TrOCR folder (`load_model` converts it once into $TROCR_NP_CACHE)

    The image column is inputCols[0]; the regions column is regionsColumn, else inputCols[1].
    includeConfidence adds `confidenceCol`, the page's mean line confidence. outputFormat: "text".
    """
    regionsColumn = _param("regionsColumn", "column of text regions (default inputCols[1])", TypeConverters.toString)
    linesCol = _param("linesCol", "output column of the line structs", TypeConverters.toString)
    groupImages = _param("groupImages", "recognise a page's crops in batches (else one by one)",
                         TypeConverters.toBoolean)
    batchSize = _param("batchSize", "crops per TrOCR batch", TypeConverters.toInt)
    numBeams = _param("numBeams", "beam width (1: greedy)", TypeConverters.toInt)
    maxNewTokens = _param("maxNewTokens", "tokens generated per line at most", TypeConverters.toInt)
    margin = _param("margin", "crop margin, fraction of the line height", TypeConverters.toFloat)
    modelPath = _param("modelPath", "recogniser: bundled name or folder", TypeConverters.toString)
    includeConfidence = _param("includeConfidence", "add the page confidence column", TypeConverters.toBoolean)
    confidenceCol = _param("confidenceCol", "output column of the page confidence", TypeConverters.toString)
    outputFormat = _param("outputFormat", "page text format: text", _to_output_format)

    def __init__(self, **kwargs):
        p = PageOptions
        self._init(dict(inputCols=["image", "text_regions"], outputCol="text", linesCol="text_lines",
                        groupImages=p.group_images, batchSize=p.batch_size, numBeams=p.generation.num_beams,
                        maxNewTokens=p.generation.max_new_tokens, margin=p.margin, modelPath=BUNDLED_NAME,
                        includeConfidence=False, confidenceCol="confidence", outputFormat="text"), kwargs)

    @classmethod
    def pretrained(cls, name=None, lang=None, remote_loc=None) -> "ImageToTextV2":
        """The bundled recogniser (name None or 'trocr-np-handwritten-small') or a model folder."""
        return cls(modelPath=_pretrained(name, lang, remote_loc, (BUNDLED_NAME,), "recogniser",
                                         lambda p: os.path.isfile(os.path.join(p, "config.json")),
                                         "a converted or Hugging Face TrOCR folder"))

    def setInputCols(self, value): return self._set(inputCols=value)
    def setOutputCol(self, value): return self._set(outputCol=value)
    def setRegionsColumn(self, value): return self._set(regionsColumn=value)
    def setLinesCol(self, value): return self._set(linesCol=value)
    def setGroupImages(self, value): return self._set(groupImages=value)
    def setBatchSize(self, value): return self._set(batchSize=value)
    def setNumBeams(self, value): return self._set(numBeams=value)
    def setMaxNewTokens(self, value): return self._set(maxNewTokens=value)
    def setMargin(self, value): return self._set(margin=value)
    def setModelPath(self, value): return self._set(modelPath=value)
    def setIncludeConfidence(self, value): return self._set(includeConfidence=value)
    def setConfidenceCol(self, value): return self._set(confidenceCol=value)
    def setOutputFormat(self, value): return self._set(outputFormat=value)
    def getRegionsColumn(self) -> str:
        return self._get("regionsColumn") if self.isDefined(self.regionsColumn) else self.getInputCols()[1]
    def getLinesCol(self) -> str: return self._get("linesCol")
    def getGroupImages(self) -> bool: return self._get("groupImages")
    def getBatchSize(self) -> int: return self._get("batchSize")
    def getNumBeams(self): return self._get("numBeams") if self.isDefined(self.numBeams) else None
    def getMaxNewTokens(self) -> int: return self._get("maxNewTokens")
    def getMargin(self) -> float: return self._get("margin")
    def getModelPath(self) -> str: return self._get("modelPath")
    def getIncludeConfidence(self) -> bool: return self._get("includeConfidence")
    def getConfidenceCol(self) -> str: return self._get("confidenceCol")
    def getOutputFormat(self) -> str: return self._get("outputFormat")

    def page_options(self) -> PageOptions:
        """The one PageOptions these Params stand for (see the class docstring)."""
        return _options(lambda: PageOptions(
            generation=dataclasses.replace(PageOptions.generation, num_beams=self.getNumBeams(),
                                           max_new_tokens=self.getMaxNewTokens()),
            batch_size=self.getBatchSize(), group_images=self.getGroupImages(), margin=self.getMargin()),
            dict(num_beams="numBeams", max_new_tokens="maxNewTokens", batch_size="batchSize",
                 group_images="groupImages", margin="margin"))

    def _transform(self, dataset):
        cols = self.getInputCols()
        if len(cols) < 1 or (len(cols) < 2 and not self.isDefined(self.regionsColumn)):
            raise ValueError(f"ImageToTextV2 inputCols must be [image column, regions column]; got {cols!r}")
        conf = self.getConfidenceCol() if self.getIncludeConfidence() else None
        job = worker.ReadJob(cols[0], self.getRegionsColumn(), self.getOutputCol(), self.getLinesCol(), conf,
                             self.getModelPath(), self.page_options())
        new = [T.StructField(job.output_col, T.StringType()),
               T.StructField(job.lines_col, T.ArrayType(worker.LINE_SCHEMA))]
        new += [T.StructField(conf, T.DoubleType())] if conf else []
        return dataset.mapInPandas(worker.bind(worker.run_read, job), _out_schema(dataset.schema, new))


# ---------------------------------------------------------------- ImageDrawRegions
class ImageDrawRegions(_Stage, HasInputCol, HasOutputCol):
    """`image` + `text_regions` -> `image_with_regions` (an image struct of the same mode), drawn by
    `detector_np.draw.draw_regions` with each region's outline polygon (`points`).

    rectColor (a Color, a colour name or an (R, G, B) tuple) -> color; lineWidth -> width;
    rotated -> rotated (False: axis-aligned rectangles); filledRect -> fill with rectColor, opaque.
    """
    inputRegionsCol = _param("inputRegionsCol", "column of text regions", TypeConverters.toString)
    rectColor = _param("rectColor", "outline colour [R, G, B]", _to_color)
    lineWidth = _param("lineWidth", "outline width in pixels", TypeConverters.toInt)
    rotated = _param("rotated", "draw the regions as they are (False: upright rectangles)", TypeConverters.toBoolean)
    filledRect = _param("filledRect", "fill the regions with rectColor", TypeConverters.toBoolean)

    def __init__(self, **kwargs):
        self._init(dict(inputCol="image", inputRegionsCol="text_regions", outputCol="image_with_regions",
                        rectColor=_DRAW["color"].default, lineWidth=_DRAW["width"].default,
                        rotated=_DRAW["rotated"].default, filledRect=False), kwargs)

    def setInputCol(self, value): return self._set(inputCol=value)
    def setOutputCol(self, value): return self._set(outputCol=value)
    def setInputRegionsCol(self, value): return self._set(inputRegionsCol=value)
    def setRectColor(self, value): return self._set(rectColor=value)
    def setLineWidth(self, value): return self._set(lineWidth=value)
    def setRotated(self, value): return self._set(rotated=value)
    def setFilledRect(self, value): return self._set(filledRect=value)
    def getInputRegionsCol(self) -> str: return self._get("inputRegionsCol")
    def getRectColor(self) -> tuple: return tuple(self._get("rectColor"))
    def getLineWidth(self) -> int: return self._get("lineWidth")
    def getRotated(self) -> bool: return self._get("rotated")
    def getFilledRect(self) -> bool: return self._get("filledRect")

    def _transform(self, dataset):
        if self.getLineWidth() < 0:
            raise ValueError(f"lineWidth must be >= 0; got {self.getLineWidth()}")
        job = worker.DrawJob(self.getInputCol(), self.getInputRegionsCol(), self.getOutputCol(), self.getRectColor(),
                             self.getLineWidth(), self.getRotated(), self.getFilledRect())
        schema = _out_schema(dataset.schema, [T.StructField(job.output_col, worker.IMAGE_SCHEMA)])
        return dataset.mapInPandas(worker.bind(worker.run_draw, job), schema)
