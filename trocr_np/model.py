"""Load a converted trocr-np model folder: config + memory-mapped weights + tokenizer.

    model.safetensors (or a sharded index)   weights under the HF on-disk names
    config.json, preprocessor_config.json    see trocr_np.config
    generation_config.json                   optional
    tokenizer.json or vocab.json+merges.txt  optional (no tokenizer -> ids only)

float32 tensors stay read-only views into the memory-mapped file (no RAM until touched);
float16/bfloat16 files are upcast to float32 once at load, since the math runs in float32.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import load_safetensors
from .config import TrOCRConfig, expected_param_shapes, load_config


class WeightsError(ValueError):
    """The weights do not fit the config (missing, unexpected or wrongly shaped tensor)."""


@dataclass
class TrOCRModel:
    config: TrOCRConfig
    params: dict[str, np.ndarray]
    tokenizer: Any = None  # tokenizers.Tokenizer, or None when the folder has none


# Tensors HF checkpoints may carry that the math does not use.
_IGNORED_PREFIXES = ("encoder.pooler.",)


def check_params(params: dict, cfg: TrOCRConfig, where: str = "weights") -> dict[str, np.ndarray]:
    """Validate names and shapes against the config; returns the params the model uses
    (float32, pooler and a redundant tied output projection dropped)."""
    expected = expected_param_shapes(cfg)
    out = {}
    for name, arr in params.items():
        if name.startswith(_IGNORED_PREFIXES):
            continue
        if name == "decoder.output_projection.weight" and cfg.decoder.tie_word_embeddings:
            continue  # tied: the model uses embed_tokens (old .bin files store the shared copy too)
        if name not in expected:
            raise WeightsError(f"{where}: unexpected tensor '{name}' {tuple(arr.shape)} for this config.json")
        if tuple(arr.shape) != expected[name]:
            raise WeightsError(f"{where}: tensor '{name}' has shape {tuple(arr.shape)}, "
                               f"config.json implies {expected[name]}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise WeightsError(f"{where}: tensor '{name}' has dtype {arr.dtype}, expected floating point")
        out[name] = arr if arr.dtype == np.float32 else arr.astype(np.float32)
    missing = [n for n in expected if n not in out]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(f"{where}: missing tensor '{missing[0]}' {expected[missing[0]]}{more}")
    return out


def load_model(model_dir, tokenizer: bool = True) -> TrOCRModel:
    """Our converted folder -> TrOCRModel (see the module docstring for the files)."""
    model_dir = os.fspath(model_dir)
    cfg = load_config(model_dir)
    has_st = any(os.path.isfile(os.path.join(model_dir, f))
                 for f in ("model.safetensors", "model.safetensors.index.json"))
    if not has_st and os.path.isfile(os.path.join(model_dir, "pytorch_model.bin")):
        raise FileNotFoundError(f"{model_dir}: has pytorch_model.bin but no model.safetensors; "
                                f"convert it first: trocr-np convert {model_dir} OUT_DIR")
    params = check_params(load_safetensors(model_dir), cfg, where=os.path.join(model_dir, "model.safetensors"))
    tok = None
    if tokenizer:
        from .tokenizer import load_tokenizer
        try:
            tok = load_tokenizer(model_dir)
        except FileNotFoundError:
            tok = None
    return TrOCRModel(config=cfg, params=params, tokenizer=tok)
