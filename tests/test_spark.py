"""trocr_np.spark: the production pipeline's code on a local[2] SparkSession, held equal to the in-process API.

The seed pipeline (BinaryToImage -> ImageTextDetectorV2 -> ImageToTextV2 -> ImageDrawRegions, refiner off)
runs over examples/*.png plus one corrupt file; each page's text and lines must equal `ocr_page` with the
same options written out by hand (so the Param -> options mapping is checked too), its regions must equal
`detect` + `find_lines` in reading order, its drawn image `draw_regions`, and the corrupt file's row must
carry an exception while the others go through. The pipeline is saved and loaded, and the loaded one runs
20 files over 4 partitions against `ocr_files`.

Needs Java (.ci/run installs openjdk-17-jre-headless when `java` is missing) and the `spark` extra.
"""
import ast
import dataclasses
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install -e '.[test,spark]'")

from detector_np import DetectOptions, load_craft                      # noqa: E402
from detector_np.detect import detect                                   # noqa: E402
from detector_np.draw import draw_regions                               # noqa: E402
from detector_np.layout import reading_order                            # noqa: E402
from detector_np.lines import find_lines                                # noqa: E402
from ocr_base.image_io import load_image, load_pages                    # noqa: E402
from trocr_np import bundled                                            # noqa: E402
from trocr_np.generate import GenerationOptions                         # noqa: E402
from trocr_np.model import load_model                                   # noqa: E402
from trocr_np.pipeline import PageOptions, ocr_files, ocr_page          # noqa: E402
from trocr_np.spark import (BinaryToImage, Color, ImageDrawRegions, ImageTextDetectorV2, ImageToTextV2,  # noqa: E402
                            ImageType, PipelineModel)
from trocr_np.spark import worker                                       # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))
# the seed's detector settings, written out as the options they must become (refiner off)
SEED_OPTIONS = PageOptions(detect=DetectOptions(width=500, link_threshold=0.3, size_threshold=-1),
                           generation=GenerationOptions(max_new_tokens=64), group_images=True)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    assert shutil.which("java"), "java not found: install openjdk-17-jre-headless (.ci/run does)"
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    # the Python workers must import this checkout's packages, not another installed copy
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    session = (SparkSession.builder.master("local[2]").appName("trocr-np-tests")
               .config("spark.ui.enabled", "false").config("spark.driver.memory", "1g")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def seed_pipeline():
    """The issue's pipeline as printed, with the refiner off."""
    binary_to_image = BinaryToImage().setImageType(ImageType.TYPE_3BYTE_BGR)
    text_detector = ImageTextDetectorV2.pretrained().setInputCol("image").setOutputCol("text_regions") \
        .setWithRefiner(False).setSizeThreshold(-1).setLinkThreshold(0.3).setWidth(500)
    ocr = ImageToTextV2.pretrained().setInputCols(["image", "text_regions"]).setGroupImages(True) \
        .setOutputCol("text").setRegionsColumn("text_regions")
    draw = ImageDrawRegions().setInputCol("image").setInputRegionsCol("text_regions") \
        .setOutputCol("image_with_regions").setRectColor(Color.green).setRotated(True)
    return PipelineModel(stages=[binary_to_image, text_detector, ocr, draw])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("pages")
    for p in EXAMPLES:
        shutil.copy(p, d / p.name)
    good = (d / EXAMPLES[0].name).read_bytes()
    (d / "corrupt.png").write_bytes(good[:200])                         # a truncated PNG
    return d


@pytest.fixture(scope="module")
def rows(spark, folder):
    df = spark.read.format("binaryFile").load(str(folder))
    result = seed_pipeline().transform(df).cache()
    return {Path(r["path"].replace("file:", "")).name: r.asDict(recursive=True) for r in result.collect()}


@pytest.fixture(scope="module")
def models():
    return load_craft(), load_model(bundled.bundled_model_dir())


def test_options_from_the_seed_params():
    stages = seed_pipeline().stages
    assert stages[1].detect_options() == SEED_OPTIONS.detect
    assert stages[2].page_options().generation == SEED_OPTIONS.generation
    assert ImageTextDetectorV2().detect_options() == DetectOptions(size_threshold=10)  # the production default


def test_text_equals_ocr_page(rows, models):
    craft, model = models
    assert len(EXAMPLES) >= 2
    for p in EXAMPLES:
        row = rows[p.name]
        want = ocr_page(p, model, craft, SEED_OPTIONS)
        assert row["exception"] is None
        assert row["text"] == want.text and want.text.strip()
        assert row["text_lines"] == [worker.line_struct(ln) for ln in want.lines]
        assert row["pagenum"] == 0


def test_regions_equal_detect_and_find_lines(rows, models):
    craft, _ = models
    for p in EXAMPLES:
        rgb = np.asarray(load_image(p))
        det = detect(rgb, craft, SEED_OPTIONS.detect)
        boxes, polys = find_lines(det, (rgb.shape[1], rgb.shape[0]), SEED_OPTIONS.lines)
        order = [i for r in reading_order(boxes) for i in r]
        regions = rows[p.name]["text_regions"]
        assert len(regions) == len(boxes) > 0
        for k, (r, i) in enumerate(zip(regions, order)):
            np.testing.assert_array_equal(np.asarray(r["box"], np.float32), boxes[i])
            np.testing.assert_array_equal(np.asarray(r["points"], np.float32), polys[i])
            tl, tr, bl = boxes[i][0], boxes[i][1], boxes[i][3]
            assert (r["index"], r["page"]) == (k, 0)
            assert (r["x"], r["y"]) == (float(tl[0]), float(tl[1]))
            assert r["width"] == pytest.approx(float(np.hypot(*(tr - tl))), abs=1e-4)
            assert r["height"] == pytest.approx(float(np.hypot(*(bl - tl))), abs=1e-4)
            assert r["angle"] == pytest.approx(float(np.degrees(np.arctan2(tr[1] - tl[1], tr[0] - tl[0]))), abs=1e-4)


def test_images_and_drawn_regions(rows):
    for p in EXAMPLES:
        row = rows[p.name]
        page = load_image(p)
        img = row["image"]
        assert (img["width"], img["height"], img["nChannels"], img["mode"]) == (*page.size, 3, 5)
        np.testing.assert_array_equal(worker.struct_to_rgb(img), np.asarray(page))
        polys = [np.asarray(r["points"], np.float32) for r in row["text_regions"]]
        want = draw_regions(page, polys, color=(0, 255, 0), rotated=True)
        np.testing.assert_array_equal(worker.struct_to_rgb(row["image_with_regions"]), np.asarray(want))
        assert row["image_with_regions"]["origin"] == img["origin"]


def test_corrupt_file_gets_an_exception_and_the_job_goes_on(rows):
    assert set(rows) == {p.name for p in EXAMPLES} | {"corrupt.png"}
    bad = rows["corrupt.png"]
    assert "corrupt.png" in bad["exception"] and "ImageError" in bad["exception"]
    assert all(bad[c] is None for c in ("image", "text_regions", "text", "text_lines", "image_with_regions"))


WORD_PAGE = (260, 64)


def _word_page(k):
    words = ["harbour", "lantern", "meadow", "copper", "violet", "saddle", "winter", "pebble", "candle", "orchard"]
    assert 0 <= k < len(words)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 28)
    im = Image.new("RGB", WORD_PAGE, "white")
    ImageDraw.Draw(im).text((12, 14), f"{words[k]} {k}", fill="black", font=font)
    return im


def test_saved_pipeline_runs_20_files_over_4_partitions(spark, tmp_path, models):
    path = tmp_path / "pipeline"
    seed_pipeline().write().save(str(path))
    loaded = PipelineModel.load(str(path))
    for a, b in zip(seed_pipeline().stages, loaded.stages):
        assert type(a) is type(b)
        params = [{p.name: v for p, v in stage.extractParamMap().items()} for stage in (a, b)]
        assert params[0] == params[1]

    files = tmp_path / "twenty"
    files.mkdir()
    for k in range(20):                                                 # 10 pages, each twice
        _word_page(k % 10).save(files / f"p{k:02d}.png")
    # the pages are small: CRAFT at their own width (the seed's 500 would only upscale them, 4x the work)
    loaded.stages[1].setWidth(WORD_PAGE[0])
    options = dataclasses.replace(SEED_OPTIONS, detect=dataclasses.replace(SEED_OPTIONS.detect, width=WORD_PAGE[0]))
    df = spark.read.format("binaryFile").load(str(files)).repartition(4)
    out = loaded.transform(df).select("path", "text", "exception", "pagenum").cache()
    from pyspark.sql.functions import spark_partition_id
    assert out.select(spark_partition_id().alias("pid")).distinct().count() == 4
    got = {Path(r["path"].replace("file:", "")).name: r for r in out.collect()}
    craft, model = models
    first_ten = {Path(r.source).name: r.text for r in ocr_files(sorted(files.iterdir())[:10], model, craft, options)}
    want = {f"p{k:02d}.png": first_ten[f"p{k % 10:02d}.png"] for k in range(20)}
    assert len(got) == 20 and all(r["exception"] is None and r["pagenum"] == 0 for r in got.values())
    assert {k: r["text"] for k, r in got.items()} == want
    assert sum(bool(t.strip()) for t in want.values()) >= 16             # the pages were read, not blank


def test_multipage_tiff_gives_one_row_per_page(spark, tmp_path):
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (20 + k, 30, 3), dtype=np.uint8)) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    (tmp_path / "three.tif").write_bytes(buf.getvalue())
    df = spark.read.format("binaryFile").load(str(tmp_path / "three.tif"))
    rows = BinaryToImage().transform(df).orderBy("pagenum").collect()
    pages = load_pages(tmp_path / "three.tif")
    assert [r["pagenum"] for r in rows] == [0, 1, 2]
    for r, page in zip(rows, pages):
        np.testing.assert_array_equal(worker.struct_to_rgb(r["image"].asDict()), np.asarray(page))
        assert r["exception"] is None and r["image"]["origin"].endswith("three.tif")


def _probe(batches):
    import trocr_np
    from ocr_base import threads
    for pdf in batches:
        n = worker.use_task_cpus()
        yield pdf.assign(file=trocr_np.__file__, threads=threads.THREADS, cpus=n)


def test_executors_use_this_checkout_and_the_task_cpus(spark):
    import trocr_np
    from pyspark import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])          # _probe lives in this test file
    rows = spark.range(4).repartition(2).mapInPandas(_probe, "id long, file string, threads long, cpus long").collect()
    assert {r["file"] for r in rows} == {trocr_np.__file__}
    cpus = int(spark.conf.get("spark.task.cpus", "1"))
    assert {(r["threads"], r["cpus"]) for r in rows} == {(cpus, cpus)}


# ---------------------------------------------------------------- without Spark jobs
@pytest.mark.parametrize("kind", list(ImageType))
def test_image_struct_round_trip(kind):
    rng = np.random.default_rng(2)
    page = Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8))
    s = worker.image_struct(page, "x.png", kind.value)
    assert (s["height"], s["width"], s["mode"]) == (7, 5, kind.value)
    assert len(s["data"]) == 7 * 5 * s["nChannels"]
    want = np.asarray(page.convert("L").convert("RGB")) if kind is ImageType.TYPE_BYTE_GRAY else np.asarray(page)
    np.testing.assert_array_equal(worker.struct_to_rgb(s), want)
    if kind is ImageType.TYPE_3BYTE_BGR:
        assert s["data"][:3] == bytes(np.asarray(page)[0, 0, ::-1])


def test_bad_params_and_unknown_models_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown pretrained detector 'image_text_detector_v2'.*craft_mlt_25k"):
        ImageTextDetectorV2.pretrained("image_text_detector_v2")
    with pytest.raises(ValueError, match="unknown pretrained recogniser 'ocr_base_handwritten'.*trocr-np-handwritten"):
        ImageToTextV2.pretrained("ocr_base_handwritten")
    with pytest.raises(ValueError, match="downloads nothing"):
        ImageToTextV2.pretrained("trocr-np-handwritten-small", "en", "clinical/ocr")
    with pytest.raises(ValueError, match="scoreThreshold: DetectOptions.text_threshold"):
        ImageTextDetectorV2().setScoreThreshold(1.5).detect_options()
    with pytest.raises(ValueError, match="refinerPath"):
        ImageTextDetectorV2().setWithRefiner(True).detect_options()
    with pytest.raises(ValueError, match="numBeams"):
        ImageToTextV2().setNumBeams(0).page_options()
    with pytest.raises(TypeError, match="outputFormat 'alto' is not available"):
        ImageToTextV2().setOutputFormat("alto")
    with pytest.raises(TypeError, match="rectColor"):
        ImageDrawRegions().setRectColor((300, 0, 0))
    assert ImageDrawRegions().setRectColor("blue").getRectColor() == (0, 0, 255)
    assert ImageToTextV2.pretrained(str(bundled.bundled_model_dir())).getModelPath() == str(bundled.bundled_model_dir())


def test_hf_folder_is_loaded_once_per_worker(tmp_path, monkeypatch):
    from conftest import make_hf_trocr
    from trocr_np.convert import convert_trocr
    _, hf_dir = make_hf_trocr(tmp_path)
    monkeypatch.setenv("TROCR_NP_CACHE", str(tmp_path / "cache"))
    assert ImageToTextV2.pretrained(str(hf_dir)).getModelPath() == str(hf_dir)
    a = worker.recognizer_model(str(hf_dir))
    assert worker.recognizer_model(str(hf_dir)) is a                     # cached in the worker
    b = load_model(convert_trocr(hf_dir, tmp_path / "ref"))
    assert a.params.keys() == b.params.keys()
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_nothing_else_imports_trocr_np_spark():
    bad = []
    for pkg in ("ocr_base", "detector_np", "trocr_np"):
        for p in (ROOT / pkg).rglob("*.py"):
            if "spark" in p.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [f"{node.module}"] if isinstance(node, ast.ImportFrom) and node.module else []
                if any("spark" in n for n in names):
                    bad.append(str(p.relative_to(ROOT)))
    assert not bad
    r = subprocess.run([sys.executable, "-c", "import sys, trocr_np, trocr_np.pipeline, trocr_np.cli; "
                        "sys.exit(any(m.startswith(('pyspark', 'trocr_np.spark')) for m in sys.modules))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
