"""End-to-end page OCR with the real CRAFT detector on rendered pages.

The recogniser here is a stand-in with known output: every rendered line has its
own ink colour, and the stand-in names the line a crop came from by its ink
(`pipeline_pages.ink_index`). So the tests check the geometry (detected line
boxes cover each rendered line, IoU >= 0.5), that every crop is the right line,
and the reading order, independently of any TrOCR model. CRAFT forwards are kept
few and small (<= 640 px canvases, ~1 s each).
"""
import json

import numpy as np
import pytest
from PIL import Image

from dataclasses import replace

from pipeline_pages import SENTENCES, five_files_one_corrupt, ink, ink_index, font, one_column_page, polygon_iou, render_page, two_column_page
from detector_np import DetectOptions, LineOptions, group_lines
from detector_np.draw import draw_regions
from ocr_base.image_io import ImageError
from trocr_np.pipeline import ErrorRecord, PageOptions, PageResult, ocr_files, ocr_page

MIN_IOU = 0.5
SMALL = PageOptions(detect=DetectOptions(canvas_size=640, mag_ratio=1.0))  # keep CRAFT canvases small in tests


@pytest.fixture(scope="module")
def craft():
    from detector_np.weights import load_craft
    return load_craft()


def ink_recognizer(n=18, calls=None):
    def rec(crops):
        if calls is not None:
            calls.append(len(crops))
        return [(f"line{ink_index(c, n)}", 1.0) for c in crops]
    return rec


PAGES = {
    "one-column": lambda: one_column_page(0.0),
    "one-column-rotated-2deg": lambda: one_column_page(2.0),
    "two-columns-rotated-minus-1.5deg": lambda: two_column_page(-1.5),
}


@pytest.fixture(scope="module")
def results(craft):
    """Each page OCR'd once (the expensive part), shared by the checks below."""
    out = {}
    for name, make in PAGES.items():
        im, quads, texts = make()
        out[name] = (im, quads, ocr_page(im, detector_params=craft, recognizer=ink_recognizer(), options=SMALL))
    return out


@pytest.mark.parametrize("name", list(PAGES))
def test_line_boxes_cover_rendered_lines_in_reading_order(results, name):
    im, quads, res = results[name]
    assert isinstance(res, PageResult) and (res.width, res.height) == im.size
    assert len(res.lines) == len(quads), [ln.text for ln in res.lines]
    for i, gt in enumerate(quads):  # result line i is rendered line i, and covers it
        iou = polygon_iou(res.lines[i].box, gt, im.size)
        assert iou >= MIN_IOU, (i, iou)
        assert res.lines[i].text == f"line{i}", "the crop of line i shows line i's ink"
    assert res.text == "\n".join(f"line{i}" for i in range(len(quads)))
    for ln in res.lines:
        assert 0.4 < ln.score <= 1.2 and ln.confidence == 1.0
    assert set(res.timings) == {"load", "detect", "group", "crop", "recognize", "total"}


@pytest.mark.parametrize("name", list(PAGES))
def test_drawing_puts_the_colour_on_every_region(results, name):
    im, _, res = results[name]
    green = (0, 255, 0)
    out = np.asarray(draw_regions(res.image, res.polygons(), color=green, width=2))
    is_green = np.all(out == green, axis=-1)
    assert not np.all(np.asarray(im) == green, axis=-1).any()
    for p in res.polygons():
        x0, y0 = np.floor(p.min(0)).astype(int) - 2
        x1, y1 = np.ceil(p.max(0)).astype(int) + 2
        ring = is_green[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1]
        assert ring.sum() >= (x1 - x0), "an outline along each region"


def test_json_round_trip(results):
    res = results["one-column"][2]
    d = json.loads(res.to_json())
    assert d["text"] == res.text and len(d["lines"]) == len(res.lines)
    assert set(d["lines"][0]) == {"text", "polygon", "box", "score", "confidence", "row"}
    assert "image" not in d


def test_group_images_false_recognises_one_crop_at_a_time(craft):
    im, quads, _ = two_column_page(0.0)
    grouped, single = [], []
    a = ocr_page(im, detector_params=craft, recognizer=ink_recognizer(calls=grouped), options=SMALL)
    b = ocr_page(im, detector_params=craft, recognizer=ink_recognizer(calls=single), options=replace(SMALL, group_images=False))
    assert grouped == [len(quads)] and single == [1] * len(quads)
    assert a.text == b.text == "\n".join(f"line{i}" for i in range(len(quads)))


def test_blank_page_gives_no_lines(craft):
    res = ocr_page(Image.new("RGB", (200, 120), "white"), detector_params=craft, recognizer=ink_recognizer(), options=SMALL)
    assert res.lines == [] and res.text == ""


def test_bad_inputs(craft, tmp_path):
    with pytest.raises(ImageError, match="corrupt|not a readable"):
        ocr_page(b"\x89PNG\r\n\x1a\n garbage", detector_params=craft, recognizer=ink_recognizer())
    im, _, _ = one_column_page()
    with pytest.raises(ValueError, match="recogniser returned 0 results for 5 crops"):
        ocr_page(im, detector_params=craft, recognizer=lambda crops: [], options=SMALL)
    with pytest.raises(FileNotFoundError):
        ocr_page(tmp_path / "missing.png", detector_params=craft, recognizer=ink_recognizer())


def _word_image(i, word):
    return render_page([(12, 14, word, i, 26)], (220, 64), first_ink=i)[0]


def test_batch_of_five_with_one_corrupt_file(craft, tmp_path):
    paths = five_files_one_corrupt(tmp_path / "batch")
    seen = []
    out = list(ocr_files([tmp_path / "batch"], detector_params=craft, recognizer=ink_recognizer(5),
                         progress=lambda i, n, p: seen.append((i, n, p.name)), options=SMALL))
    assert [type(r) for r in out] == [PageResult, PageResult, ErrorRecord, PageResult, PageResult]
    assert [r.source for r in out] == [str(p) for p in paths]
    assert [r.text for r in out if r.ok] == ["line0", "line1", "line3", "line4"]
    err = out[2]
    assert "2_corrupt.png" in err.source and err.error_type == "ImageError" and "corrupt" in err.error
    assert seen == [(i, 5, p.name) for i, p in enumerate(paths)]
    assert json.loads(err.to_json())["error"] == err.error


def test_consecutive_pages_recognised_together_one_bad_page_costs_no_other(craft, tmp_path):
    """ocr_files holds pages until batch_size crops and recognises them in one call, yielding the pages
    in input order with the error records between them; a recogniser failure on one page's crops
    becomes that page's error record, and the other pages of its batch are still read."""
    paths = five_files_one_corrupt(tmp_path / "batch")
    calls = []
    out = list(ocr_files(paths, detector_params=craft, recognizer=ink_recognizer(5, calls), options=SMALL))
    assert calls == [4]                            # four one-line pages, one call
    assert [r.text if r.ok else r.error_type for r in out] == ["line0", "line1", "ImageError", "line3", "line4"]
    ahead = list(ocr_files(paths, detector_params=craft, recognizer=ink_recognizer(5), options=replace(SMALL, overlap=True)))
    same = lambda rs: [(r.source, r.ok, r.text if r.ok else r.error, r.ok and [ln.box for ln in r.lines]) for r in rs]
    assert same(ahead) == same(out)                # detection one page ahead on a thread: the same records
    calls.clear()
    out = list(ocr_files(paths, detector_params=craft, recognizer=ink_recognizer(5, calls),
                         options=replace(SMALL, batch_size=2)))
    assert calls == [2, 2] and [r.ok for r in out] == [True, True, False, True, True]

    def fails_on_delta(crops):
        if any(ink_index(c, 5) == 3 for c in crops):
            raise RuntimeError("recogniser broke")
        return ink_recognizer(5)(crops)
    out = list(ocr_files(paths, detector_params=craft, recognizer=fails_on_delta, options=SMALL))
    assert [r.text if r.ok else r.error_type for r in out] == ["line0", "line1", "ImageError", "RuntimeError", "line4"]
    assert out[3].source == str(paths[3]) and out[3].page == 1 and "Traceback" in out[3].error


def test_multi_page_tiff_gives_one_result_per_page(craft, tmp_path):
    pages = [_word_image(0, "first"), _word_image(1, "second")]
    p = tmp_path / "two.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    out = list(ocr_files([p], detector_params=craft, recognizer=ink_recognizer(2), options=SMALL))
    assert [(r.page, r.text) for r in out] == [(1, "line0"), (2, "line1")]


def test_group_lines_easyocr_mode_without_extras():
    # two words on a row, 12 px apart with height 30: EasyOCR merges (gap < 0.5 * h)
    words = np.array([[[10, 10], [60, 10], [60, 40], [10, 40]], [[72, 10], [120, 10], [120, 40], [72, 40]]], float)
    plain = group_lines(words, LineOptions(method="easyocr"))
    ours = group_lines(words)
    assert plain.shape == ours.shape == (1, 4, 2)
    np.testing.assert_allclose(plain, ours)
    # a word with a long descender (taller box) is split off by EasyOCR's height rule, merged back by merge_rows
    words[1] = [[72, 10], [120, 10], [120, 75], [72, 75]]
    assert len(group_lines(words, LineOptions(method="easyocr"))) == 2
    assert len(group_lines(words)) == 1


def line_refiner():
    """LinkRefiner params (BN folded) built by hand: link = 0.7 * sum of text(x + d), d in {0, +-6, +-12}.

    The real refiner weights are not obtainable offline. This one does what a line
    refiner does, in the simplest way: it smears the region score sideways across
    the gaps between words, so the refined link map joins the words of a line
    (and only them: there is no vertical smear).
    """
    from detector_np.weights import REFINER_CONVS, param_shapes
    p = {k: np.zeros(s, np.float32) for k, s in param_shapes(REFINER_CONVS).items()}
    for name in ("last_conv.0", "last_conv.3", "last_conv.6"):
        p[name + ".weight"][0, 0, 1, 1] = 1.0                    # channel 0 carries the region score
    for i in (1, 2):                                             # dilation 6 and 12: taps at x-d, x, x+d
        p[f"aspp{i}.0.weight"][0, 0, 1, :] = 0.7
        p[f"aspp{i}.3.weight"][0, 0, 0, 0] = 1.0
        p[f"aspp{i}.6.weight"][0, 0, 0, 0] = 1.0
    return p


def test_refiner_regions_are_lines(craft):
    im, quads, _ = one_column_page(0.0)
    res = ocr_page(im, detector_params=craft, refiner=line_refiner(), recognizer=ink_recognizer(), options=SMALL)
    assert [ln.text for ln in res.lines] == [f"line{i}" for i in range(len(quads))]
    for ln, gt in zip(res.lines, quads):
        assert polygon_iou(ln.box, gt, im.size) >= MIN_IOU
