"""ONNX Runtime as a benchmark peer: a transformers TrOCR exported with torch.onnx and run by onnxruntime.

Benchmark-only (the `bench` extra: onnx, onnxscript, onnxruntime); trocr_np never imports it.
Benchmarks import it as `import onnx_peer` (they run as `python benchmarks/X.py`).

Three graphs, exported with the dynamo exporter (torch.onnx.export(dynamo=True), opset OPSET), batch and
sequence axes dynamic:
  encoder.onnx   pixel_values (B, 3, H, W) -> encoder_hidden_states (B, S, D)   (ViT, + enc_to_dec_proj if any)
  cross_kv.onnx  encoder_hidden_states -> cross.{l}.key/value (B, h, S, dh)     once per image
  step.onnx      input_ids (B, T), past.{l}.key/value (B, h, P, dh), cross.{l}.key/value
                 -> logits (B, T, V), present.{l}.key/value (B, h, P + T, dh)
step.onnx is the whole decoder with a self-attention KV cache; the first step passes an empty past
(P = 0), so there is one decoder graph and each weight is stored once. The decoder is written here as
plain tensor code over the HF modules' weights (`_Step`) rather than traced through HF's Cache classes.
int8: onnxruntime.quantization.quantize_dynamic of every graph, MatMul weights int8 (symmetric, per output
channel like trocr_np.quant unless per_channel=False; activations quantised per call by ORT).

    peer = export_trocr(hf_model, out_dir, int8=False, threads=2)
    peer.encode(px) -> (B, S, D);  peer.greedy(px, 32) -> (B, 33) ids;  peer.step_time(enc, n) -> [s] * n
    check(hf_model, peer, px, n) -> dict of max |logit diff| and greedy agreement against transformers
"""
from __future__ import annotations

import os
import time

import numpy as np
import onnxruntime as ort
import torch

OPSET = 18


class _Encoder(torch.nn.Module):
    def __init__(self, hf):
        super().__init__()
        self.encoder, self.proj = hf.encoder, getattr(hf, "enc_to_dec_proj", None)

    def forward(self, pixel_values):
        h = self.encoder(pixel_values=pixel_values).last_hidden_state
        return h if self.proj is None else self.proj(h)


def _heads(x, h):
    """(B, T, h * dh) -> (B, h, T, dh)"""
    return x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)


class _CrossKV(torch.nn.Module):
    """The cross-attention keys and values of every layer: computed once per image, not per token."""

    def __init__(self, layers, h):
        super().__init__()
        self.layers, self.h = layers, h

    def forward(self, enc):
        out = []
        for layer in self.layers:
            a = layer.encoder_attn
            out += [_heads(a.k_proj(enc), self.h), _heads(a.v_proj(enc), self.h)]
        return tuple(out)


def _attend(q, k, v, bias=None):
    """q (B, h, T, dh) already scaled, k/v (B, h, S, dh), bias (T, S) additive -> (B, T, h * dh)"""
    w = q @ k.transpose(-1, -2)
    if bias is not None:
        w = w + bias
    o = torch.softmax(w, dim=-1) @ v
    return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1)


class _Step(torch.nn.Module):
    """One cached TrOCR decoder call (post-LN, like TrOCRDecoderLayer): T new tokens after P cached."""

    def __init__(self, hf):
        super().__init__()
        lm = hf.decoder
        dec, cfg = lm.model.decoder, lm.config
        self.dec, self.h = dec, cfg.decoder_attention_heads
        self.learned, self.pad = cfg.use_learned_position_embeddings, dec.padding_idx
        # learned: row P + t + 2 of the table; sinusoidal: fairseq positions (pads get row `pad`)
        table = dec.embed_positions.weight if self.learned else dec.embed_positions.weights
        self.register_buffer("pos_table", table.detach().clone(), persistent=False)
        # the output projection as a plain (D, V) initialiser: the tied (V, D) weight would reach its MatMul
        # through a Transpose, which quantize_dynamic skips (it quantises MatMuls fed by an initialiser)
        self.register_buffer("proj", lm.output_projection.weight.detach().t().contiguous(), persistent=False)

    def positions(self, ids, past):
        if self.learned:
            idx = torch.arange(ids.shape[1], device=ids.device) + past + 2
            return self.pos_table[idx][None]
        mask = (ids != self.pad).long()
        return self.pos_table[(torch.cumsum(mask, 1) + past) * mask + self.pad]

    def forward(self, ids, *kv):
        n = len(self.dec.layers)
        past, cross = kv[:2 * n], kv[2 * n:]
        P, T = past[0].shape[2], ids.shape[1]
        x = self.dec.embed_tokens(ids) + self.positions(ids, P)
        if self.dec.layernorm_embedding is not None:
            x = self.dec.layernorm_embedding(x)
        # causal over the cache: new token t sees keys 0 .. P + t
        allowed = torch.arange(P + T)[None, :] <= (torch.arange(T) + P)[:, None]
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        present = []
        for i, layer in enumerate(self.dec.layers):
            a = layer.self_attn
            k = torch.cat([past[2 * i], _heads(a.k_proj(x), self.h)], dim=2)
            v = torch.cat([past[2 * i + 1], _heads(a.v_proj(x), self.h)], dim=2)
            present += [k, v]
            x = layer.self_attn_layer_norm(x + a.out_proj(_attend(_heads(a.q_proj(x) * a.scaling, self.h), k, v, bias)))
            c = layer.encoder_attn
            q = _heads(c.q_proj(x) * c.scaling, self.h)
            x = layer.encoder_attn_layer_norm(x + c.out_proj(_attend(q, cross[2 * i], cross[2 * i + 1])))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        return (x @ self.proj, *present)


def _export(module, args, path, input_names, output_names, dynamic_shapes):
    prog = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, input_names=input_names,
                             output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=True,
                             verbose=False, external_data=False)
    prog.save(path)


def _quantize(src, dst, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], per_channel=per_channel,
                     weight_type=QuantType.QInt8)


class OrtTrOCR:
    """ORT sessions for the three graphs plus the token ids greedy decoding needs."""

    def __init__(self, paths, layers, heads, head_dim, start, eos, pad, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.enc_s, self.cross_s, self.step_s = (ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
                                                 for p in paths)
        self.layers, self.heads, self.head_dim = layers, heads, head_dim
        self.start, self.eos, self.pad = start, eos, pad
        self.names = [f"{k}.{i}.{kv}" for k in ("past", "cross") for i in range(layers) for kv in ("key", "value")]

    def encode(self, pixel_values):
        """(B, 3, H, W) float32 -> (B, S, D) float32"""
        return self.enc_s.run(None, {"pixel_values": np.ascontiguousarray(pixel_values, np.float32)})[0]

    def start_cache(self, enc):
        """Encoder states (B, S, D) -> (cross K/V list, empty self-attention past list)."""
        cross = self.cross_s.run(None, {"encoder_hidden_states": enc})
        empty = np.zeros((enc.shape[0], self.heads, 0, self.head_dim), np.float32)
        return cross, [empty] * (2 * self.layers)

    def step(self, ids, past, cross):
        """ids (B, T) int64 -> (logits (B, T, V), new past)"""
        out = self.step_s.run(None, dict(zip(self.names, past + cross), input_ids=ids))
        return out[0], out[1:]

    def _next(self, logits, suppress_eos):
        if suppress_eos:
            logits = logits.copy()
            logits[:, self.eos] = -np.inf
        return logits.argmax(-1)

    def greedy(self, pixel_values, max_new_tokens, suppress_eos=True):
        """(B, 3, H, W) -> (B, 1 + T) int64: the start token and T <= max_new_tokens greedy tokens (exactly
        max_new_tokens when suppress_eos; otherwise rows that ended are padded and decoding stops once all ended)."""
        cross, past = self.start_cache(self.encode(pixel_values))
        tok = np.full((pixel_values.shape[0], 1), self.start, np.int64)
        seq, done = [tok], np.zeros(tok.shape[0], bool)
        for _ in range(max_new_tokens):
            logits, past = self.step(tok, past, cross)
            nxt = np.where(done, self.pad, self._next(logits[:, -1], suppress_eos))
            done |= nxt == self.eos
            tok = nxt[:, None].astype(np.int64)
            seq.append(tok)
            if done.all():
                break
        return np.concatenate(seq, axis=1)

    def step_time(self, enc, n):
        """Per-step seconds of an n-token cached greedy decode (EOS suppressed) for the rows of enc (R, S, D);
        the cross-attention K/V are computed before the clock starts, like bench_trocr.ours_steps."""
        cross, past = self.start_cache(enc)
        tok = np.full((enc.shape[0], 1), self.start, np.int64)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            logits, past = self.step(tok, past, cross)
            tok = self._next(logits[:, -1], True)[:, None].astype(np.int64)
            ts.append(time.perf_counter() - t0)
        return ts


def _token_ids(hf):
    gc, cfg = hf.generation_config, hf.config

    def pick(name):
        v = getattr(gc, name, None)
        return getattr(cfg, name, None) if v is None else v
    return pick("decoder_start_token_id"), pick("eos_token_id"), pick("pad_token_id")


def export_trocr(hf_model, out_dir, int8=False, threads=2, per_channel=True):
    """Export a transformers VisionEncoderDecoderModel (eval, float32) to out_dir/{encoder,cross_kv,step}.onnx
    (int8: quantised copies *_int8.onnx beside them) and open them with `threads` intra-op threads."""
    hf = hf_model.eval()
    cfg = hf.decoder.config
    L, h = cfg.decoder_layers, cfg.decoder_attention_heads
    dh = cfg.hidden_size // h
    ec = hf.config.encoder
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{g}.onnx") for g in ("encoder", "cross_kv", "step")]
    Dim = torch.export.Dim
    B, S, T, P = Dim("batch", min=1, max=1024), Dim("src", min=1), Dim("tgt", min=1), Dim("past", min=0)
    px = torch.zeros(2, ec.num_channels, ec.image_size, ec.image_size)
    with torch.no_grad():
        if not os.path.exists(paths[0]):
            _export(_Encoder(hf), (px,), paths[0], ["pixel_values"], ["encoder_hidden_states"],
                    ({0: B},))
        enc = _Encoder(hf)(px)
        kv_names = [f"cross.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
        if not os.path.exists(paths[1]):
            _export(_CrossKV(hf.decoder.model.decoder.layers, h), (enc,), paths[1], ["encoder_hidden_states"],
                    kv_names, ({0: B, 1: S},))
        cross = _CrossKV(hf.decoder.model.decoder.layers, h)(enc)
        past = tuple(torch.zeros(2, h, 3, dh) for _ in range(2 * L))
        ids = torch.full((2, 2), 5, dtype=torch.long)
        past_names = [f"past.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
        if not os.path.exists(paths[2]):
            _export(_Step(hf), (ids, *past, *cross), paths[2], ["input_ids", *past_names, *kv_names],
                    ["logits", *[n.replace("past", "present") for n in past_names]],
                    ({0: B, 1: T}, (*[{0: B, 2: P}] * (2 * L), *[{0: B, 2: S}] * (2 * L))))
    if int8:
        qpaths = [p.replace(".onnx", "_int8.onnx") for p in paths]
        for p, q in zip(paths, qpaths):
            if not os.path.exists(q):
                _quantize(p, q, per_channel)
        paths = qpaths
    return OrtTrOCR(paths, L, h, dh, *_token_ids(hf), threads)


def check(hf_model, peer, pixel_values, n):
    """The peer against transformers on the same input: max |diff| of the encoder states, of the logits of
    an n-token teacher-forced prefill and of the same tokens fed one at a time through the cache, and the
    greedy ids against hf.generate(min_new_tokens=n) (which suppresses EOS the same way)."""
    start, eos, _ = _token_ids(hf_model)
    px_t = torch.from_numpy(pixel_values)
    with torch.no_grad():
        enc_t = hf_model.encoder(px_t).last_hidden_state
        if getattr(hf_model, "enc_to_dec_proj", None) is not None:
            enc_t = hf_model.enc_to_dec_proj(enc_t)
        ref_ids = hf_model.generate(px_t, max_new_tokens=n, min_new_tokens=n, num_beams=1, do_sample=False,
                                    use_cache=True).numpy()
        ref_logits = hf_model.decoder(input_ids=torch.from_numpy(ref_ids[:, :-1]), encoder_hidden_states=enc_t,
                                      use_cache=False).logits.numpy()
    enc = peer.encode(pixel_values)
    cross, empty = peer.start_cache(enc)
    prefill, _ = peer.step(ref_ids[:, :-1].astype(np.int64), empty, cross)
    past, cached = empty, []
    for t in range(n):
        logits, past = peer.step(ref_ids[:, t:t + 1].astype(np.int64), past, cross)
        cached.append(logits)
    cached = np.concatenate(cached, axis=1)
    ids = peer.greedy(pixel_values, n)
    return {"encoder": float(np.abs(enc - enc_t.numpy()).max()),
            "prefill logits": float(np.abs(prefill - ref_logits).max()),
            "cached logits": float(np.abs(cached - ref_logits).max()),
            "logit scale": float(np.abs(ref_logits).max()),
            "greedy equal": float((ids == ref_ids).mean()) if ids.shape == ref_ids.shape else 0.0,
            "first differing token": first_diff(ids, ref_ids)}


def first_diff(a, b):
    """Index of the first column where any row differs (len when none), for token agreement reports."""
    if a.shape != b.shape:
        return -1
    bad = np.nonzero((a != b).any(axis=0))[0]
    return int(bad[0]) if len(bad) else a.shape[1]
