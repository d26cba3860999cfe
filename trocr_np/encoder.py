"""ViT / DeiT image encoder (pre-LN transformer), as plain functions over HF-named params.

    pixels (B, C, H, W) -> patches (B, N, C*ph*pw) -> tokens (B, S, D) -> last_hidden_state (B, S, D)

S = N + 1 (ViT: CLS) or N + 2 (DeiT: CLS + distillation token). Params are keyed by the
checkpoint's on-disk names, e.g. `encoder.encoder.layer.0.attention.attention.query.weight`
(transformers 5.x renames these in memory but not on disk). Linear weights keep torch's
(out, in) layout and are applied as `x @ w.T`.

References: transformers 5.24 `models/vit/modeling_vit.py`, `models/deit/modeling_deit.py`;
docs/architecture.md (where each equation lives, the quirks).
"""
from __future__ import annotations

import numpy as np

from .kernels import bias_act_, layer_norm, matmul_wt, softmax_
from .kernels_i8 import I8Panels, matmul_i8, pack_i8, quantize_rows
from .kernels_q import matmul_packed
from .quant import PackedWeight, dequantize
from ocr_base.threads import n_workers, run_parallel, split


def linear(x, w, b=None):
    """(..., in) @ (out, in).T + (out,) -> (..., out). w: a float32 array, a PackedWeight (8/16-bit
    weights, trocr_np.quant) multiplied by the kernels that read its stored bits, or I8Panels (an
    int8 encoder matrix: int8 x int8 arithmetic, activations quantised per row, kernels_i8)."""
    # one (rows, in) GEMM for the whole batch: NumPy would loop over a leading batch axis
    matmul = matmul_wt if isinstance(w, np.ndarray) else matmul_i8 if isinstance(w, I8Panels) else matmul_packed
    y = matmul(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[0])
    if b is not None:
        y += b
    return y


def layer_matrices(params, prefix):
    """`params` with one encoder layer's packed matrices (names under `prefix`) made ready to run,
    just before the layer runs and freed after it: int8 ones repacked for the int8 kernel
    (kernels_i8.pack_i8), 16-bit ones dequantised to float32 for BLAS (the encoder's GEMMs are
    compute-bound: 16-bit weights save memory there, not time). `params` itself when there are none."""
    ready = {k: pack_i8(v.data, v.scale) if v.kind == "int8" else dequantize(v)
             for k, v in params.items() if k.startswith(prefix) and isinstance(v, PackedWeight)}
    return {**params, **ready} if ready else params


def _linear_parallel(x, w, b):
    """`linear` as row slices on the worker threads (ocr_base.threads). Besides using both cores,
    this keeps the encoder off multi-threaded BLAS: after one, OpenBLAS's idle threads spin for
    a while and would take a core from the workers of the layers that follow."""
    x2 = x.reshape(-1, x.shape[-1])
    y = np.empty((x2.shape[0], w.shape[0]), np.float32)
    run_parallel(lambda rows: _rows_into(y[slice(*rows)], x2[slice(*rows)], w, b), split(len(x2), n_workers()))
    return y.reshape(*x.shape[:-1], w.shape[0])


def patchify(pixel_values, patch_size):
    """(B, C, H, W) -> (B, gh*gw, C*ph*pw): row-major patches, each flattened in (C, kh, kw) order,
    so that `patches @ W.reshape(D, -1).T` equals the stride-`patch` Conv2d."""
    B, C, H, W = pixel_values.shape
    ph, pw = patch_size
    gh, gw = H // ph, W // pw
    x = pixel_values[:, :, :gh * ph, :gw * pw]  # Conv2d drops a ragged border
    x = x.reshape(B, C, gh, ph, gw, pw).transpose(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, ph, pw)
    return np.ascontiguousarray(x).reshape(B, gh * gw, C * ph * pw)


def embeddings(params, cfg, pixel_values):
    """(B, C, H, W) -> (B, S, D): patch projection, [CLS, (distillation)] prepended, + positions."""
    e = cfg.encoder
    p = "encoder.embeddings."
    B, C, H, W = pixel_values.shape
    if C != e.num_channels:
        raise ValueError(f"pixel_values has {C} channels, the encoder expects num_channels={e.num_channels}")
    if (H, W) != tuple(e.image_size):
        # HF raises here too unless interpolate_pos_encoding=True, which we do not implement.
        raise ValueError(f"pixel_values size ({H}*{W}) does not match the encoder image_size "
                         f"({e.image_size[0]}*{e.image_size[1]})")
    w = params[p + "patch_embeddings.projection.weight"]              # (D, C, ph, pw)
    x = _linear_parallel(patchify(pixel_values, e.patch_size), w.reshape(w.shape[0], -1),
                         params[p + "patch_embeddings.projection.bias"])  # (B, N, D)
    D = x.shape[-1]
    prefix = [params[p + "cls_token"]]
    if e.model_type == "deit":
        prefix.append(params[p + "distillation_token"])
    prefix = np.concatenate([np.broadcast_to(t, (B, 1, D)) for t in prefix], axis=1)
    x = np.concatenate([prefix.astype(np.float32), x], axis=1)     # (B, S, D)
    x += params[p + "position_embeddings"]
    return x


def self_attention(params, p, x, n_head, qkv_bias, output_attentions=False):
    """Bidirectional multi-head attention, no mask. x (B, S, D) -> (B, S, D) [, probs (B, H, S, S)]"""
    B, S, D = x.shape
    hd = D // n_head
    a = p + "attention.attention."

    def heads(name):  # (B, S, D) -> (B, H, S, hd)
        b = params[a + name + ".bias"] if qkv_bias else None
        return linear(x, params[a + name + ".weight"], b).reshape(B, S, n_head, hd).transpose(0, 2, 1, 3)

    q, k, v = heads("query"), heads("key"), heads("value")
    scores = q @ k.transpose(0, 1, 3, 2)                            # (B, H, S, S)
    # softmax(scores * hd^-0.5): HF scales the scores, not q; the kernel folds the scale in
    probs = softmax_(scores, hd ** -0.5)
    o = (probs @ v).transpose(0, 2, 1, 3).reshape(B, S, D)          # (B, S, D)
    o = linear(o, params[p + "attention.output.dense.weight"], params[p + "attention.output.dense.bias"])
    return o, (probs if output_attentions else None)


def encoder_layer(params, cfg, i, x, output_attentions=False):
    """Pre-LN block: x += attn(LN(x)); x += fc2(act(fc1(LN(x)))). (B, S, D) -> (B, S, D)"""
    e = cfg.encoder
    p = f"encoder.encoder.layer.{i}."
    h = layer_norm(x, params[p + "layernorm_before.weight"], params[p + "layernorm_before.bias"], e.layer_norm_eps)
    a, probs = self_attention(params, p, h, e.num_attention_heads, e.qkv_bias, output_attentions)
    x = x + a
    h = layer_norm(x, params[p + "layernorm_after.weight"], params[p + "layernorm_after.bias"], e.layer_norm_eps)
    h = bias_act_(linear(h, params[p + "intermediate.dense.weight"]), params[p + "intermediate.dense.bias"],
                  e.hidden_act)                                     # (B, S, F)
    x += linear(h, params[p + "output.dense.weight"], params[p + "output.dense.bias"])
    return x, probs


# ---- fast path: the same layer as independent slices on worker threads ------------------------------
# `encoder_layer` above is the readable reference. On a 2-core machine it leaves softmax and
# bias+GELU (serial Numba) on one core between 2-thread GEMMs. `encoder_layer_fast` instead cuts the
# layer into three phases whose slices need no synchronisation, each slice on a worker thread with
# single-threaded BLAS (ocr_base.threads): (1) rows: LN + Q/K/V projections; (2) (batch, head) pairs:
# scores, softmax, probs @ V; (3) rows: output projection, residual, LN, MLP, residual.
# tests/test_trocr_fast_paths.py holds it equal to the reference, threaded and serial; the whole
# encoder is checked against transformers in tests/test_trocr_parity.py.

ROW_SLICES_PER_WORKER = 1  # measured: 2 per worker (smaller GEMMs) was ~10% slower on a quiet machine


def _rows_into(out, x, w, b=None):
    """out (n, out) <- x (n, in) @ w(out, in).T [+ b], out may be a column-strided view;
    w float32 (single-threaded BLAS here) or I8Panels (kernels_i8, single-threaded)."""
    if isinstance(w, I8Panels):
        matmul_i8(x, w, b, out=out)
        return
    np.matmul(x, w.T, out=out)
    if b is not None:
        out += b


def _rows(x, w):
    """x (n, in) @ w(out, in).T -> (n, out), as `_rows_into` computes it."""
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    _rows_into(out, x, w)
    return out


def _buffer(work, name, shape):
    """A float32 array of `shape` for one layer's intermediate `name`: from `work` (a dict kept for
    one encoder pass) when it holds one of that shape, else new (and kept there). Why: the layer's big
    arrays (q/k/v: 106 MB for 20 crops) are past glibc's mmap threshold (at most 32 MB), so each new
    one is fresh pages from the kernel, zero-filled at first touch; reused over the 12 layers they fault
    in once. Measured, int8 encoder, 20 crops, 2 threads, AMD EPYC VM (2026-12-02): 6.2 -> 5.4 s, as
    fast as telling malloc to keep freed memory (mallopt: a process-wide setting, the application's
    call, not ours); 16 crops (the attention output and the layer output then under it): 4.3 -> 4.4 s."""
    if work is None:
        return np.empty(shape, np.float32)
    buf = work.get(name)
    if buf is None or buf.shape != shape:
        buf = work[name] = np.empty(shape, np.float32)
    return buf


def encoder_layer_fast(params, cfg, i, x, output_attentions=False, work=None):
    """`encoder_layer`, sliced across worker threads. (B, S, D) -> (B, S, D) [, probs (B, H, S, S)]
    work: a dict whose arrays the layer reuses (`_buffer`; encoder_forward passes one to every layer);
    the output is then one of them, valid until the layer after next."""
    e = cfg.encoder
    p = f"encoder.encoder.layer.{i}."
    a = p + "attention.attention."
    B, S, D = x.shape
    H = e.num_attention_heads
    hd = D // H
    eps = e.layer_norm_eps
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(B * S, D)
    qkv = _buffer(work, "qkv", (3, B * S, D))                       # q, k, v with heads side by side
    o = _buffer(work, "o", (B * S, D))                              # attention output before its projection
    out = _buffer(work, f"out{i % 2}", (B * S, D))                  # not x: the last layer's out
    F = params[p + "intermediate.dense.weight"].shape[0]
    hidden = _buffer(work, "fc1", (B * S, F))                       # the MLP's hidden activations
    probs = np.empty((B, H, S, S), np.float32) if output_attentions else None
    row_slices = split(B * S, n_workers() * ROW_SLICES_PER_WORKER)

    def project_qkv(rows):
        r = slice(*rows)
        h = layer_norm(x2[r], params[p + "layernorm_before.weight"], params[p + "layernorm_before.bias"], eps)
        if isinstance(params[a + "query.weight"], I8Panels):
            h = quantize_rows(h)  # int8 matrices: the one input quantised once for all three
        for j, name in enumerate(("query", "key", "value")):
            _rows_into(qkv[j, r], h, params[a + name + ".weight"], params[a + name + ".bias"] if e.qkv_bias else None)

    def attend(bh):
        bi, hi = divmod(bh, H)
        r, c = slice(bi * S, (bi + 1) * S), slice(hi * hd, (hi + 1) * hd)
        q, k, v = qkv[0, r, c], qkv[1, r, c], qkv[2, r, c]          # (S, hd) each, row stride D
        sc = probs[bi, hi] if probs is not None else np.empty((S, S), np.float32)
        np.matmul(q, k.T, out=sc)                                   # (S, S)
        softmax_(sc, hd ** -0.5)                                    # HF scales the scores, not q
        np.matmul(sc, v, out=o[r, c])                               # (S, hd)

    def mlp(rows):
        r = slice(*rows)
        y = out[r]
        _rows_into(y, o[r], params[p + "attention.output.dense.weight"], params[p + "attention.output.dense.bias"])
        y += x2[r]                                                  # residual 1
        h = layer_norm(y, params[p + "layernorm_after.weight"], params[p + "layernorm_after.bias"], eps)
        fc1, fc2 = params[p + "intermediate.dense.weight"], params[p + "output.dense.weight"]
        if isinstance(fc1, I8Panels):  # bias and activation in the kernel's pass; fc2's int8 input made there too
            h = matmul_i8(h, fc1, params[p + "intermediate.dense.bias"], out=hidden[r], act=e.hidden_act,
                          quantized=isinstance(fc2, I8Panels))      # (n, F)
        else:
            _rows_into(hidden[r], h, fc1)
            h = bias_act_(hidden[r], params[p + "intermediate.dense.bias"], e.hidden_act)  # (n, F)
        y += _rows(h, fc2)                                          # residual 2
        y += params[p + "output.dense.bias"]

    run_parallel(project_qkv, row_slices)
    run_parallel(attend, range(B * H))
    run_parallel(mlp, row_slices)
    return out.reshape(B, S, D), probs


def encoder_forward(params, cfg, pixel_values, output_attentions=False):
    """(B, C, H, W) float32 -> last_hidden_state (B, S, D) [, attentions: list of (B, H, S, S)]"""
    x = embeddings(params, cfg, np.asarray(pixel_values, dtype=np.float32))
    attentions = []
    work = {}  # the layers' intermediate arrays, reused by each (_buffer)
    for i in range(cfg.encoder.num_hidden_layers):  # 8/16-bit matrices: made ready for this layer only
        layer = layer_matrices(params, f"encoder.encoder.layer.{i}.")
        x, probs = encoder_layer_fast(layer, cfg, i, x, output_attentions, work)
        attentions.append(probs)
    x = layer_norm(x, params["encoder.layernorm.weight"], params["encoder.layernorm.bias"],
                   cfg.encoder.layer_norm_eps)
    return (x, attentions) if output_attentions else x
