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

from .encoder import encoder_forward
from .generate import GenerationOptions, generate
from .kernels import SMALL_M
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


# Line images decoded together: as many as the few-row decode kernel takes (kernels.SMALL_M, 16).
# Beyond it the step's matrices go to OpenBLAS's sgemm, measured 1.7-2x slower for a 20-row page
# than 8 + 8 + 4 rows (benchmarks/bench_page.py); 10 + 10 measured the same as 8 + 8 + 4. Each row
# holds its cross-attention K/V while it runs, 2 * layers * S * d_model * 4 bytes (57 MB for TrOCR
# base and large at 384 px, 0.9 GB at 16 rows); rows leave the batch as they finish (generate).
BATCH_SIZE = SMALL_M[1]

# The encoder runs on chunks of at most this many bytes of activations per chunk (its per-image
# scratch: q, k, v, attention output and residuals, 6 * S * D, plus the MLP's S * F, float32; 18 MB
# for ViT-base at 384 px, so 15 images). Bigger chunks buy nothing: one image is already a
# 577-row GEMM.
ENCODER_CHUNK_BYTES = 256 << 20


def encoder_chunk(cfg) -> int:
    """Images per encoder call under ENCODER_CHUNK_BYTES (at least 1)."""
    e = cfg.encoder
    per_image = 4 * e.seq_len * (6 * e.hidden_size + e.intermediate_size)
    return max(1, ENCODER_CHUNK_BYTES // per_image)


def recognize(model, images, options: GenerationOptions = GenerationOptions(),
              batch_size: int = BATCH_SIZE) -> list[Recognition]:
    """Recognise single text-line images.

    model:      a TrOCRModel (from `load_model`) or a model folder path.
    images:     a list of PIL images (any mode), uint8 arrays (H, W[, C]) or image file paths; one image alone works too.
    options:    a GenerationOptions for `trocr_np.generate` (num_beams, max_new_tokens, ...), passed on whole.
    batch_size: images decoded together (the encoder takes them in chunks of `encoder_chunk`).
    Returns one Recognition per image, in order. Without a tokenizer in the model folder, text is "".
    """
    model = _as_model(model)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    cfg, step = model.config, encoder_chunk(model.config)
    n_batches = -(-len(images) // batch_size)
    size = -(-len(images) // max(1, n_batches))      # batches as even as they can be: 40 -> 20 + 20 at 32
    out = []
    for i in range(0, len(images), size):
        batch = images[i:i + size]
        enc = np.concatenate([encoder_forward(model.params, cfg, preprocess([_as_image(im) for im in
                                                                             batch[k:k + step]], cfg))
                              for k in range(0, len(batch), step)])
        g = generate(model, options=options, encoder_hidden_states=enc)
        atts = g.cross_attentions or [None] * len(g.sequences)
        for seq, lps, att in zip(g.sequences, g.token_logprobs, atts):
            ids = seq[1:]
            text = decode(model.tokenizer, ids) if model.tokenizer is not None else ""
            conf = sum(math.exp(x) for x in lps) / len(lps) if lps else 0.0
            out.append(Recognition(text=text, token_ids=ids, token_logprobs=list(lps), confidence=conf,
                                   cross_attention=att))
    return out
