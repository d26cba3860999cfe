"""Text-line recognition: images -> preprocess -> encoder -> generate -> decode.

The HF equivalent, per batch:
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    ids = model.generate(pixel_values, **generation_options)
    texts = processor.batch_decode(ids, skip_special_tokens=True)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ocr_base.image_io import load_image

from .generate import GenerationOptions, generate
from .preprocess import preprocess
from .tokenizer import decode


@dataclass
class Recognition:
    """One recognised text line.

    text:           decoded text (special tokens skipped, like `batch_decode(skip_special_tokens=True)`)
    token_ids:      generated ids, without the decoder start token, with the final EOS if one was emitted
    token_logprobs: log-probability of each of token_ids (see trocr_np.generate for the exact definition)
    confidence:     mean token probability, mean(exp(token_logprobs)) over token_ids, EOS included
                    (the EOS probability says whether the model thinks the line is complete)
    cross_attention: with GenerationOptions(output_attentions=True), (T, L, S) float32: each token's
                    head-mean cross-attention per decoder layer over the S encoder positions; else None
    """
    text: str
    token_ids: list[int]
    token_logprobs: list[float]
    confidence: float
    cross_attention: np.ndarray | None = None


def _as_model(model):
    if isinstance(model, (str, os.PathLike)):
        from .model import load_model
        return load_model(model)
    return model


def _as_image(im):
    if isinstance(im, (str, os.PathLike, bytes)):
        return load_image(im)
    return im


# Line images encoded and decoded together: enough rows for the few-row decode kernel to pay, few
# enough that one long line does not keep many finished ones waiting.
BATCH_SIZE = 8


def recognize(model, images, options: GenerationOptions = GenerationOptions(),
              batch_size: int = BATCH_SIZE) -> list[Recognition]:
    """Recognise single text-line images.

    model:   a TrOCRModel (from `load_model`) or a model folder path.
    images:  a list of PIL images (any mode), uint8 arrays (H, W[, C]) or image file paths; one image alone works too.
    options: a GenerationOptions for `trocr_np.generate` (num_beams, max_new_tokens, ...), passed on whole.
    Returns one Recognition per image, in order. Without a tokenizer in the model folder, text is "".
    """
    model = _as_model(model)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    out = []
    for i in range(0, len(images), batch_size):
        chunk = [_as_image(im) for im in images[i:i + batch_size]]
        pixel_values = preprocess(chunk, model.config)
        g = generate(model, pixel_values, options)
        atts = g.cross_attentions or [None] * len(g.sequences)
        for seq, lps, att in zip(g.sequences, g.token_logprobs, atts):
            ids = seq[1:]
            text = decode(model.tokenizer, ids) if model.tokenizer is not None else ""
            conf = sum(math.exp(x) for x in lps) / len(lps) if lps else 0.0
            out.append(Recognition(text=text, token_ids=ids, token_logprobs=list(lps), confidence=conf,
                                   cross_attention=att))
    return out
