"""TrOCR text decoder (BART-style post-LN transformer) with an explicit KV cache.

    ids (B, T) -> embed * scale + positions -> [LN_emb] -> layers -> logits (B, T, V)

Each layer: x = LN(x + self_attn(x)); x = LN(x + cross_attn(x, enc)); x = LN(x + ffn(x)),
every LayerNorm with eps 1e-5 (hard-coded in HF, not in the config), no final LayerNorm.
Self-attention K/V live in a cache preallocated to `max_len`; cross-attention K/V are computed
once per image in `init_cache`. Params are keyed by on-disk names
(`decoder.model.decoder.layers.0.self_attn.q_proj.weight`, ...).

Where a cached decode step's time goes with bf16/int8 weights (base layout, 1 row, 2 threads, timers
around each call; Intel Xeon VM, load 3-4, 2026-12-02): the matrices 80-87% (fc1 + fc2 33-39%, the
output projection 14-15%, the six 1024 x 1024 projections 33%), cross-attention 9-15% (57 MB of
float32 K/V per image and token), self-attention, LayerNorms, GELU and the embedding 2-3%, the
Python between the calls 2-3%. A step of 4 rows: cross-attention 20-27%, the Python 1.5-2%.
Each split call hands work to a worker thread, ~75 per token (8/16-bit q/k/v go in one call,
`projections`); for one row as native tasks, ~8 us each where a Python task costs 25-45
(ocr_base/threads.py).

References: transformers 5.24 `models/trocr/modeling_trocr.py`,
`models/vision_encoder_decoder/modeling_vision_encoder_decoder.py` (enc_to_dec_proj);
docs/architecture.md (where each equation lives, the quirks).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .encoder import linear
from .kernels import attend_one, bias_act_, layer_norm, softmax_
from .kernels_i8 import matmul_i8, pack_i8, quantize_rows
from .kernels_q import matmul_packed_many
from .quant import PackedWeight, int8_encoder, take_rows

DEC_LN_EPS = 1e-5
_P = "decoder.model.decoder."


@dataclass
class KVCache:
    """Per layer: self_k/self_v (B, H, T_max, hd), cross_k/cross_v (B_img, H, S, hd).
    Rows [0, length) of self_k/self_v are filled. cross_rows (B,): the cross K/V row that each
    batch row attends to (None: its own, B_img = B). The cross K/V depend on the image alone, so
    the beams of one image share one copy: a beam search neither copies them per beam (4 beams
    of a base line: 170 MB) nor reads them once per beam at every step, and reordering or
    dropping rows only remaps them."""
    self_k: list
    self_v: list
    cross_k: list
    cross_v: list
    length: int = 0
    cross_rows: np.ndarray | None = None

    @property
    def max_len(self) -> int:
        return self.self_k[0].shape[2] if self.self_k else 0

    def cross_index(self) -> np.ndarray:
        """(B,) int64: the cross K/V row of each batch row."""
        if self.cross_rows is not None:
            return self.cross_rows
        return np.arange(self.self_k[0].shape[0] if self.self_k else 0, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def sinusoidal_table(n, dim, padding_idx):
    """(n, dim) fairseq/tensor2tensor table: row p = [sin(p f), cos(p f)] concatenated (not
    interleaved), f_i = exp(-i ln(10000) / (half - 1)); odd dim gets a zero column; the padding
    row is zero. Computed in float32 like HF, which generates it instead of storing it."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(10000) / (half - 1)))
    ang = np.arange(n, dtype=np.float32)[:, None] * freq[None, :]
    t = np.concatenate([np.sin(ang), np.cos(ang)], axis=1)
    if dim % 2:
        t = np.concatenate([t, np.zeros((n, 1), np.float32)], axis=1)
    t[padding_idx] = 0
    t.setflags(write=False)
    return t


def positions(params, cfg, input_ids, start):
    """(B, T) ids -> (B, T, D) position embeddings for absolute positions start .. start+T-1."""
    d = cfg.decoder
    B, T = input_ids.shape
    if d.use_learned_position_embeddings:
        table = params[_P + "embed_positions.weight"]
        if start + T + 2 > table.shape[0]:
            raise ValueError(f"decoder position {start + T - 1} exceeds max_position_embeddings="
                             f"{d.max_position_embeddings}")
        return np.broadcast_to(table[start + 2:start + T + 2], (B, T, table.shape[1]))  # offset 2
    # Sinusoidal: pads map to the zero row; real tokens count from padding_idx + 1, shifted by
    # the cache length (HF create_position_ids_from_input_ids).
    pad = d.pad_token_id
    mask = (input_ids != pad).astype(np.int64)
    pos = (np.cumsum(mask, axis=1) + start) * mask + pad
    table = sinusoidal_table(max(int(pos.max()) + 1, d.max_position_embeddings + pad + 1), d.d_model, pad)
    return table[pos]


def embed(params, cfg, input_ids, start):
    """(B, T) int -> (B, T, D): token embedding * scale + positions, then optional LayerNorm."""
    d = cfg.decoder
    x = take_rows(params[_P + "embed_tokens.weight"], input_ids)    # (B, T, D) float32 (a copy)
    if d.scale_embedding:
        x *= np.float32(math.sqrt(d.d_model))
    x += positions(params, cfg, input_ids, start)
    if d.layernorm_embedding:
        x = layer_norm(x, params[_P + "layernorm_embedding.weight"], params[_P + "layernorm_embedding.bias"],
                       DEC_LN_EPS)
    return x


def _split_heads(x, n_head):
    """(B, T, D) -> (B, H, T, hd)"""
    B, T, D = x.shape
    return x.reshape(B, T, n_head, D // n_head).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """(B, H, T, hd) -> (B, T, D)"""
    B, H, T, hd = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * hd)


def projections(params, prefix, names, x):
    """[linear(x, W, b) for each name's weight and bias under prefix]: (B, T, D) -> [(B, T, N)].
    8/16-bit weights go to the workers in one call (kernels_q.matmul_packed_many), not one each."""
    ws = [params[prefix + n + ".weight"] for n in names]
    bs = [params[prefix + n + ".bias"] for n in names]
    if not all(isinstance(w, PackedWeight) for w in ws):
        return [linear(x, w, b) for w, b in zip(ws, bs)]
    ys = matmul_packed_many(x.reshape(-1, x.shape[-1]), ws)
    out = []
    for y, w, b in zip(ys, ws, bs):
        y = y.reshape(*x.shape[:-1], w.shape[0])
        y += b
        out.append(y)
    return out


def attention(q, k, v, causal_offset=None):
    """Readable attention. q (B, H, T, hd) pre-scaled, k/v (B, H, L, hd) -> (B, H, T, hd), probs.
    causal_offset=c: query t sits at absolute position c + t and sees keys 0 .. c + t."""
    s = q @ k.transpose(0, 1, 3, 2)                                # (B, H, T, L)
    if causal_offset is not None:
        T, L = s.shape[-2:]
        future = np.arange(L)[None, :] > (causal_offset + np.arange(T))[:, None]
        s[..., future] = -np.inf
    p = softmax_(s)
    return p @ v, p


def init_cache(params, cfg, encoder_hidden_states, max_len):
    """Preallocate the self-attention cache and compute every layer's cross-attention K/V once.

    encoder_hidden_states (B, S, D_enc) -> KVCache (self: (B, H, max_len, hd), cross: (B, H, S, hd))
    """
    d = cfg.decoder
    enc = np.asarray(encoder_hidden_states, dtype=np.float32)
    if cfg.has_enc_to_dec_proj:
        enc = linear(enc, params["enc_to_dec_proj.weight"], params["enc_to_dec_proj.bias"])
    B, S, _ = enc.shape
    H = d.decoder_attention_heads
    hd = d.d_model // H
    # an int8 --quantize-encoder folder: these 577-row GEMMs multiply int8 x int8 like the encoder's,
    # on the encoder's rows quantised once for all layers (quant.int8_encoder, kernels_i8)
    enc_q = quantize_rows(enc.reshape(B * S, -1)) if int8_encoder(params) else None
    cache = KVCache([], [], [], [])
    # int8: one (B S, D) output array for all 2 x layers projections (at 20 crops each is 47 MB, past
    # glibc's mmap threshold: a new one would be fresh pages, zero-filled at first touch)
    t = np.empty((B * S, d.d_model), np.float32) if enc_q is not None else None
    for i in range(d.decoder_layers):
        a = f"{_P}layers.{i}.encoder_attn."
        for name, dst in (("k_proj", cache.cross_k), ("v_proj", cache.cross_v)):
            w, b = params[a + name + ".weight"], params[a + name + ".bias"]
            y = matmul_i8(enc_q, pack_i8(w.data, w.scale), b, out=t) if enc_q is not None else linear(enc, w, b)
            dst.append(np.ascontiguousarray(_split_heads(y.reshape(B, S, -1), H)))
        cache.self_k.append(np.zeros((B, H, max_len, hd), np.float32))
        cache.self_v.append(np.zeros((B, H, max_len, hd), np.float32))
    return cache


def decoder_layer(params, cfg, i, x, cache, output_attentions=False):
    """One post-LN layer on the T new positions. x (B, T, D) -> (B, T, D) [, cross probs (B, H, T, S)]"""
    d = cfg.decoder
    H = d.decoder_attention_heads
    B, T, D = x.shape
    hd = D // H
    scale = np.float32(hd ** -0.5)
    p = f"{_P}layers.{i}."
    n0, n1 = cache.length, cache.length + T

    # self-attention: write the new K/V into the cache, attend causally over [0, n1)
    a = p + "self_attn."
    q, k, v = projections(params, a, ("q_proj", "k_proj", "v_proj"), x)
    q = q * scale  # HF scales q
    cache.self_k[i][:, :, n0:n1] = _split_heads(k, H)
    cache.self_v[i][:, :, n0:n1] = _split_heads(v, H)
    if T == 1:  # decode step: fused Numba kernel, no mask needed
        o, _ = attend_one(q.reshape(B, H, hd), cache.self_k[i], cache.self_v[i], n1)
        o = o.reshape(B, 1, D)
    else:
        o, _ = attention(_split_heads(q, H), cache.self_k[i][:, :, :n1], cache.self_v[i][:, :, :n1], n0)
        o = _merge_heads(o)
    x = layer_norm(x + linear(o, params[a + "out_proj.weight"], params[a + "out_proj.bias"]),
                   params[p + "self_attn_layer_norm.weight"], params[p + "self_attn_layer_norm.bias"], DEC_LN_EPS)

    # cross-attention over the encoder states (K/V precomputed), no mask
    a = p + "encoder_attn."
    q = linear(x, params[a + "q_proj.weight"], params[a + "q_proj.bias"]) * scale
    ck, cv, rows = cache.cross_k[i], cache.cross_v[i], cache.cross_rows
    if T == 1:
        # 8/16-bit weights: no OpenBLAS threads left spinning from a sgemv, so a split pays sooner
        o, probs = attend_one(q.reshape(B, H, hd), ck, cv, ck.shape[2],
                              no_blas=isinstance(params[a + "q_proj.weight"], PackedWeight), rows=rows)
        o, probs = o.reshape(B, 1, D), probs[:, :, None, :]
    else:
        if rows is not None:  # each row's own image's K/V (a copy: prompts only)
            ck, cv = ck[rows], cv[rows]
        o, probs = attention(_split_heads(q, H), ck, cv)
        o = _merge_heads(o)
    x = layer_norm(x + linear(o, params[a + "out_proj.weight"], params[a + "out_proj.bias"]),
                   params[p + "encoder_attn_layer_norm.weight"], params[p + "encoder_attn_layer_norm.bias"],
                   DEC_LN_EPS)

    # feed-forward
    h = bias_act_(linear(x, params[p + "fc1.weight"]), params[p + "fc1.bias"], d.activation_function)
    x = layer_norm(x + linear(h, params[p + "fc2.weight"], params[p + "fc2.bias"]),
                   params[p + "final_layer_norm.weight"], params[p + "final_layer_norm.bias"], DEC_LN_EPS)
    return x, (probs if output_attentions else None)


def output_weight(params, cfg):
    """(V, D) output projection: embed_tokens when the decoder ties them (key absent on disk)."""
    if cfg.decoder.tie_word_embeddings:
        return params[_P + "embed_tokens.weight"]
    return params["decoder.output_projection.weight"]


def decoder_forward(params, cfg, input_ids, cache, output_attentions=False):
    """(B, T) int ids at positions cache.length .. +T-1 -> logits (B, T, V) float32.

    Advances cache.length by T. With output_attentions, also returns the cross-attention
    probabilities per layer, each (B, H, T, S)."""
    input_ids = np.asarray(input_ids, dtype=np.int64)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {input_ids.shape}")
    B, T = input_ids.shape
    if cache.self_k and cache.self_k[0].shape[0] != B:
        raise ValueError(f"input_ids batch {B} does not match the cache batch {cache.self_k[0].shape[0]}")
    if cache.length + T > cache.max_len:
        raise ValueError(f"KV cache full: length {cache.length} + {T} new tokens > max_len {cache.max_len}")
    V = cfg.decoder.vocab_size
    if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= V):
        raise ValueError(f"token id out of range [0, {V})")
    x = embed(params, cfg, input_ids, cache.length)
    cross = []
    for i in range(cfg.decoder.decoder_layers):
        x, probs = decoder_layer(params, cfg, i, x, cache, output_attentions)
        cross.append(probs)
    cache.length += T
    logits = linear(x, output_weight(params, cfg))                  # (B, T, V), no bias
    return (logits, cross) if output_attentions else logits


def reorder_cache(cache, index):
    """In place: batch row b of the cache <- row index[b] (beam search; expanding images to beams).

    The self-attention K/V are copied, only their filled positions [0, length) when the batch keeps
    its size (beam search reorders every step, and the preallocated cache is mostly empty); the
    cross-attention K/V stay where they are, row b now reading row index[b]'s (`cross_rows`)."""
    index = np.asarray(index, dtype=np.int64)
    rows, n = cache.cross_index(), cache.length
    for lst in (cache.self_k, cache.self_v):
        for j, t in enumerate(lst):
            if len(index) != t.shape[0]:  # the batch changes size (e.g. expanding images to beams)
                lst[j] = np.ascontiguousarray(t[index])
            else:
                t[:, :, :n] = t[index, :, :n]  # keep the same (contiguous) buffer
    cache.cross_rows = rows[index]


def drop_rows(cache, keep):
    """In place: keep only the batch rows `keep` (sorted) of the cache; returns `order`
    (len(keep),), the old row now at each new row.

    Rows that leave (finished lines) stop costing anything in later steps. Rather than gather the
    survivors into new arrays (a copy of every surviving row at each finish), the survivors beyond
    the new batch size move into the self-attention slots that emptied below it, and each of those
    tensors becomes a view of its first len(keep) rows: only the moved rows are copied. The cross
    K/V are not copied at all: the new rows read their old rows' (`cross_rows`). When `keep` is a
    union of whole groups of rows (an image's beams, aligned), the groups stay whole and in order,
    since the holes and the movers are then both whole groups, sorted."""
    keep = np.asarray(keep, dtype=np.int64)
    n = len(keep)
    order = np.arange(n)
    held = keep < n                                     # survivors already in a slot below n
    holes = np.setdiff1d(order, keep[held])              # emptied slots below n (sorted)
    movers = keep[~held]                                 # survivors from n on (sorted)
    order[holes] = movers
    rows, m = cache.cross_index(), cache.length
    for lst in (cache.self_k, cache.self_v):
        for j, t in enumerate(lst):
            if len(movers):
                t[holes, :, :m] = t[movers, :, :m]
            lst[j] = t[:n]
    cache.cross_rows = rows[order]
    return order
