"""Load a converted trocr-np model folder: config + memory-mapped weights + tokenizer.

    model.safetensors (or a sharded index)   weights under the HF on-disk names
    config.json, preprocessor_config.json    see trocr_np.config
    generation_config.json                   optional
    tokenizer.json or vocab.json+merges.txt  optional (no tokenizer -> ids only)

float32 tensors stay read-only views into the memory-mapped file (no RAM until touched). In
float16/bfloat16/int8 files the decoder's matrices stay in their stored bits, memory-mapped
(trocr_np.quant.PackedWeight, multiplied by trocr_np.kernels_q); the other tensors are upcast to
float32 once at load (trocr_np.quant has the table).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocr_base.checkpoint import CheckpointError, check_tensors, load_safetensors

from .config import TrOCRConfig, expected_param_shapes, load_config
from .quant import packed_params


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
    """Validate names and shapes against the config; returns the params the model uses (float32
    or, for the decoder's matrices in 8/16-bit files, PackedWeight; pooler and a redundant tied
    output projection dropped). `params` as load_safetensors(keep_bf16=True) returns them."""
    used = {name: arr for name, arr in packed_params(params, where).items()
            if not name.startswith(_IGNORED_PREFIXES)
            # tied: the model uses embed_tokens (old .bin files store the shared copy too)
            and not (name == "decoder.output_projection.weight" and cfg.decoder.tie_word_embeddings)}
    check_tensors(used, expected_param_shapes(cfg), where)
    return used


def load_model(model_dir, tokenizer: bool = True) -> TrOCRModel:
    """Our converted folder -> TrOCRModel (see the module docstring for the files)."""
    model_dir = os.fspath(model_dir)
    cfg = load_config(model_dir)
    has_st = any(os.path.isfile(os.path.join(model_dir, f))
                 for f in ("model.safetensors", "model.safetensors.index.json"))
    if not has_st and os.path.isfile(os.path.join(model_dir, "pytorch_model.bin")):
        raise FileNotFoundError(f"{model_dir}: has pytorch_model.bin but no model.safetensors; "
                                f"convert it first: trocr-np convert {model_dir} OUT_DIR")
    params = check_params(load_safetensors(model_dir, keep_bf16=True), cfg,
                          where=os.path.join(model_dir, "model.safetensors"))
    tok = None
    if tokenizer:
        from .tokenizer import load_tokenizer
        try:
            tok = load_tokenizer(model_dir)
        except FileNotFoundError:
            tok = None
    return TrOCRModel(config=cfg, params=params, tokenizer=tok)
