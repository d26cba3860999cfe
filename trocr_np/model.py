"""Load a model folder: config + memory-mapped weights + tokenizer.

A converted trocr-np folder (`trocr-np convert`) is read as it is:

    model.safetensors                        weights under the HF on-disk names
    config.json, preprocessor_config.json    see trocr_np.config (or processor_config.json)
    generation_config.json                   optional
    tokenizer files                          optional (no tokenizer -> ids only), see trocr_np.tokenizer

Any other folder is taken for a Hugging Face checkpoint: it is converted on first use into the
cache and read from there afterwards (trocr_np.hf_cache).

float32 tensors stay read-only views into the memory-mapped file (no RAM until touched);
float16/bfloat16 files are upcast to float32 once at load, since the math runs in float32.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocr_base.checkpoint import CheckpointError, check_tensors, load_safetensors

from .config import TrOCRConfig, expected_param_shapes, load_config
from .hf_cache import converted_folder, is_converted


# The weights do not fit the config (missing, unexpected or wrongly shaped tensor): raised by the one
# tensor-set check, ocr_base.checkpoint.check_tensors. The old name stays for callers that catch it.
WeightsError = CheckpointError


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
    used = {name: arr for name, arr in params.items()
            if not name.startswith(_IGNORED_PREFIXES)
            # tied: the model uses embed_tokens (old .bin files store the shared copy too)
            and not (name == "decoder.output_projection.weight" and cfg.decoder.tie_word_embeddings)}
    check_tensors(used, expected_param_shapes(cfg), where)
    return {name: arr if arr.dtype == np.float32 else arr.astype(np.float32) for name, arr in used.items()}


def load_model(model_dir, tokenizer: bool = True) -> TrOCRModel:
    """A converted trocr-np folder or an HF checkpoint folder -> TrOCRModel (see the module docstring)."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir}: model folder not found")
    if is_converted(model_dir):
        return _load_converted(model_dir, tokenizer)
    folder, temporary = converted_folder(model_dir)
    try:
        return _load_converted(str(folder), tokenizer, mmap=not temporary)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def _load_converted(model_dir: str, tokenizer: bool, mmap: bool = True) -> TrOCRModel:
    cfg = load_config(model_dir)
    params = check_params(load_safetensors(os.path.join(model_dir, "model.safetensors"), mmap=mmap), cfg,
                          where=os.path.join(model_dir, "model.safetensors"))
    tok = None
    if tokenizer:
        from .tokenizer import load_tokenizer
        try:
            tok = load_tokenizer(model_dir)
        except FileNotFoundError:
            tok = None
    return TrOCRModel(config=cfg, params=params, tokenizer=tok)
