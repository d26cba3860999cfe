"""End-to-end detection against the reference pipeline, and the craft-text-detector anchor.

The reference pipeline is CRAFT-pytorch `test.py::test_net` with EasyOCR's modules: imgproc resize
and normalisation, the torch CRAFT (+ RefineNet), craft_utils.getDetBoxes (OpenCV) and
adjustResultCoordinates, None polygons replaced by boxes. Boxes and polygons must agree in count and
order and within BOX_ATOL pixels (original image coordinates); score maps within MAP_ATOL.
"""
import json

import numpy as np
import pytest

from _reference import DATA, real_image, real_reference_craft, rendered_text_image, require_reference
from detector_np import DetectOptions, detect, load_craft
from detector_np.detect import automatic_size_threshold

MAP_ATOL = 1e-4
BOX_ATOL = 1e-3

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ref():
    ref = require_reference()
    ref.net = real_reference_craft(ref)
    return ref


@pytest.fixture(scope="module")
def params():
    return load_craft()


def reference_detect(ref, img, canvas_size, mag_ratio, poly=False, refine_net=None,
                     text_threshold=0.7, link_threshold=0.4, low_text=0.4):
    cv2 = ref.cv2
    resized, target_ratio, _ = ref.imgproc.resize_aspect_ratio(img, canvas_size, cv2.INTER_LINEAR, mag_ratio)
    ratio = 1 / target_ratio
    x = torch.from_numpy(ref.imgproc.normalizeMeanVariance(resized)).permute(2, 0, 1)[None]
    with torch.no_grad():
        y, feature = ref.net(x)
        score_text = y[0, :, :, 0].numpy()
        score_link = y[0, :, :, 1].numpy()
        if refine_net is not None:
            score_link = refine_net(y, feature)[0, :, :, 0].numpy()
            poly = True
    boxes, polys, _ = ref.craft_utils.getDetBoxes(score_text, score_link, text_threshold, link_threshold, low_text, poly)
    boxes = ref.craft_utils.adjustResultCoordinates(boxes, ratio, ratio)
    # one at a time: the reference's own call crashes on ragged lists with NumPy >= 1.24 (clovaai#194)
    polys = [boxes[k] if p is None else ref.craft_utils.adjustResultCoordinates([p], ratio, ratio)[0]
             for k, p in enumerate(polys)]
    return np.asarray(boxes, np.float32).reshape(-1, 4, 2), polys, score_text, score_link


def assert_same_detection(det, expected):
    boxes, polys, score_text, score_link = expected
    assert np.abs(det.score_text - score_text).max() <= MAP_ATOL
    assert np.abs(det.score_link - score_link).max() <= MAP_ATOL
    assert det.boxes.shape == boxes.shape
    np.testing.assert_allclose(det.boxes, boxes, atol=BOX_ATOL, rtol=0)
    assert len(det.polys) == len(polys)
    for ours, theirs in zip(det.polys, polys):
        assert ours.shape == np.shape(theirs)
        np.testing.assert_allclose(ours, theirs, atol=BOX_ATOL, rtol=0)


def curved_text_image(text="curvedwords alongasine", font_size=30, amplitude=40, seed=1):
    """Characters placed along a sine arc: the word masks are curved, so poly=True yields real polygons."""
    from PIL import Image, ImageDraw

    from _reference import _font

    font = _font(font_size)
    width = int(font.getlength(text)) + 2 * font_size
    img = Image.new("RGB", (width, 4 * font_size + 2 * amplitude), (245, 243, 238))
    d = ImageDraw.Draw(img)
    x = font_size
    for ch in text:
        y = 2 * font_size + amplitude * np.sin(2 * np.pi * x / width)
        d.text((x, y), ch, fill=(20, 20, 20), font=font)
        x += font.getlength(ch)
    a = np.asarray(img).astype(np.int16) + np.random.default_rng(seed).integers(-5, 6, (img.height, img.width, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


RENDERED = {
    "three_lines": lambda: rendered_text_image(["Dear Sir or Madam,", "thank you for your letter of 3 May.",
                                                "Yours faithfully, J. Smith"], font_size=28),
    "rotated": lambda: rendered_text_image(["Rotated text block", "with two lines"], font_size=34, angle=14, seed=2),
    "small_font": lambda: rendered_text_image(["tiny words in a row", "and another row here", "third"],
                                              font_size=14, seed=3),
    "curved": curved_text_image,
}


@pytest.mark.parametrize("name,canvas_size,mag_ratio,poly", [
    ("three_lines", 640, 1.5, False), ("rotated", 512, 1.5, True), ("small_font", 1280, 2.0, False),
    ("curved", 768, 1.5, True)])
def test_rendered_images_match_reference(ref, params, name, canvas_size, mag_ratio, poly):
    img = RENDERED[name]()
    expected = reference_detect(ref, img, canvas_size, mag_ratio, poly=poly)
    det = detect(img, params, DetectOptions(canvas_size=canvas_size, mag_ratio=mag_ratio, poly=poly, size_threshold=0))
    assert len(det.boxes) >= 2                           # not vacuous
    assert_same_detection(det, expected)
    if name == "curved":
        assert any(len(p) == 14 for p in det.polys)      # at least one real polygon


@pytest.mark.parametrize("name,canvas_size,poly", [("idcard2.jpg", 640, True), ("french.jpg", 512, False),
                                                   ("english.png", 512, True)])
def test_real_photos_match_reference(ref, params, name, canvas_size, poly):
    img = real_image(name)
    expected = reference_detect(ref, img, canvas_size, 1.5, poly=poly)
    det = detect(img, params, DetectOptions(canvas_size=canvas_size, mag_ratio=1.5, poly=poly, size_threshold=0))
    assert len(det.boxes) >= 3
    assert_same_detection(det, expected)


def test_craft_text_detector_anchor(params):
    """craft-text-detector tests/test_craft.py: idcard.png at long side 720, no refiner -> 52 boxes,
    boxes[0][0][0] == 115, boxes[0][2][0] == 244. Long side 720 of this landscape image = width 720."""
    det = detect(str(DATA / "idcard.png"), params, DetectOptions(width=720, size_threshold=0))
    assert len(det.boxes) == 52
    assert int(det.boxes[0][0][0]) == 115
    assert int(det.boxes[0][2][0]) == 244
    assert det.score_text.shape == (240, 368)                  # 458x720 padded to 480x736, halved


def test_refiner_matches_reference(ref, params, tmp_path):
    """LinkRefiner with random weights (the real ones are not obtainable offline), loaded from a .pth
    saved like the original (DataParallel `module.` prefix, legacy non-zip pickle)."""
    from test_craft_network import randomize_batchnorm

    require_reference(refiner=True)
    torch.manual_seed(11)
    net = randomize_batchnorm(ref.RefineNet(), 12)
    with torch.no_grad():            # make the random refiner's link map look like a link map: small positive bias
        net.aspp1[6].bias.fill_(0.3)
        for m in (net.aspp1[6], net.aspp2[6], net.aspp3[6], net.aspp4[6]):
            m.weight.mul_(0.02)
    path = tmp_path / "craft_refiner_random.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, path, _use_new_zipfile_serialization=False)
    img = RENDERED["three_lines"]()
    expected = reference_detect(ref, img, 512, 1.5, refine_net=net)
    det = detect(img, params, DetectOptions(canvas_size=512, mag_ratio=1.5, refiner=str(path), size_threshold=0))
    assert len(det.boxes) >= 1
    assert_same_detection(det, expected)


def test_width_option_and_input_types(params, tmp_path):
    from PIL import Image

    img = RENDERED["three_lines"]()
    det = detect(img, params, DetectOptions(width=300, size_threshold=0))
    h32 = -(-int(img.shape[0] * 300 / img.shape[1]) // 32) * 32
    assert det.ratio == 300 / img.shape[1] and det.score_text.shape == (h32 // 2, 160)
    path = tmp_path / "page.png"
    Image.fromarray(img).save(path)
    for source in (path, str(path), Image.fromarray(img), Image.fromarray(img).convert("RGBA")):
        other = detect(source, params, DetectOptions(width=300, size_threshold=0))
        np.testing.assert_array_equal(other.boxes, det.boxes)


def test_size_threshold(params):
    img = RENDERED["three_lines"]()
    img[5:9, 5:9] = 0                                           # a speck in the corner
    all_boxes = detect(img, params, DetectOptions(canvas_size=384, size_threshold=0))
    auto = detect(img, params, DetectOptions(canvas_size=384))                 # -1: automatic
    rule = automatic_size_threshold(all_boxes.boxes)
    long_side = np.maximum(np.linalg.norm(all_boxes.boxes[:, 1] - all_boxes.boxes[:, 0], axis=1),
                           np.linalg.norm(all_boxes.boxes[:, 2] - all_boxes.boxes[:, 1], axis=1))
    np.testing.assert_array_equal(auto.boxes, all_boxes.boxes[long_side >= rule])
    big = detect(img, params, DetectOptions(canvas_size=384, size_threshold=100))
    assert 0 < len(big.boxes) < len(all_boxes.boxes) and len(big.polys) == len(big.boxes)
    with pytest.raises(ValueError, match="size_threshold"):
        detect(img, params, DetectOptions(size_threshold=-5))


def test_automatic_size_threshold_rule():
    box = lambda w, h: np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    boxes = np.stack([box(100, 20), box(60, 22), box(80, 18), box(4, 4)])
    assert automatic_size_threshold(boxes) == pytest.approx(0.5 * np.median([20, 22, 18, 4]))
    assert automatic_size_threshold(np.zeros((0, 4, 2), np.float32)) == 0.0
    assert automatic_size_threshold(np.stack([box(3, 2)])) == 3.0


def test_cli_detect_and_json(params, capsys, tmp_path):
    from PIL import Image

    from trocr_np.cli import main

    img = RENDERED["three_lines"]()
    path = tmp_path / "page.png"
    Image.fromarray(img).save(path)
    det = detect(img, params, DetectOptions(canvas_size=320, size_threshold=0))
    assert main(["detect", str(path), "--canvas-size", "320", "--size-threshold", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(det.boxes)
    np.testing.assert_allclose(np.array([l.split() for l in lines], float), det.boxes.reshape(-1, 8), atol=0.051)
    assert main(["detect", str(path), "--canvas-size", "320", "--size-threshold", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score_map_shape"] == list(det.score_text.shape)
    np.testing.assert_allclose(np.array(out["boxes"]), det.boxes, atol=0.006)
    assert len(out["polys"]) == len(det.boxes)
    assert main(["detect", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_runtime_needs_neither_torch_nor_opencv(tmp_path):
    """Conversion (legacy .pth, no torch) and detection in a fresh interpreter where importing the
    reference stack raises."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "transformers", "cv2", "easyocr", "skimage"):
                    raise ImportError(f"runtime code imported {name}")
                return None

        sys.meta_path.insert(0, Block())
        from trocr_np.cli import main
        assert main(["convert-detector"]) == 0
        assert main(["detect", sys.argv[1], "--canvas-size", "256", "--poly"]) == 0
        print("OK")
    """)
    env = {**os.environ, "TROCR_NP_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", script, str(DATA / "idcard.png")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("OK") and (tmp_path / "cache" / "craft_mlt_25k.safetensors").is_file()
