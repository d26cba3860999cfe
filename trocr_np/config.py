"""TrOCR configuration, read from a checkpoint folder's own JSON files.

A TrOCR checkpoint is a Hugging Face `VisionEncoderDecoderModel`: `config.json` holds an
`encoder` (ViT or DeiT) and a `decoder` (TrOCR) sub-config, `generation_config.json` (optional)
the generation defaults and special token ids, and the image processing sits in one of two files,
read with transformers' precedence (`ImageProcessingMixin.get_image_processor_dict`):
`processor_config.json` if it nests an `"image_processor"` (what `TrOCRProcessor.save_pretrained`
writes since 5.x), else `preprocessor_config.json` (the Hub layout, old `feature_extractor_type`
or new `image_processor_type` keys). Field names here are the HF ones, so a reader can grep them in the
reference. Every field that changes the math is honoured; a value we do not implement
raises `ConfigError` naming the field instead of silently computing something else.

References: transformers 5.24 `models/{vit,deit}/configuration_*.py`,
`models/trocr/configuration_trocr.py`, `models/vision_encoder_decoder/`,
`image_processing_backends.py` (PIL backend); docs/architecture.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

ENCODER_TYPES = ("vit", "deit")
ACTIVATIONS = ("gelu", "relu")  # exactly what encoder/decoder implement and the tests cover
# PIL resampling filters by their integer id (PIL.Image.Resampling), as HF stores them.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class ConfigError(ValueError):
    """A config file is missing a field or asks for something we do not implement."""


@dataclass(frozen=True)
class EncoderConfig:
    """ViT / DeiT encoder (`config.json` -> "encoder")."""
    model_type: str                  # "vit" (CLS token) or "deit" (CLS + distillation token)
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str                  # "gelu" (exact erf) or "relu"
    layer_norm_eps: float            # 1e-12 in every TrOCR checkpoint
    image_size: tuple[int, int]      # (H, W); an int in the JSON means square
    patch_size: tuple[int, int]      # (ph, pw)
    num_channels: int
    qkv_bias: bool                   # True for DeiT (small), False for ViT (base/large)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (H // ph, W // pw)."""
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.model_type == "deit" else 1

    @property
    def seq_len(self) -> int:
        gh, gw = self.grid
        return gh * gw + self.num_prefix_tokens


@dataclass(frozen=True)
class DecoderConfig:
    """TrOCR decoder (`config.json` -> "decoder"). All its LayerNorms use eps 1e-5 (hard-coded in HF)."""
    vocab_size: int
    d_model: int
    decoder_layers: int
    decoder_attention_heads: int
    decoder_ffn_dim: int
    activation_function: str        # "gelu" or "relu"
    max_position_embeddings: int
    scale_embedding: bool            # multiply token embeddings by sqrt(d_model)
    use_learned_position_embeddings: bool  # False: sinusoidal, generated (not stored)
    layernorm_embedding: bool
    tie_word_embeddings: bool        # output projection = embed_tokens (the decoder's flag decides)
    cross_attention_hidden_size: int | None  # k/v input size of cross-attention; None -> d_model
    pad_token_id: int


@dataclass(frozen=True)
class PreprocessorConfig:
    """Image processing (`preprocessor_config.json`), resolved to the PIL-backend recipe."""
    do_resize: bool
    size: dict                       # {"height", "width"} or {"shortest_edge"}
    resample: int                    # PIL filter id, see RESAMPLE_NAMES
    do_center_crop: bool
    crop_size: tuple[int, int] | None
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    # HF converts to RGB only when asked; without it a non-RGB image has the wrong channel count and HF
    # fails. RGB pixels are the same either way, so preprocess always converts (recorded, not needed).
    do_convert_rgb: bool | None = None


@dataclass(frozen=True)
class TrOCRConfig:
    encoder: EncoderConfig
    decoder: DecoderConfig
    preprocessor: PreprocessorConfig
    # special ids, resolved generation_config.json > config.json top level > decoder sub-config
    decoder_start_token_id: int
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    # generation defaults from generation_config.json (raw HF names: max_length, num_beams, ...)
    generation: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_enc_to_dec_proj(self) -> bool:
        # VisionEncoderDecoderModel adds Linear(enc_hidden, dec_hidden) only when the sizes
        # differ AND the decoder does not take the encoder size directly in cross-attention.
        return (self.encoder.hidden_size != self.decoder.d_model
                and self.decoder.cross_attention_hidden_size is None)

    @property
    def cross_kv_dim(self) -> int:
        """Input size of the cross-attention k/v projections."""
        if self.decoder.cross_attention_hidden_size is not None:
            return self.decoder.cross_attention_hidden_size
        return self.decoder.d_model


# --------------------------------------------------------------------------- helpers

def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return d


def _get(d: dict, key: str, where: str, default=..., kind=None):
    if key not in d or d[key] is None:
        if default is ...:
            raise ConfigError(f"{where}: missing field '{key}'")
        return default
    v = d[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ConfigError(f"{where}: field '{key}' must be an integer, got {v!r}")
    if kind is bool and not isinstance(v, bool):
        raise ConfigError(f"{where}: field '{key}' must be true/false, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ConfigError(f"{where}: field '{key}' must be a number, got {v!r}")
    return float(v) if kind is float else v


def _pair(v, key: str, where: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise ConfigError(f"{where}: field '{key}' must be an int or [height, width], got {v!r}")


# Upper bounds, checked before any shape table is built (10^7 decoder layers once exhausted a 24 GB
# machine): several times the largest TrOCR / ViT / DeiT checkpoint. Sizes are at least 1.
_LIMITS = {"num_hidden_layers": 128, "decoder_layers": 128, "hidden_size": 8192, "d_model": 8192,
           "num_attention_heads": 128, "decoder_attention_heads": 128, "intermediate_size": 32768,
           "decoder_ffn_dim": 32768, "vocab_size": 1_000_000, "max_position_embeddings": 8192,
           "num_channels": 4, "cross_attention_hidden_size": 8192, "image_size": 4096, "patch_size": 4096,
           "height": 4096, "width": 4096, "shortest_edge": 4096}


def _bounded(values: dict, where: str) -> None:
    """Each field of `values` named in _LIMITS (an int, or a pair of ints) within [1, limit]."""
    for key, v in values.items():
        if key in _LIMITS and v is not None:
            for x in (v if isinstance(v, tuple) else (v,)):
                if type(x) is not int or not 1 <= x <= _LIMITS[key]:
                    raise ConfigError(f"{where}: field '{key}' must be an integer from 1 to {_LIMITS[key]:,}, "
                                      f"got {v!r}")


def _unsupported(where: str, key: str, value, supported) -> ConfigError:
    return ConfigError(f"{where}: unsupported value {value!r} for field '{key}' (supported: {supported})")


# --------------------------------------------------------------------------- sections

def parse_encoder(d: dict, where: str = "config.json: encoder") -> EncoderConfig:
    model_type = _get(d, "model_type", where)
    if model_type not in ENCODER_TYPES:
        raise _unsupported(where, "model_type", model_type, ENCODER_TYPES)
    act = _get(d, "hidden_act", where, "gelu")
    if act not in ACTIVATIONS:
        raise _unsupported(where, "hidden_act", act, ACTIVATIONS)
    # Fields that would change the math in ways we do not implement.
    if d.get("interpolate_pos_encoding"):
        raise _unsupported(where, "interpolate_pos_encoding", d["interpolate_pos_encoding"], [False])
    if d.get("use_mask_token"):
        raise _unsupported(where, "use_mask_token", d["use_mask_token"], [False])
    cfg = EncoderConfig(
        model_type=model_type,
        hidden_size=_get(d, "hidden_size", where, 768, int),
        num_hidden_layers=_get(d, "num_hidden_layers", where, 12, int),
        num_attention_heads=_get(d, "num_attention_heads", where, 12, int),
        intermediate_size=_get(d, "intermediate_size", where, 3072, int),
        hidden_act=act,
        layer_norm_eps=_get(d, "layer_norm_eps", where, 1e-12, float),
        image_size=_pair(_get(d, "image_size", where, 224), "image_size", where),
        patch_size=_pair(_get(d, "patch_size", where, 16), "patch_size", where),
        num_channels=_get(d, "num_channels", where, 3, int),
        qkv_bias=_get(d, "qkv_bias", where, True, bool),
    )
    _bounded(vars(cfg), where)
    if cfg.grid[0] * cfg.grid[1] > 16384:
        raise ConfigError(f"{where}: 'image_size' / 'patch_size' give {cfg.grid[0] * cfg.grid[1]:,} patches, "
                          "over the limit of 16,384")
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ConfigError(f"{where}: 'hidden_size' {cfg.hidden_size} is not divisible by "
                          f"'num_attention_heads' {cfg.num_attention_heads}")
    for (s, p), name in zip(zip(cfg.image_size, cfg.patch_size), ("height", "width")):
        if s < p or p <= 0:
            raise ConfigError(f"{where}: 'image_size' {name} {s} is smaller than 'patch_size' {p}")
    return cfg


def parse_decoder(d: dict, where: str = "config.json: decoder") -> DecoderConfig:
    model_type = _get(d, "model_type", where)
    if model_type != "trocr":
        raise _unsupported(where, "model_type", model_type, ["trocr"])
    act = _get(d, "activation_function", where, "gelu")
    if act not in ACTIVATIONS:
        raise _unsupported(where, "activation_function", act, ACTIVATIONS)
    if d.get("add_cross_attention") is False:
        raise _unsupported(where, "add_cross_attention", False, [True])
    pet = d.get("position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        raise _unsupported(where, "position_embedding_type", pet, ["absolute"])
    cross = d.get("cross_attention_hidden_size")
    if cross is not None and (isinstance(cross, bool) or not isinstance(cross, int)):
        raise ConfigError(f"{where}: field 'cross_attention_hidden_size' must be an integer or null")
    cfg = DecoderConfig(
        vocab_size=_get(d, "vocab_size", where, 50265, int),
        d_model=_get(d, "d_model", where, 1024, int),
        decoder_layers=_get(d, "decoder_layers", where, 12, int),
        decoder_attention_heads=_get(d, "decoder_attention_heads", where, 16, int),
        decoder_ffn_dim=_get(d, "decoder_ffn_dim", where, 4096, int),
        activation_function=act,
        max_position_embeddings=_get(d, "max_position_embeddings", where, 512, int),
        scale_embedding=_get(d, "scale_embedding", where, False, bool),
        use_learned_position_embeddings=_get(d, "use_learned_position_embeddings", where, True, bool),
        layernorm_embedding=_get(d, "layernorm_embedding", where, True, bool),
        tie_word_embeddings=_get(d, "tie_word_embeddings", where, True, bool),
        cross_attention_hidden_size=cross,
        pad_token_id=_get(d, "pad_token_id", where, 1, int),
    )
    _bounded(vars(cfg), where)
    if cfg.d_model % cfg.decoder_attention_heads:
        raise ConfigError(f"{where}: 'd_model' {cfg.d_model} is not divisible by "
                          f"'decoder_attention_heads' {cfg.decoder_attention_heads}")
    return cfg


# HF image-processor classes and their class defaults (PIL backend, transformers 5.24).
_PROCESSOR_DEFAULTS = {
    "vit": dict(size={"height": 224, "width": 224}, resample=2, do_center_crop=False, crop_size=None),
    "deit": dict(size={"height": 256, "width": 256}, resample=3, do_center_crop=True,
                 crop_size={"height": 224, "width": 224}),
}
_PROCESSOR_TYPES = {
    "ViTImageProcessor": "vit", "ViTImageProcessorPil": "vit", "ViTImageProcessorFast": "vit",
    "ViTFeatureExtractor": "vit",
    "DeiTImageProcessor": "deit", "DeiTImageProcessorPil": "deit", "DeiTImageProcessorFast": "deit",
    "DeiTFeatureExtractor": "deit",
}


def _size_dict(v, key: str, where: str, default_to_square: bool = True) -> dict:
    """HF `get_size_dict`: int -> square (or {shortest_edge} without default_to_square), [h, w] -> {height, width}."""
    if isinstance(v, int) and not isinstance(v, bool) and not default_to_square:
        return {"shortest_edge": v}
    if isinstance(v, dict):
        v = {k: x for k, x in v.items() if x is not None}  # HF's SizeDict drops unset keys
        _bounded(v, where)
        if set(v) == {"height", "width"}:
            return {"height": _pair(v["height"], key, where)[0], "width": _pair(v["width"], key, where)[0]}
        if set(v) == {"shortest_edge"}:
            return {"shortest_edge": _pair(v["shortest_edge"], key, where)[0]}
        raise _unsupported(where, key, v, ["int", "[h, w]", "{height, width}", "{shortest_edge}"])
    h, w = _pair(v, key, where)
    _bounded({"height": h, "width": w}, where)
    return {"height": h, "width": w}


def parse_preprocessor(d: dict, where: str = "preprocessor_config.json") -> PreprocessorConfig:
    ptype = d.get("image_processor_type") or d.get("feature_extractor_type")
    if ptype is None:
        raise ConfigError(f"{where}: missing field 'image_processor_type' (or 'feature_extractor_type')")
    if ptype not in _PROCESSOR_TYPES:
        raise _unsupported(where, "image_processor_type", ptype, sorted(_PROCESSOR_TYPES))
    defaults = _PROCESSOR_DEFAULTS[_PROCESSOR_TYPES[ptype]]
    # pixel-changing options of HF's image processors that we do not reproduce: refused by name
    for key in ("do_pad", "do_reduce_labels", "do_flip_channel_order"):
        if d.get(key):
            raise _unsupported(where, key, d[key], [False])
    if d.get("data_format") not in (None, "channels_first"):
        raise _unsupported(where, "data_format", d["data_format"], ["channels_first"])
    convert_rgb = _get(d, "do_convert_rgb", where, None, bool)
    square = _get(d, "default_to_square", where, True, bool)
    resample = _get(d, "resample", where, defaults["resample"], int)
    if resample not in RESAMPLE_NAMES:
        raise _unsupported(where, "resample", resample, sorted(RESAMPLE_NAMES))
    do_center_crop = _get(d, "do_center_crop", where, defaults["do_center_crop"], bool)
    crop = None
    if do_center_crop:
        c = _size_dict(_get(d, "crop_size", where, defaults["crop_size"]), "crop_size", where)
        if "height" not in c:
            raise _unsupported(where, "crop_size", c, ["{height, width}"])
        crop = (c["height"], c["width"])
    mean = _get(d, "image_mean", where, [0.5, 0.5, 0.5])
    std = _get(d, "image_std", where, [0.5, 0.5, 0.5])
    for key, v in (("image_mean", mean), ("image_std", std)):
        v = v if isinstance(v, (list, tuple)) else [v] * 3
        if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise ConfigError(f"{where}: field '{key}' must be a number or 3 numbers (RGB), got {v!r}")
    mean = tuple(float(x) for x in (mean if isinstance(mean, (list, tuple)) else [mean] * 3))
    std = tuple(float(x) for x in (std if isinstance(std, (list, tuple)) else [std] * 3))
    return PreprocessorConfig(
        do_resize=_get(d, "do_resize", where, True, bool),
        size=_size_dict(_get(d, "size", where, defaults["size"]), "size", where, square),
        resample=resample,
        do_center_crop=do_center_crop,
        crop_size=crop,
        do_rescale=_get(d, "do_rescale", where, True, bool),
        rescale_factor=_get(d, "rescale_factor", where, 1 / 255, float),
        do_normalize=_get(d, "do_normalize", where, True, bool),
        image_mean=mean,
        image_std=std,
        do_convert_rgb=convert_rgb,
    )


def read_preprocessor(model_dir: str) -> tuple[dict, str]:
    """The image-processor dict of a folder and the file it came from, with transformers' precedence:
    `processor_config.json`'s nested "image_processor", else `preprocessor_config.json`."""
    proc_path = os.path.join(model_dir, "processor_config.json")
    if os.path.isfile(proc_path):
        nested = _read_json(proc_path).get("image_processor")
        if nested is not None:
            if not isinstance(nested, dict):
                raise ConfigError(f"{proc_path}: field 'image_processor' must be a JSON object")
            return nested, f"{proc_path}: image_processor"
    path = os.path.join(model_dir, "preprocessor_config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found, nor an \"image_processor\" in processor_config.json "
                                "(a TrOCR checkpoint folder needs config.json and one of them)")
    return _read_json(path), path


def _token_id(key: str, *sources: tuple[dict, str]):
    for d, where in sources:
        v = d.get(key)
        if v is None:
            continue
        if isinstance(v, list):  # generation_config may hold a list of eos ids; the first is canonical
            if not v:
                continue
            v = v[0]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{where}: field '{key}' must be an integer, got {v!r}")
        return v
    return None


# Generation settings that transformers takes from config.json when a checkpoint has no
# generation_config.json (`GenerationConfig.from_model_config`: the top level first, then the
# decoder's sub-config for what the top level leaves unset). Fine-tuned TrOCR checkpoints often
# carry num_beams / max_length / no_repeat_ngram_size there. Sampling-only knobs are left out.
GENERATION_KEYS = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "length_penalty",
                   "early_stopping", "no_repeat_ngram_size", "do_sample", "repetition_penalty",
                   "encoder_repetition_penalty", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id",
                   "suppress_tokens", "begin_suppress_tokens", "num_return_sequences", "num_beam_groups",
                   "diversity_penalty", "exponential_decay_length_penalty", "renormalize_logits",
                   "remove_invalid_values", "encoder_no_repeat_ngram_size")


def generation_from_model_config(cfg: dict) -> dict:
    """The generation settings stored in config.json itself (used when generation_config.json is absent)."""
    gen = {}
    for src in (cfg.get("decoder") or {}, cfg):  # the top level wins
        gen.update({k: v for k, v in src.items() if k in GENERATION_KEYS and v is not None})
    return gen


def parse_config(cfg: dict, preproc: dict, gen: dict | None = None, where: str = "config.json",
                 preproc_where: str = "preprocessor_config.json") -> TrOCRConfig:
    """Build a TrOCRConfig from already-loaded JSON dicts (see `load_config`)."""
    if cfg.get("model_type") != "vision-encoder-decoder":
        raise _unsupported(where, "model_type", cfg.get("model_type"), ["vision-encoder-decoder"])
    if cfg.get("tie_encoder_decoder"):
        raise _unsupported(where, "tie_encoder_decoder", True, [False])
    for key in ("encoder", "decoder"):
        if not isinstance(cfg.get(key), dict):
            raise ConfigError(f"{where}: missing field '{key}'")
    enc = parse_encoder(cfg["encoder"], f"{where}: encoder")
    dec = parse_decoder(cfg["decoder"], f"{where}: decoder")
    if dec.cross_attention_hidden_size is not None and dec.cross_attention_hidden_size != enc.hidden_size:
        raise ConfigError(f"{where}: decoder 'cross_attention_hidden_size' {dec.cross_attention_hidden_size} "
                          f"must equal the encoder 'hidden_size' {enc.hidden_size}")
    if gen is None:
        gen = generation_from_model_config(cfg)
    sources = [(gen, "generation_config.json"), (cfg, where), (cfg["decoder"], f"{where}: decoder")]
    start = _token_id("decoder_start_token_id", *sources)
    if start is None:
        raise ConfigError(f"{where}: missing field 'decoder_start_token_id'")
    return TrOCRConfig(
        encoder=enc, decoder=dec,
        preprocessor=parse_preprocessor(preproc, preproc_where),
        decoder_start_token_id=start,
        bos_token_id=_token_id("bos_token_id", *sources),
        eos_token_id=_token_id("eos_token_id", *sources),
        pad_token_id=_token_id("pad_token_id", *sources),
        generation=dict(gen),
    )


def load_config(model_dir) -> TrOCRConfig:
    """Read `config.json`, the image processor (`read_preprocessor`) and `generation_config.json` if present."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir}: model folder not found")
    cfg_path = os.path.join(model_dir, "config.json")
    cfg = _read_json(cfg_path)
    preproc, preproc_where = read_preprocessor(model_dir)
    gen_path = os.path.join(model_dir, "generation_config.json")
    gen = _read_json(gen_path) if os.path.isfile(gen_path) else None
    return parse_config(cfg, preproc, gen, where=cfg_path, preproc_where=preproc_where)


def expected_param_shapes(cfg: TrOCRConfig) -> dict[str, tuple[int, ...]]:
    """On-disk HF tensor name -> shape. Excludes the pooler and a tied output projection."""
    e, d = cfg.encoder, cfg.decoder
    D, F, C = e.hidden_size, e.intermediate_size, e.num_channels
    (ph, pw) = e.patch_size
    s: dict[str, tuple[int, ...]] = {
        "encoder.embeddings.cls_token": (1, 1, D),
        "encoder.embeddings.position_embeddings": (1, e.seq_len, D),
        "encoder.embeddings.patch_embeddings.projection.weight": (D, C, ph, pw),
        "encoder.embeddings.patch_embeddings.projection.bias": (D,),
        "encoder.layernorm.weight": (D,),
        "encoder.layernorm.bias": (D,),
    }
    if e.model_type == "deit":
        s["encoder.embeddings.distillation_token"] = (1, 1, D)
    for i in range(e.num_hidden_layers):
        p = f"encoder.encoder.layer.{i}."
        for ln in ("layernorm_before", "layernorm_after"):
            s[p + ln + ".weight"] = (D,)
            s[p + ln + ".bias"] = (D,)
        for n in ("query", "key", "value"):
            s[p + f"attention.attention.{n}.weight"] = (D, D)
            if e.qkv_bias:
                s[p + f"attention.attention.{n}.bias"] = (D,)
        s[p + "attention.output.dense.weight"] = (D, D)
        s[p + "attention.output.dense.bias"] = (D,)
        s[p + "intermediate.dense.weight"] = (F, D)
        s[p + "intermediate.dense.bias"] = (F,)
        s[p + "output.dense.weight"] = (D, F)
        s[p + "output.dense.bias"] = (D,)

    M, V, FF, K = d.d_model, d.vocab_size, d.decoder_ffn_dim, cfg.cross_kv_dim
    if cfg.has_enc_to_dec_proj:
        s["enc_to_dec_proj.weight"] = (M, D)
        s["enc_to_dec_proj.bias"] = (M,)
    p = "decoder.model.decoder."
    s[p + "embed_tokens.weight"] = (V, M)
    if d.use_learned_position_embeddings:
        s[p + "embed_positions.weight"] = (d.max_position_embeddings + 2, M)  # offset 2 (BART legacy)
    if d.layernorm_embedding:
        s[p + "layernorm_embedding.weight"] = (M,)
        s[p + "layernorm_embedding.bias"] = (M,)
    for i in range(d.decoder_layers):
        q = f"{p}layers.{i}."
        for att, kv_in in (("self_attn", M), ("encoder_attn", K)):
            s[q + f"{att}.q_proj.weight"] = (M, M)
            s[q + f"{att}.k_proj.weight"] = (M, kv_in)
            s[q + f"{att}.v_proj.weight"] = (M, kv_in)
            s[q + f"{att}.out_proj.weight"] = (M, M)
            for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                s[q + f"{att}.{n}.bias"] = (M,)
        for ln in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            s[q + ln + ".weight"] = (M,)
            s[q + ln + ".bias"] = (M,)
        s[q + "fc1.weight"] = (FF, M)
        s[q + "fc1.bias"] = (FF,)
        s[q + "fc2.weight"] = (M, FF)
        s[q + "fc2.bias"] = (M,)
    if not d.tie_word_embeddings:
        s["decoder.output_projection.weight"] = (V, M)
    return s
