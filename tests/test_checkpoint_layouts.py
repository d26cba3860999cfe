"""Every TrOCR checkpoint folder layout a user has, built here with transformers, read like transformers.

Layouts (each a tiny random model from tests/conftest.py::make_hf_trocr, every parameter perturbed):
  today     `model.save_pretrained` + `TrOCRProcessor.save_pretrained` (5.24): processor_config.json with
            the image processor nested, tokenizer.json, no preprocessor_config.json
  legacy    the Hub's base/large layout: pytorch_model.bin (legacy torch pickle), preprocessor_config.json
            with `feature_extractor_type` and an int size, vocab.json + merges.txt + tokenizer_config.json +
            special_tokens_map.json, no tokenizer.json, no generation_config.json
  small-*   trocr-small-like: DeiT, bicubic, relu, untied output, scale_embedding, sentencepiece.bpe.model
            (unigram and BPE, trained here with the `sentencepiece` package) and no tokenizer.json
  finetuned decoder_start_token_id 0, two EOS ids and beam settings in generation_config.json
  bf16-sharded / fp16   weights saved in bfloat16 as shards with an index / in float16

Each is compared with the reference `TrOCRProcessor.from_pretrained` + `generate` + `batch_decode`
(greedy and beam): converted with `convert_trocr`, used directly with `load_model(hf_folder)` (converted
into the cache on first use, loaded from it after) and through `trocr-np recognize --model hf_folder`.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import make_hf_trocr, random_line_images  # noqa: E402
from ocr_base.checkpoint import CheckpointError  # noqa: E402
from trocr_np import GenerationOptions, load_model, recognize  # noqa: E402
from trocr_np import convert as convert_mod  # noqa: E402
from trocr_np.cli import main  # noqa: E402
from trocr_np.config import ConfigError, load_config  # noqa: E402
from trocr_np.hf_cache import cache_entry  # noqa: E402
from trocr_np.preprocess import preprocess  # noqa: E402

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*(max_length|generation|early_stopping).*")

# trocr-small-like: DeiT encoder with qkv bias, bicubic, relu, scale_embedding, untied output projection
SMALL_LIKE = dict(enc_model_type="deit", enc_qkv_bias=True, activation_function="relu", scale_embedding=True,
                  tie_word_embeddings=False, pp_resample=3)
# a fine-tuning tutorial's generation settings, with decoder_start = <s> (0) and a second EOS id
FINETUNED_GEN = dict(decoder_start_token_id=0, bos_token_id=0, eos_token_id=[2, 7], pad_token_id=1, num_beams=3,
                     max_length=14, no_repeat_ngram_size=2, length_penalty=2.0, early_stopping=True)


def _processor_save(src, dst):
    """`TrOCRProcessor.save_pretrained` of the processor a user built from src's files."""
    proc = transformers.TrOCRProcessor(image_processor=transformers.AutoImageProcessor.from_pretrained(str(src)),
                                       tokenizer=transformers.AutoTokenizer.from_pretrained(str(src)))
    proc.save_pretrained(str(dst))


def _layout_today(root):
    hf, src = make_hf_trocr(root / "src", "tiny", tokenizer="json")
    d = root / "today"
    hf.save_pretrained(str(d))
    _processor_save(src, d)
    names = {p.name for p in d.iterdir()}
    # what makes this layout new: the image processor only nested in processor_config.json
    assert "preprocessor_config.json" not in names and {"processor_config.json", "tokenizer.json"} <= names
    assert "image_processor" in json.loads((d / "processor_config.json").read_text())
    return d


def _layout_legacy(root):
    hf, d = make_hf_trocr(root, "tiny", fmt="safetensors", tokenizer="vocab_merges", seed=1)
    from safetensors.torch import load_file
    st = d / "model.safetensors"
    torch.save(load_file(str(st)), str(d / "pytorch_model.bin"), _use_new_zipfile_serialization=False)
    st.unlink()
    (d / "generation_config.json").unlink()
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 32}))
    (d / "tokenizer.json").unlink(missing_ok=True)
    mask = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False}
    (d / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
         "cls_token": "<s>", "mask_token": mask}))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"errors": "replace", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
         "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "add_prefix_space": False,
         "trim_offsets": True, "model_max_length": 512, "tokenizer_class": "RobertaTokenizer"}))
    return d


def _layout_small(root, model_type):
    sentencepiece = pytest.importorskip("sentencepiece")  # noqa: F841 (a test extra)
    from test_spm_tokenizer import _SMALL_CFG, _SMALL_MAP, _train
    model = _train(root / f"spm_{model_type}", model_type, 300)
    d = root / f"small_{model_type}"
    d.mkdir()
    (d / "sentencepiece.bpe.model").write_bytes(model.read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps(_SMALL_CFG))
    (d / "special_tokens_map.json").write_text(json.dumps(_SMALL_MAP))
    vocab = len(transformers.AutoTokenizer.from_pretrained(str(d)))
    _, src = make_hf_trocr(root / "small_src", "tiny", tokenizer=None, vocab_size=vocab, seed=2, **SMALL_LIKE)
    for p in src.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    assert "tokenizer.json" not in {p.name for p in d.iterdir()}
    return d


def _layout_finetuned(root):
    hf, d = make_hf_trocr(root, "tiny", tokenizer="json", seed=3)
    gen = json.loads((d / "generation_config.json").read_text())
    gen.update(FINETUNED_GEN)
    (d / "generation_config.json").write_text(json.dumps(gen))
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(decoder_start_token_id=0)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _layout_dtype(root, dtype, shard):
    hf, src = make_hf_trocr(root / "src", "tiny", tokenizer="json", seed=4)
    d = root / f"{dtype}{'_sharded' if shard else ''}"
    hf.to(getattr(torch, dtype)).save_pretrained(str(d), max_shard_size="40KB" if shard else "10GB")
    for p in src.iterdir():
        if not p.name.startswith(("model", "config.json", "generation_config.json")):
            (d / p.name).write_bytes(p.read_bytes())
    names = {p.name for p in d.iterdir()}
    assert ("model.safetensors.index.json" in names) == shard
    return d


LAYOUTS = {"today": _layout_today, "legacy": _layout_legacy,
           "small-unigram": lambda r: _layout_small(r, "unigram"), "small-bpe": lambda r: _layout_small(r, "bpe"),
           "finetuned": _layout_finetuned,
           "bf16-sharded": lambda r: _layout_dtype(r, "bfloat16", True),
           "fp16": lambda r: _layout_dtype(r, "float16", False)}


@pytest.fixture(scope="module")
def images():
    return random_line_images(3, seed=11)


@pytest.fixture(params=list(LAYOUTS))
def layout(request, tmp_path_factory, images):
    """(name, HF folder, {generation kwargs name: (ids rows, texts)} from the reference)."""
    name = request.param
    root = tmp_path_factory.mktemp(name.replace("-", "_"))
    d = LAYOUTS[name](root)
    hf = transformers.VisionEncoderDecoderModel.from_pretrained(str(d), dtype=torch.float32).eval()
    proc = transformers.TrOCRProcessor.from_pretrained(str(d))
    px = proc(images=images, return_tensors="pt").pixel_values
    eos = hf.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    ref = {}
    for key, kw in _settings(name).items():
        with torch.no_grad():
            ids = hf.generate(px, **kw).tolist()
        ids = [_trim(r, eos) for r in ids]
        ref[key] = (ids, proc.batch_decode(ids, skip_special_tokens=True))
    return name, d, ref


def _settings(name):
    """The generate calls compared: the checkpoint's defaults, and a beam / greedy override."""
    if name == "finetuned":
        return {"defaults": {}, "greedy": dict(num_beams=1)}
    return {"defaults": {}, "beam": dict(num_beams=3, max_new_tokens=12)}


def _trim(row, eos):
    """A reference row without the pads after its first EOS (HF pads shorter rows of a batch)."""
    for i, t in enumerate(row[1:], 1):
        if t in eos:
            return row[:i + 1]
    return row


def _ours(model, images, name):
    out = {}
    for key, kw in _settings(name).items():
        rs = recognize(model, images, GenerationOptions(**kw))
        out[key] = ([[model.config.decoder_start_token_id] + r.token_ids for r in rs], [r.text for r in rs])
    return out


def _check(ours, ref, name):
    assert ours == ref, name
    rows = [r for ids, _ in ref.values() for r in ids]
    assert max(len(r) for r in rows) > 4 and any(t for _, texts in ref.values() for t in texts)  # not trivial


def test_layout(layout, images, tmp_path, monkeypatch, capsys):
    """One layout, three ways in: converted, used directly (API, then from the cache), and the CLI."""
    name, d, ref = layout
    _check(_ours(load_model(convert_mod.convert_trocr(d, tmp_path / "ours")), images, name), ref, name)

    entry = cache_entry(d)
    model = load_model(d)  # converted into the cache ...
    assert (entry / "model.safetensors").is_file()
    _check(_ours(model, images, name), ref, name)

    def no_conversion(*a, **k):
        raise AssertionError("converted again")
    monkeypatch.setattr(convert_mod, "convert_trocr", no_conversion)
    _check(_ours(load_model(d), images, name), ref, name)  # ... and read from it the next time

    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    for key, kw in _settings(name).items():
        flags = [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        assert main(["recognize", "--model", str(d), "--json", *flags, *map(str, paths)]) == 0
        got = json.loads(capsys.readouterr().out)
        ids, texts = ref[key]
        assert [[ids[0][0]] + r["token_ids"] for r in got] == ids and [r["text"] for r in got] == texts, key


def test_cli_ocr_hf_folder_equals_converted(tmp_path, capsys):
    """`trocr-np ocr --model HF_FOLDER` reads a page like the converted folder does."""
    from pipeline_pages import render_page
    d = _layout_today(tmp_path)
    page = tmp_path / "page.png"
    render_page([(12, 14, "hello", 0, 26)], (220, 64))[0].save(page)
    small = ["--canvas-size", "640", "--mag-ratio", "1.0", "--max-new-tokens", "6"]
    outs = []
    for model in (d, convert_mod.convert_trocr(d, tmp_path / "ours")):
        assert main(["ocr", str(page), "--model", str(model), *small]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].strip()


# ------------------------------------------------------------------------------------- image processor

def _pixels_equal_reference(d, ims):
    ref = transformers.AutoImageProcessor.from_pretrained(str(d))(ims, return_tensors="np")["pixel_values"]
    ours = preprocess(ims, load_config(d))
    return np.array_equal(ours, ref), ref


def test_processor_config_precedence(tmp_path):
    """Both files present: transformers takes processor_config.json's nested image processor; a
    processor_config.json without one falls back to preprocessor_config.json. So do we."""
    _, d = make_hf_trocr(tmp_path, "mismatch", tokenizer=None)  # DeiT processor
    ims = random_line_images(2, seed=12)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    nested = dict(pre, resample=0, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.25], rescale_factor=1 / 200,
                  do_center_crop=True, size={"height": 56, "width": 60}, crop_size={"height": 48, "width": 48})
    (d / "processor_config.json").write_text(json.dumps({"image_processor": nested, "processor_class": "TrOCRProcessor"}))
    same, with_nested = _pixels_equal_reference(d, ims)
    assert same
    (d / "processor_config.json").write_text(json.dumps({"processor_class": "TrOCRProcessor"}))
    same, without = _pixels_equal_reference(d, ims)
    assert same and not np.array_equal(with_nested, without)  # the two files really differ


@pytest.mark.parametrize("pp", [
    dict(size={"shortest_edge": 40}, default_to_square=False, do_center_crop=True, crop_size=32),
    dict(size=48, default_to_square=False, do_center_crop=True, crop_size={"height": 48, "width": 48}),
    dict(do_resize=False, do_center_crop=True, crop_size={"height": 48, "width": 48}, do_convert_rgb=True),
    dict(size=[48, 48], do_rescale=False, do_normalize=True, image_mean=0.3, image_std=0.7),
], ids=["shortest_edge", "int-no-square", "no-resize-crop", "list-size-scalar-mean"])
def test_preprocessor_size_forms(pp, tmp_path):
    """size as {shortest_edge}, an int with default_to_square false, [h, w]; nulls take the class default."""
    _, d = make_hf_trocr(tmp_path, "mismatch", tokenizer=None)
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg.update(pp)
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    assert _pixels_equal_reference(d, random_line_images(3, seed=13))[0]


@pytest.mark.parametrize("key,value", [("do_pad", True), ("size", {"shortest_edge": 40, "longest_edge": 60}),
                                       ("size", {"max_height": 40, "max_width": 60}), ("data_format", "channels_last"),
                                       ("image_processor_type", "CLIPImageProcessor"), ("resample", 7)])
def test_unreproducible_image_processor_value_refused_by_name(key, value, tmp_path):
    _, d = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    (d / "processor_config.json").write_text(json.dumps({"image_processor": dict(
        json.loads((d / "preprocessor_config.json").read_text()), **{key: value})}))
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(ConfigError, match=f"processor_config.json: image_processor.*'{key}'"):
        load_config(d)


def test_no_image_processor_is_a_clear_error(tmp_path):
    _, d = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json: not found"):
        convert_mod.convert_trocr(d, tmp_path / "out")


# ------------------------------------------------------------------------------------- weights

@pytest.mark.parametrize("files", [["tf_model.h5"], ["flax_model.msgpack"], ["tf_model.h5", "flax_model.msgpack"]])
def test_tf_or_flax_only_named(files, tmp_path):
    _, d = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    (d / "model.safetensors").unlink()
    for f in files:
        (d / f).write_bytes(b"\0" * 16)
    for call in (lambda: convert_mod.convert_trocr(d, tmp_path / "out"), lambda: load_model(d)):
        with pytest.raises(CheckpointError, match=" and ".join(files)):
            call()


def test_cache_key_follows_the_files(tmp_path):
    """Editing a file of the HF folder gives a new cache entry (converted again); the old one stays valid."""
    _, d = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    first = cache_entry(d)
    load_model(d)
    gen = json.loads((d / "generation_config.json").read_text())
    (d / "generation_config.json").write_text(json.dumps(dict(gen, num_beams=2)))
    second = cache_entry(d)
    assert second != first
    assert load_model(d).config.generation["num_beams"] == 2 and (second / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------- tokenizer files

def test_legacy_added_tokens_json(tmp_path):
    """vocab.json + merges.txt + added_tokens.json (4.x, no added_tokens_decoder): the tokens a fine-tune
    added, plain and special, encode and decode like transformers' tokenizer."""
    from conftest import write_bpe_tokenizer
    from trocr_np.tokenizer import batch_decode, load_tokenizer
    d = tmp_path / "tok"
    n = write_bpe_tokenizer(d, "vocab_merges")
    cfg = {k: v for k, v in json.loads((d / "tokenizer_config.json").read_text()).items() if k != "added_tokens_decoder"}
    cfg["additional_special_tokens"] = ["<sig>"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "added_tokens.json").write_text(json.dumps({"ſ": n, "<sig>": n + 1, "naïve": n + 2}))
    ref, ours = transformers.AutoTokenizer.from_pretrained(str(d)), load_tokenizer(d)
    assert len(ref) == ours.get_vocab_size() == n + 3
    texts = ["the ſ long s", "<sig> signed", "a naïve dog", "ſſ<sig>naïve", "Hello, world!"]
    ids = [e.ids for e in ours.encode_batch(texts)]
    assert ids == ref(texts)["input_ids"] and any(n in r for r in ids) and any(n + 2 in r for r in ids)
    rows = ids + [[0, n, 5, n + 1, n + 2, 2], [n + 1, 7, n]]
    assert batch_decode(ours, rows) == ref.batch_decode(rows, skip_special_tokens=True)
    assert batch_decode(ours, rows, skip_special_tokens=False) == ref.batch_decode(rows)


def test_unwritable_cache_converts_in_memory(tmp_path, monkeypatch):
    """No writable cache: the HF folder still loads (converted into a temporary folder, read, removed)."""
    _, d = make_hf_trocr(tmp_path, "tiny", tokenizer="json")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TROCR_NP_CACHE", str(blocker))
    model = load_model(d)
    ref = load_model(convert_mod.convert_trocr(d, tmp_path / "ours"))
    assert model.params.keys() == ref.params.keys() and model.tokenizer is not None
    assert all(np.array_equal(model.params[k], ref.params[k]) for k in ref.params)
    assert blocker.is_file()
