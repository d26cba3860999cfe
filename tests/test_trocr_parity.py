"""Live parity of the TrOCR recogniser's network against Hugging Face transformers.

Random reference models are built in this process (tests/conftest.py::make_hf_trocr) at the
layouts of the real checkpoints (small: DeiT/relu/scaled/untied; base/large widths; sinusoidal
positions; encoder/decoder size mismatch; non-square input), converted with our converter
when it is importable (else loaded straight from the HF folder), and compared:
pixel values (bit-exact), encoder hidden states and attentions, decoder logits (whole
sequence, cached one token at a time, and prefix + steps) and cross-attentions, all within
TOL in float32. Also: fast kernels against their NumPy references, the config and weight
validation errors. Generation (greedy/beam ids, text) is tested in test_generate_parity.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TROCR_PRESETS, make_hf_trocr, random_line_images
from test_trocr_kernels import LN_SHAPES, random_bias_act_inputs, random_layer_norm_inputs
from trocr_np import kernels
from trocr_np.convert import convert_trocr
from trocr_np.config import ConfigError, expected_param_shapes, load_config
from trocr_np.decoder import init_cache, decoder_forward, reorder_cache, sinusoidal_table
from trocr_np.encoder import encoder_forward
from trocr_np.model import WeightsError, load_model
from trocr_np.quant import dequantize
from trocr_np.preprocess import preprocess

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4  # float32 max abs difference for every network tensor
PRESETS = ["tiny", "small", "base", "large", "sinusoidal", "mismatch", "nonsquare"]



def _to_ours(hf_dir, out_dir):
    convert_trocr(hf_dir, out_dir)
    return load_model(out_dir)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """preset -> (hf_model (eager attention), our TrOCRModel); built once per module."""
    cache = {}

    def get(preset, fmt="safetensors"):
        key = (preset, fmt)
        if key not in cache:
            tmp = tmp_path_factory.mktemp(f"{preset}_{fmt}")
            hf, hf_dir = make_hf_trocr(tmp, preset, fmt=fmt)
            hf.set_attn_implementation("eager")  # sdpa returns no attention maps
            cache[key] = (hf, _to_ours(hf_dir, tmp / "ours"))
        return cache[key]
    return get


def _maxdiff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _hf_processor(hf_dir):
    return transformers.AutoImageProcessor.from_pretrained(str(hf_dir))


# --------------------------------------------------------------------------- preprocessing

def _mode_images():
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (37, 91, 4), dtype=np.uint8), "RGBA")
    ims = {m: rgba.convert(m) for m in ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I", "I;16", "F",
                                         "YCbCr", "HSV", "RGBa", "PA"]}
    pt = rgba.convert("RGB").convert("P")
    pt.info["transparency"] = 7
    ims["P+transparency"] = pt
    return ims


@pytest.mark.parametrize("preset", ["tiny", "small", "nonsquare"])
def test_preprocess_pil_modes_bit_exact(preset, tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, preset)
    proc, cfg = _hf_processor(hf_dir), load_config(hf_dir)
    for mode, im in _mode_images().items():
        ref = proc(im, do_convert_rgb=True, return_tensors="np")["pixel_values"]
        ours = preprocess([im], cfg)
        assert ours.dtype == np.float32
        assert np.array_equal(ours, ref), (preset, mode, _maxdiff(ours, ref))


def test_preprocess_arrays_and_batch(tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, "small")
    proc, cfg = _hf_processor(hf_dir), load_config(hf_dir)
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (30, 70, c), dtype=np.uint8) for c in (1, 3, 4)]
    for a in arrays:
        ref = proc(a, do_convert_rgb=True, return_tensors="np")["pixel_values"]
        assert np.array_equal(preprocess([a], cfg), ref), a.shape
    gray = rng.integers(0, 256, (30, 70), dtype=np.uint8)  # 2-D array = grayscale
    assert np.array_equal(preprocess([gray], cfg), preprocess([Image.fromarray(gray, "L")], cfg))
    ims = random_line_images(4)
    ref = proc(ims, return_tensors="np")["pixel_values"]
    assert np.array_equal(preprocess(ims, cfg), ref)


@pytest.mark.parametrize("pp", [
    dict(pp_resample=0), dict(pp_resample=1), dict(pp_resample=4), dict(pp_resample=5),
    dict(pp_do_normalize=False), dict(pp_do_rescale=False), dict(pp_rescale_factor=1 / 127.5),
    dict(pp_image_mean=[0.485, 0.456, 0.406], pp_image_std=[0.229, 0.224, 0.225]),
    dict(pp_do_center_crop=True, pp_size={"height": 48, "width": 56}, pp_crop_size={"height": 40, "width": 40}),
    dict(pp_do_center_crop=True, pp_size={"shortest_edge": 40}, pp_crop_size={"height": 32, "width": 32}),
    dict(pp_do_center_crop=True, pp_size={"height": 20, "width": 30}, pp_crop_size={"height": 32, "width": 32}),
])
def test_preprocess_options(pp, tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, "mismatch", **pp)  # DeiT processor: has center crop
    proc, cfg = _hf_processor(hf_dir), load_config(hf_dir)
    ims = random_line_images(3, seed=3)
    for im in ims:
        ref = proc(im, return_tensors="np")["pixel_values"]
        assert np.array_equal(preprocess([im], cfg), ref), pp


def test_preprocess_legacy_feature_extractor_config(tmp_path):
    """Old Hub layout: int size + feature_extractor_type, no rescale fields."""
    _, hf_dir = make_hf_trocr(tmp_path, "tiny")
    legacy = {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 32}
    (hf_dir / "preprocessor_config.json").write_text(json.dumps(legacy))
    proc, cfg = _hf_processor(hf_dir), load_config(hf_dir)
    ims = random_line_images(2, seed=4)
    assert np.array_equal(preprocess(ims, cfg), proc(ims, return_tensors="np")["pixel_values"])


# --------------------------------------------------------------------------- encoder

@pytest.mark.parametrize("preset", PRESETS)
def test_encoder_matches_hf(preset, built):
    hf, model = built(preset)
    cfg = model.config
    px = preprocess(random_line_images(3, seed=5), cfg)
    with torch.inference_mode():
        ref = hf.encoder(torch.from_numpy(px), output_attentions=True)
    ours, attn = encoder_forward(model.params, cfg, px, output_attentions=True)
    assert ours.shape == (3, cfg.encoder.seq_len, cfg.encoder.hidden_size)
    assert _maxdiff(ours, ref.last_hidden_state.numpy()) < TOL
    assert len(attn) == cfg.encoder.num_hidden_layers
    for a, r in zip(attn, ref.attentions):
        assert _maxdiff(a, r.numpy()) < TOL
    assert np.array_equal(encoder_forward(model.params, cfg, px), ours)


def test_encoder_bad_input(built):
    _, model = built("tiny")
    with pytest.raises(ValueError, match="image_size"):
        encoder_forward(model.params, model.config, np.zeros((1, 3, 32, 40), np.float32))
    with pytest.raises(ValueError, match="num_channels"):
        encoder_forward(model.params, model.config, np.zeros((1, 1, 32, 32), np.float32))


# --------------------------------------------------------------------------- decoder

def _ids(cfg, B=3, T=12, seed=6, pad_tail=True):
    """(B, T): decoder start, then random non-special tokens; the last row ends in pads."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, cfg.decoder.vocab_size, (B, T))
    ids[:, 0] = cfg.decoder_start_token_id
    if pad_tail:
        ids[-1, -3:] = cfg.decoder.pad_token_id  # pads matter for sinusoidal position ids
    return ids


@pytest.mark.parametrize("preset", PRESETS)
def test_decoder_logits_match_hf(preset, built):
    hf, model = built(preset)
    cfg, params = model.config, model.params
    px = preprocess(random_line_images(3, seed=7), cfg)
    ids = _ids(cfg)
    B, T = ids.shape
    with torch.inference_mode():
        ref = hf(pixel_values=torch.from_numpy(px), decoder_input_ids=torch.from_numpy(ids),
                 output_attentions=True)
    ref_logits = ref.logits.numpy()
    enc = encoder_forward(params, cfg, px)

    # whole sequence at once
    cache = init_cache(params, cfg, enc, max_len=T + 4)
    logits, cross = decoder_forward(params, cfg, ids, cache, output_attentions=True)
    assert logits.dtype == np.float32 and cache.length == T
    assert _maxdiff(logits, ref_logits) < TOL
    assert len(cross) == cfg.decoder.decoder_layers
    for c, r in zip(cross, ref.cross_attentions):
        assert _maxdiff(c, r.numpy()) < TOL

    # one token at a time through the KV cache
    cache = init_cache(params, cfg, enc, max_len=T)
    steps = [decoder_forward(params, cfg, ids[:, t:t + 1], cache) for t in range(T)]
    assert _maxdiff(np.concatenate(steps, axis=1), ref_logits) < TOL

    # a prefix, then single steps, then a 2-token chunk
    cache = init_cache(params, cfg, enc, max_len=T)
    parts = [decoder_forward(params, cfg, ids[:, :5], cache)]
    parts += [decoder_forward(params, cfg, ids[:, t:t + 1], cache) for t in range(5, T - 2)]
    parts.append(decoder_forward(params, cfg, ids[:, T - 2:], cache))
    assert _maxdiff(np.concatenate(parts, axis=1), ref_logits) < TOL


def test_decoder_matches_hf_cached_generation_steps(built):
    """Step logits against HF's own KV cache (past_key_values), not just a full recompute."""
    hf, model = built("small")
    cfg, params = model.config, model.params
    px = preprocess(random_line_images(2, seed=8), cfg)
    ids = _ids(cfg, B=2, T=8, pad_tail=False)
    enc = encoder_forward(params, cfg, px)
    cache = init_cache(params, cfg, enc, max_len=8)
    with torch.inference_mode():
        enc_t = hf.encoder(torch.from_numpy(px)).last_hidden_state
        past = None
        for t in range(8):
            out = hf(encoder_outputs=(enc_t,), decoder_input_ids=torch.from_numpy(ids[:, t:t + 1]),
                     cache=past, use_cache=True)
            past = out.cache
            ours = decoder_forward(params, cfg, ids[:, t:t + 1], cache)
            assert _maxdiff(ours, out.logits.numpy()) < TOL, t


@pytest.mark.parametrize("fmt", ["bin"])
def test_bin_checkpoint_matches_hf(fmt, built):
    hf, model = built("small", fmt)
    cfg = model.config
    px = preprocess(random_line_images(2, seed=9), cfg)
    ids = _ids(cfg, B=2, T=6)
    with torch.inference_mode():
        ref = hf(pixel_values=torch.from_numpy(px), decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
    cache = init_cache(model.params, cfg, encoder_forward(model.params, cfg, px), 6)
    assert _maxdiff(decoder_forward(model.params, cfg, ids, cache), ref) < TOL


def test_reorder_cache(built):
    _, model = built("tiny")
    cfg, params = model.config, model.params
    px = preprocess(random_line_images(3, seed=10), cfg)
    enc = encoder_forward(params, cfg, px)
    ids = _ids(cfg, B=3, T=6, pad_tail=False)
    order = np.array([2, 0, 0])
    a = init_cache(params, cfg, enc, 8)
    decoder_forward(params, cfg, ids[:, :5], a)
    reorder_cache(a, order)
    got = decoder_forward(params, cfg, ids[order, 5:6], a)
    b = init_cache(params, cfg, enc[order], 8)
    want = decoder_forward(params, cfg, ids[order], b)[:, 5:6]
    assert _maxdiff(got, want) < TOL
    # expanding the batch (images -> beams)
    c = init_cache(params, cfg, enc, 8)
    decoder_forward(params, cfg, ids[:, :5], c)
    reorder_cache(c, np.repeat(np.arange(3), 2))
    assert c.self_k[0].shape[0] == 6 and c.cross_v[-1].shape[0] == 3  # the beams share their image's cross K/V
    assert c.cross_rows.tolist() == [0, 0, 1, 1, 2, 2]
    got = decoder_forward(params, cfg, np.repeat(ids[:, 5:6], 2, axis=0), c)
    assert _maxdiff(got[::2], decoder_forward(params, cfg, ids, init_cache(params, cfg, enc, 8))[:, 5:6]) < TOL
    # several new tokens at once over shared cross K/V (the masked attention path, not attend_one)
    d = init_cache(params, cfg, enc, 8)
    decoder_forward(params, cfg, ids[:, :4], d)
    reorder_cache(d, np.array([2, 2, 0, 1]))
    got = decoder_forward(params, cfg, ids[[2, 2, 0, 1], 4:6], d)
    want = decoder_forward(params, cfg, ids[[2, 2, 0, 1]], init_cache(params, cfg, enc[[2, 2, 0, 1]], 8))[:, 4:6]
    assert _maxdiff(got, want) < TOL


def test_decoder_bad_input(built):
    _, model = built("tiny")
    cfg, params = model.config, model.params
    enc = encoder_forward(params, cfg, np.zeros((1, 3, 32, 32), np.float32))
    cache = init_cache(params, cfg, enc, 4)
    with pytest.raises(ValueError, match="max_len"):
        decoder_forward(params, cfg, np.full((1, 5), 2), cache)
    with pytest.raises(ValueError, match="token id"):
        decoder_forward(params, cfg, np.array([[cfg.decoder.vocab_size]]), cache)
    with pytest.raises(ValueError, match="batch"):
        decoder_forward(params, cfg, np.array([[2], [2]]), cache)
    # learned positions end at max_position_embeddings (HF raises an index error there)
    n = cfg.decoder.max_position_embeddings
    cache = init_cache(params, cfg, enc, n + 1)
    decoder_forward(params, cfg, np.full((1, n), 5), cache)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        decoder_forward(params, cfg, np.array([[5]]), cache)


def test_sinusoidal_table_matches_hf():
    from transformers.models.trocr.modeling_trocr import TrOCRSinusoidalPositionalEmbedding
    for n, d, pad in ((1027, 64, 1), (40, 33, 1), (20, 256, 0)):
        ref = TrOCRSinusoidalPositionalEmbedding.get_embedding(n, d, pad).numpy()
        assert _maxdiff(sinusoidal_table(n, d, pad), ref) < TOL


# --------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_matches_torch(shape):
    x, g, b = random_layer_norm_inputs(shape)
    for eps in (1e-12, 1e-5):
        ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (shape[-1],), torch.from_numpy(g),
                                             torch.from_numpy(b), eps).numpy()
        assert _maxdiff(kernels.layer_norm(x, g, b, eps), ref) < TOL


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_bias_act_matches_torch(act):
    x, b = random_bias_act_inputs()
    got = kernels.bias_act_(x.copy(), b, act)
    ref = getattr(torch.nn.functional, act)(torch.from_numpy(x + b)).numpy()
    assert _maxdiff(got, ref) < 1e-6








# --------------------------------------------------------------------------- config and weights

def _edit_config(hf_dir, section, key, value, fname="config.json"):
    p = hf_dir / fname
    d = json.loads(p.read_text())
    (d[section] if section else d)[key] = value
    p.write_text(json.dumps(d))


@pytest.mark.parametrize("section,key,value", [
    ("encoder", "model_type", "swin"), ("encoder", "hidden_act", "silu"),
    ("decoder", "activation_function", "gelu_new"), ("decoder", "model_type", "bart"),
    ("decoder", "position_embedding_type", "relative_key"), ("decoder", "add_cross_attention", False),
    ("encoder", "interpolate_pos_encoding", True), ("decoder", "cross_attention_hidden_size", 48),
    ("encoder", "image_size", "big"), ("decoder", "d_model", 30), (None, "model_type", "encoder-decoder"),
])
def test_unsupported_config_names_field(section, key, value, tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    _edit_config(hf_dir, section, key, value)
    with pytest.raises(ConfigError, match=key):
        load_config(hf_dir)


def test_preprocessor_config_errors(tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    _edit_config(hf_dir, None, "resample", 9, "preprocessor_config.json")
    with pytest.raises(ConfigError, match="resample"):
        load_config(hf_dir)
    _edit_config(hf_dir, None, "image_processor_type", "CLIPImageProcessor", "preprocessor_config.json")
    with pytest.raises(ConfigError, match="image_processor_type"):
        load_config(hf_dir)
    (hf_dir / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        load_config(hf_dir)


def test_config_honours_fields(tmp_path):
    _, hf_dir = make_hf_trocr(tmp_path, "sinusoidal", tokenizer=None)
    cfg = load_config(hf_dir)
    d = cfg.decoder
    assert (d.use_learned_position_embeddings, d.layernorm_embedding, d.scale_embedding,
            d.tie_word_embeddings, d.activation_function) == (False, False, True, False, "relu")
    assert cfg.decoder_start_token_id == 2 and cfg.eos_token_id == 2 and cfg.pad_token_id == 1
    shapes = expected_param_shapes(cfg)
    assert "decoder.output_projection.weight" in shapes
    assert not any("embed_positions" in k or "layernorm_embedding" in k for k in shapes)
    _edit_config(hf_dir, None, "decoder_start_token_id", 0, "generation_config.json")
    assert load_config(hf_dir).decoder_start_token_id == 0  # generation_config wins


def test_load_model_weight_errors_and_fp16(tmp_path):
    from ocr_base.checkpoint import load_safetensors, save_safetensors
    hf, hf_dir = make_hf_trocr(tmp_path, "tiny", tokenizer=None)
    st = hf_dir / "model.safetensors"
    w = dict(load_safetensors(st, mmap=False))
    assert load_model(hf_dir).tokenizer is None

    key = "decoder.model.decoder.layers.1.fc1.weight"
    bad = dict(w, **{key: w[key][:, :-1]})
    save_safetensors(bad, st)
    with pytest.raises(WeightsError, match=key.replace(".", r"\.")):
        load_model(hf_dir)
    save_safetensors({k: v for k, v in w.items() if k != key}, st)
    with pytest.raises(WeightsError, match="missing tensor"):
        load_model(hf_dir)
    save_safetensors(dict(w, extra=w[key]), st)
    with pytest.raises(WeightsError, match="unexpected tensor 'extra'"):
        load_model(hf_dir)

    save_safetensors(w, st)
    # an HF folder is converted at float32 on first use (trocr_np.hf_cache); a float16 conversion keeps
    # the network's matrices float16 in memory (trocr_np.quant), the rest is upcast
    m = load_model(convert_trocr(hf_dir, tmp_path / "fp16", dtype="float16"))
    assert all(v.dtype == np.float32 for v in m.params.values())
    for k in (key, "encoder.encoder.layer.0.intermediate.dense.weight"):
        assert m.params[k].data.dtype == np.float16
        assert np.array_equal(dequantize(m.params[k]), w[k].astype(np.float16).astype(np.float32))
    bias = "decoder.model.decoder.layers.1.fc1.bias"
    assert isinstance(m.params[bias], np.ndarray) and m.params[bias].dtype == np.float32


def test_presets_are_what_they_claim(built):
    """Guard the fixture itself: each preset exercises the feature it is named for."""
    cfg = {p: built(p)[1].config for p in ("small", "mismatch", "nonsquare", "base")}
    assert cfg["small"].encoder.model_type == "deit" and not cfg["small"].decoder.tie_word_embeddings
    assert cfg["mismatch"].has_enc_to_dec_proj and "enc_to_dec_proj.weight" in built("mismatch")[1].params
    assert cfg["nonsquare"].encoder.image_size == (32, 128)
    assert not cfg["base"].encoder.qkv_bias and cfg["base"].decoder.tie_word_embeddings
    assert set(TROCR_PRESETS) >= set(PRESETS)
