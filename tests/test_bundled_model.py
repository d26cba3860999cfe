"""The bundled recogniser (weights/trocr-np-handwritten-small, see weights/README.md).

(a) It reads a fixed set of rendered handwritten lines (shipped PNGs, so no fonts are
    needed) under MAX_CER: a broken encoder, decoder, tokenizer or conversion fails.
(b) NumPy greedy decoding gives exactly the ids `transformers` gives on the same folder
    (its keys and config.json are Hugging Face's, so `from_pretrained` loads it).
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import trocr_np
from trocr_np.bundled import bundled_model_dir
from trocr_np.metrics import edit_distance

LINES = Path(__file__).parent / "data" / "bundled_lines"
# Measured 0.233 on these 20 lines (15 in training fonts, 5 in the held-out fonts, all
# unseen text); a broken pipeline reads ~1.0.
MAX_CER = 0.30


def _labels():
    rows = [ln.rstrip("\n").split("\t") for ln in (LINES / "labels.tsv").read_text(encoding="utf-8").splitlines()
            if ln and not ln.startswith("#")]
    return [(LINES / f, font, text) for f, font, text in rows]


@pytest.fixture(scope="module")
def model():
    return trocr_np.load_model(bundled_model_dir())


def test_bundled_folder_is_small_and_complete():
    d = bundled_model_dir()
    for f in ("model.safetensors", "config.json", "preprocessor_config.json", "generation_config.json",
              "tokenizer.json"):
        assert (d / f).is_file(), f
    assert (d / "model.safetensors").stat().st_size < 40e6


def test_bundled_model_reads_rendered_lines(model):
    rows = _labels()
    assert len(rows) == 20
    res = trocr_np.recognize(model, [Image.open(p) for p, _, _ in rows])
    dist = sum(edit_distance(t, r.text) for (_, _, t), r in zip(rows, res))
    total = sum(len(t) for _, _, t in rows)
    cer = dist / total
    print(f"\nbundled model CER on {len(rows)} lines: {cer:.3f}")
    for (_, font, t), r in zip(rows, res):
        print(f"  {font:18s} {t!r} -> {r.text!r}")
    assert cer < MAX_CER
    assert all(0.0 < r.confidence <= 1.0 for r in res)


def test_greedy_ids_match_transformers(model):
    torch = pytest.importorskip("torch")
    tr = pytest.importorskip("transformers")
    d = bundled_model_dir()
    hf = tr.VisionEncoderDecoderModel.from_pretrained(d, dtype=torch.float32).eval()
    proc = tr.ViTImageProcessor.from_pretrained(d)
    images = [Image.open(p).convert("RGB") for p, _, _ in _labels()[:8]]
    pv = proc(images=images, return_tensors="pt").pixel_values
    np.testing.assert_array_equal(pv.numpy(), trocr_np.preprocess(images, model.config))
    with torch.no_grad():
        want = hf.generate(pixel_values=pv, num_beams=1).tolist()
    got = trocr_np.generate(model, pv.numpy(), trocr_np.GenerationOptions(num_beams=1)).sequences
    eos = model.config.eos_token_id
    for w, g in zip(want, got):
        w = w[: w.index(eos, 1) + 1] if eos in w[1:] else w  # HF pads finished rows
        assert list(g) == w
