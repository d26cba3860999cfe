"""Checkpoints without generation_config.json: transformers then takes the generation settings from
config.json (`GenerationConfig.from_model_config`), as many fine-tuned TrOCR checkpoints rely on
(e.g. num_beams=4, max_length=64, no_repeat_ngram_size=3 set on the model config before saving).
Our defaults must follow the same files, so `generate(model, px)` with no arguments == HF's."""
import json
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import make_hf_trocr  # noqa: E402
from trocr_np import generate, load_model  # noqa: E402
from trocr_np.convert import convert_trocr  # noqa: E402

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*max_length.*")

# transformers 4.x wrote every generation default into config.json; these are some of them
LEGACY_DEFAULTS = dict(max_length=20, min_length=0, num_beams=1, early_stopping=False, length_penalty=1.0,
                       no_repeat_ngram_size=0, do_sample=False, temperature=1.0, top_k=50, top_p=1.0,
                       repetition_penalty=1.0, bad_words_ids=None, num_return_sequences=1, diversity_penalty=0.0,
                       num_beam_groups=1, forced_bos_token_id=None, forced_eos_token_id=None)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gencfg")
    hf, hf_dir = make_hf_trocr(tmp, "tiny", init_std=0.1, tie_word_embeddings=False)
    px = torch.randn(3, 3, *hf.config.encoder.image_size if not isinstance(hf.config.encoder.image_size, int)
                     else (hf.config.encoder.image_size,) * 2, generator=torch.Generator().manual_seed(1))
    return hf_dir, px


@pytest.mark.parametrize("fields", [
    dict(num_beams=3, no_repeat_ngram_size=2, max_length=12, length_penalty=2.0, early_stopping=True),
    dict(max_length=9),
    LEGACY_DEFAULTS,
    dict(LEGACY_DEFAULTS, num_beams=2, max_length=15),
], ids=["tutorial-like", "max_length", "legacy-defaults", "legacy-beams"])
def test_generation_settings_from_config_json(saved, tmp_path, fields):
    hf_dir, px = saved
    d = tmp_path / "hf"
    d.mkdir()
    for f in hf_dir.iterdir():
        if f.name != "generation_config.json":
            (d / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(fields)
    (d / "config.json").write_text(json.dumps(cfg))

    hf = transformers.VisionEncoderDecoderModel.from_pretrained(d).eval()
    with torch.no_grad():
        ref = hf.generate(px).tolist()
    ours = generate(load_model(convert_trocr(d, tmp_path / "ours")), px.numpy()).sequences
    pad = hf.generation_config.pad_token_id
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):  # HF pads rows that ended early (a model may also emit the pad id itself)
        assert r[:len(o)] == o and all(t == pad for t in r[len(o):])
    assert max(len(r) for r in ref) > 3  # not trivially short
