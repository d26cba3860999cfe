"""Shared pytest fixtures and helpers.

TrOCR reference models (`make_hf_trocr`)
----------------------------------------
`make_hf_trocr(tmp_path, preset="tiny", fmt="safetensors", tokenizer="vocab_merges", **overrides)`
builds a randomly initialised Hugging Face `VisionEncoderDecoderModel` (ViT/DeiT encoder + TrOCR
decoder) in memory, saves it with `save_pretrained` into `tmp_path / preset`, adds a
`preprocessor_config.json` (saved by the matching HF image processor) and a small byte-level BPE
tokenizer trained here (no download), and returns `(hf_model, hf_dir)`. The model is in eval mode.

- `preset`: a name from `TROCR_PRESETS` (tiny, small, base, large, sinusoidal, mismatch,
  nonsquare, ...). Base/large keep the real *widths* but only 1 layer, so tests stay fast.
- `fmt`: "safetensors" (what `save_pretrained` writes) or "bin" (the same on-disk tensor names
  written with `torch.save` as `pytorch_model.bin`, like the Hub's older checkpoints).
- `tokenizer`: "vocab_merges" (vocab.json + merges.txt, the base/large Hub layout), "json"
  (tokenizer.json saved by transformers) or None.
- `overrides`: keys `enc_*` go to the encoder config (e.g. `enc_qkv_bias=False`), `pp_*` to the
  image processor (e.g. `pp_resample=3`), anything else to the decoder config
  (e.g. `activation_function="relu"`).
- Sinusoidal-position models crash after `from_pretrained` in transformers 5.24 (trocr.md 5(a));
  use the returned in-memory model, or call `fix_sinusoidal(model)` after reloading.

Every parameter is perturbed before saving (`perturb_parameters`): transformers initialises each
Linear bias to 0 and each LayerNorm to (1, 0), so an unperturbed model cannot tell a dropped bias or
an ignored LayerNorm gain from the right maths. `tests/mutation_check.py` holds the suite to that.

Tokens: the trained vocabulary has `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=4, like
RoBERTa; the decoder vocab_size equals the tokenizer's size unless overridden.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

TROCR_PRESETS = {
    # name: (encoder kwargs, decoder kwargs, image processor kwargs)
    # (a non-default encoder layer_norm_eps, so that a reader ignoring the field fails the tests)
    "tiny": (dict(model_type="vit", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, image_size=32, patch_size=8, qkv_bias=False, layer_norm_eps=1e-3),
             dict(d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=64,
                  activation_function="gelu", cross_attention_hidden_size=32),
             dict(resample=2)),
    # trocr-small layout: DeiT (CLS + distillation, qkv bias), relu, scale_embedding, untied
    "small": (dict(model_type="deit", hidden_size=384, num_hidden_layers=2, num_attention_heads=6,
                   intermediate_size=1536, image_size=384, patch_size=16, qkv_bias=True),
              dict(d_model=256, decoder_layers=2, decoder_attention_heads=8, decoder_ffn_dim=1024,
                   activation_function="relu", scale_embedding=True, tie_word_embeddings=False,
                   cross_attention_hidden_size=384),
              dict(resample=3)),
    # trocr-base / -large widths (ViT, no qkv bias, gelu, tied), 1 layer each
    "base": (dict(model_type="vit", hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                  intermediate_size=3072, image_size=384, patch_size=16, qkv_bias=False),
             dict(d_model=1024, decoder_layers=1, decoder_attention_heads=16, decoder_ffn_dim=4096,
                  activation_function="gelu", cross_attention_hidden_size=768),
             dict(resample=2)),
    "large": (dict(model_type="vit", hidden_size=1024, num_hidden_layers=1, num_attention_heads=16,
                   intermediate_size=4096, image_size=128, patch_size=16, qkv_bias=False),
              dict(d_model=1024, decoder_layers=1, decoder_attention_heads=16, decoder_ffn_dim=4096,
                   activation_function="gelu", cross_attention_hidden_size=1024),
              dict(resample=2)),
    # large-printed / stage1 layout: sinusoidal positions, no layernorm_embedding, relu, scaled, untied
    "sinusoidal": (dict(model_type="vit", hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=128, image_size=64, patch_size=16, qkv_bias=False),
                   dict(d_model=64, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=128,
                        activation_function="relu", scale_embedding=True, use_learned_position_embeddings=False,
                        layernorm_embedding=False, tie_word_embeddings=False, max_position_embeddings=1024,
                        cross_attention_hidden_size=64),
                   dict(resample=3)),
    # encoder 48 != decoder 80 and no cross_attention_hidden_size -> enc_to_dec_proj
    "mismatch": (dict(model_type="deit", hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=96, image_size=48, patch_size=16, qkv_bias=True),
                 dict(d_model=80, decoder_layers=2, decoder_attention_heads=5, decoder_ffn_dim=160,
                      activation_function="gelu", cross_attention_hidden_size=None),
                 dict(resample=2)),
    # a wide text-line input: 32 x 128 pixels, 2 x 8 patches
    "nonsquare": (dict(model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, image_size=[32, 128], patch_size=16, qkv_bias=True),
                  dict(d_model=64, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=128,
                       activation_function="relu", cross_attention_hidden_size=64, layernorm_embedding=False),
                  dict(resample=3)),
}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello, world! It's a nice day, isn't it?",
    "Handwritten notes: 12 apples, 3.5 kg of flour; (don't forget) the milk.",
    "Dear Sir, I received your letter of the 3rd of May and thank you for it.",
    "e-mail: someone@example.com", "We're here, you've seen, I'm done, they'll go.",
] * 10
_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@functools.lru_cache(maxsize=None)
def _bpe_tokenizer_json(vocab_size: int = 400) -> str:
    """A byte-level BPE (RoBERTa specials) trained on a tiny corpus, as a tokenizer JSON string."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    return tok.to_str()


def write_bpe_tokenizer(model_dir, kind: str = "vocab_merges") -> int:
    """Write the test BPE tokenizer into model_dir; returns its vocabulary size.
    kind: "vocab_merges" (vocab.json + merges.txt + HF tokenizer configs) or "json" (tokenizer.json too)."""
    import transformers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(_bpe_tokenizer_json())
    model_dir = str(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    tok.model.save(model_dir)  # vocab.json + merges.txt
    hf = transformers.RobertaTokenizer.from_pretrained(model_dir)
    hf.save_pretrained(model_dir)  # tokenizer_config.json, special_tokens_map.json (+ tokenizer.json in 5.x)
    if kind == "vocab_merges":
        p = os.path.join(model_dir, "tokenizer.json")
        if os.path.exists(p):
            os.remove(p)
    elif kind != "json":
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    return tok.get_vocab_size()


def fix_sinusoidal(model):
    """Regenerate the sinusoidal position table that transformers 5.24 leaves on `meta` after
    `from_pretrained` (trocr.md 5(a)). No-op for learned positions."""
    from transformers.models.trocr.modeling_trocr import TrOCRSinusoidalPositionalEmbedding

    ep = model.decoder.model.decoder.embed_positions
    if isinstance(ep, TrOCRSinusoidalPositionalEmbedding):
        ep.weights = TrOCRSinusoidalPositionalEmbedding.get_embedding(
            ep.weights.shape[0], ep.embedding_dim, ep.padding_idx)
    return model


@pytest.fixture(autouse=True, scope="session")
def _private_model_cache(tmp_path_factory):
    """HF folders given to load_model are converted into $TROCR_NP_CACHE: keep the tests' out of ~/.cache."""
    if "TROCR_NP_CACHE" not in os.environ:
        os.environ["TROCR_NP_CACHE"] = str(tmp_path_factory.mktemp("trocr-np-cache"))
    yield


def perturb_parameters(model, seed: int = 0, gain_std: float = 0.1, rel_std: float = 0.05,
                       abs_std: float = 0.02) -> None:
    """Add Gaussian noise to every parameter, in place: LayerNorm gains become 1 + N(0, gain_std),
    everything else (biases, LayerNorm biases, embeddings, position tables, cls / distillation tokens,
    projections) gets N(0, rel_std * rms(p) + abs_std). Tied parameters are one tensor, perturbed once."""
    import torch

    gen = torch.Generator().manual_seed(10_000 + seed)
    gains = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) and m.weight is not None}
    with torch.no_grad():
        for _, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
            if id(p) in gains:
                p.copy_(1 + gain_std * noise)
            else:
                p.add_(noise * (rel_std * float(p.float().pow(2).mean().sqrt()) + abs_std))


def make_hf_trocr(tmp_path, preset: str = "tiny", fmt: str = "safetensors",
                  tokenizer: str | None = "vocab_merges", seed: int = 0, **overrides):
    """Build, save and return (hf_model, hf_dir) for a random TrOCR at a named preset (see module doc)."""
    import torch
    import transformers
    from transformers import (DeiTConfig, TrOCRConfig, ViTConfig, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    enc_kw, dec_kw, pp_kw = (dict(x) for x in TROCR_PRESETS[preset])
    for k, v in overrides.items():
        if k.startswith("enc_"):
            enc_kw[k[4:]] = v
        elif k.startswith("pp_"):
            pp_kw[k[3:]] = v
        else:
            dec_kw[k] = v
    hf_dir = tmp_path / f"{preset}_{fmt}"
    hf_dir.mkdir(parents=True, exist_ok=True)
    vocab = write_bpe_tokenizer(hf_dir, tokenizer) if tokenizer else 400
    dec_kw.setdefault("vocab_size", vocab)

    enc_type = enc_kw.pop("model_type")
    enc_cfg = (DeiTConfig if enc_type == "deit" else ViTConfig)(**enc_kw)
    dec_cfg = TrOCRConfig(**dec_kw)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(cfg).eval()
    perturb_parameters(model, seed)
    gc = model.generation_config
    gc.decoder_start_token_id, gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = 2, 0, 2, 1
    model.config.decoder_start_token_id, model.config.pad_token_id = 2, 1
    model.config.eos_token_id = 2
    model.save_pretrained(str(hf_dir))
    if fmt == "bin":
        from safetensors.torch import load_file
        st = hf_dir / "model.safetensors"
        torch.save(load_file(str(st)), str(hf_dir / "pytorch_model.bin"))
        st.unlink()
    elif fmt != "safetensors":
        raise ValueError(f"unknown fmt {fmt!r}")

    size = enc_cfg.image_size
    h, w = (size, size) if isinstance(size, int) else size
    pp_cls = (transformers.models.deit.image_processing_pil_deit.DeiTImageProcessorPil if enc_type == "deit"
              else transformers.models.vit.image_processing_pil_vit.ViTImageProcessorPil)
    pp_kw.setdefault("size", {"height": h, "width": w})
    pp_kw.setdefault("do_center_crop", False)
    if enc_type != "deit":
        pp_kw.pop("do_center_crop")
    pp_cls(**pp_kw).save_pretrained(str(hf_dir))
    return model, hf_dir


@pytest.fixture
def hf_trocr_factory(tmp_path):
    """Fixture form of make_hf_trocr bound to the test's tmp_path: factory(preset, **kw)."""
    return functools.partial(make_hf_trocr, tmp_path)


def random_line_images(n: int, seed: int = 0, size=(40, 160)):
    """n random RGB uint8 PIL images of varied sizes around `size` (H, W): noise plus dark strokes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hh, ww = int(size[0] * rng.uniform(0.6, 1.5)), int(size[1] * rng.uniform(0.6, 1.5))
        a = rng.integers(170, 256, (hh, ww, 3), dtype=np.uint8)
        for _ in range(8):  # a few dark "strokes"
            y, x = rng.integers(0, hh), rng.integers(0, ww)
            a[max(0, y - 2):y + 2, max(0, x - 15):x + 15] = rng.integers(0, 60)
        out.append(Image.fromarray(a, "RGB"))
    return out
