"""Greedy and beam-search generation, reproducing transformers 5.24 `model.generate` for TrOCR.

References: transformers 5.24 `generation/utils.py` (`generate`, `_prepare_generated_length`, `_sample`,
`_beam_search` and its helpers `_get_top_k_continuations`, `_get_running_beams_for_next_iteration`,
`_update_finished_beams`, `_check_early_stop_heuristic`, `_beam_search_has_unfinished_sequences`,
`compute_transition_scores`), `generation/logits_process.py` (`NoRepeatNGramLogitsProcessor`,
`MinLengthLogitsProcessor`, `MinNewTokensLengthLogitsProcessor`), `generation/stopping_criteria.py`.

Lengths count like HF: `max_length` includes the decoder start token (so `max_length=20` yields at most
19 new tokens), `max_new_tokens=N` means `max_length = N + 1`, and with neither given (here or in the
checkpoint's generation_config.json) the default is 20 new tokens.

The beam search keeps HF's exact bookkeeping (top 2*num_beams candidates per step, float32 scores,
the -1e9 masks, the "early stop heuristic") because the returned beam depends on every one of those
details, not just on the model's probabilities.

Per-token log-probabilities (`GenerationOutput.token_logprobs`) are what HF's
`compute_transition_scores` gives for the same call:
  greedy: log_softmax of the *processed* logits (n-gram / min-length masks applied), i.e.
          `compute_transition_scores(sequences, scores, normalize_logits=True)`;
  beam:   the processed log-softmax of the chosen beam at each step, i.e.
          `compute_transition_scores(sequences, scores, beam_indices)`.
They differ only when a mask removed probability mass (greedy renormalises, beam search does not).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .decoder import decoder_forward, drop_rows, init_cache, reorder_cache
from .encoder import encoder_forward

NEG = np.float32(-1.0e9)  # HF's "never pick this" offset in beam search (exact in float32)

# HF's generation defaults (`GenerationConfig._get_default_generation_params`)
DEFAULTS = dict(max_length=20, min_length=0, num_beams=1, length_penalty=1.0, early_stopping=False,
                no_repeat_ngram_size=0)

# generation_config.json fields that would change the output and that we do not implement, with the
# value that means "off". A checkpoint asking for anything else is refused rather than silently ignored.
_UNSUPPORTED = dict(do_sample=False, repetition_penalty=1.0, encoder_repetition_penalty=1.0, bad_words_ids=None,
                    forced_bos_token_id=None, forced_eos_token_id=None, suppress_tokens=None,
                    begin_suppress_tokens=None, num_return_sequences=1, num_beam_groups=1, diversity_penalty=0.0,
                    sequence_bias=None, exponential_decay_length_penalty=None, renormalize_logits=False,
                    remove_invalid_values=False, encoder_no_repeat_ngram_size=0, guidance_scale=None,
                    penalty_alpha=None, stop_strings=None, max_time=None)


@dataclass
class GenerationOutput:
    """One entry per image.

    sequences:        token ids, decoder start token first, ending with EOS unless the length ran out
                      (no padding: HF pads shorter rows of a batch with pad_token_id).
    token_logprobs:   one float per generated token (len(sequence) - 1), see the module docstring.
    scores:           greedy: sum of token_logprobs; beam: HF's `sequences_scores` (sum / len**length_penalty).
    cross_attentions: if requested, per image a (T_gen, L, S) float32 array: for each generated token
                      and each decoder layer, the cross-attention over the S encoder positions,
                      averaged over heads (for beams: of the returned beam).
    """
    sequences: list[list[int]]
    token_logprobs: list[list[float]]
    scores: list[float]
    cross_attentions: list[np.ndarray] | None = None


class GenerationError(ValueError):
    """Invalid generation arguments or an unsupported generation_config field."""


@dataclass(frozen=True)
class GenerationOptions:
    """Every setting of `generate`, like whisper's DecodingOptions; built once (CLI, API) and passed down whole.

    A field left None takes the checkpoint's generation_config.json value, then HF's default (DEFAULTS);
    `resolved(cfg)` returns the copy `greedy_search` / `beam_search` read, with every field filled in
    (lengths as HF counts them: max_length includes the decoder start token; eos_token_id a tuple).

    num_beams:             1 is greedy search.
    max_new_tokens:        tokens to generate at most (wins over max_length).
    max_length:            total length at most, decoder start token included.
    min_length, min_new_tokens: EOS is banned until the sequence is this long.
    length_penalty:        beam score = sum log p / len ** length_penalty.
    early_stopping:        True, False or "never" (HF's beam-search stopping rules).
    no_repeat_ngram_size:  ban any n-gram from appearing twice (0: off).
    eos_token_id, pad_token_id, decoder_start_token_id: override the checkpoint's special tokens.
    output_attentions:     also return each token's head-mean cross-attention per layer.
    """
    num_beams: int | None = None
    max_new_tokens: int | None = None
    max_length: int | None = None
    min_length: int | None = None
    min_new_tokens: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    no_repeat_ngram_size: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    output_attentions: bool = False

    def __post_init__(self):
        minimum = dict(num_beams=1, max_new_tokens=1, max_length=1, min_length=0, min_new_tokens=0,
                       no_repeat_ngram_size=0, pad_token_id=0, decoder_start_token_id=0)
        for name, lo in minimum.items():
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo):
                raise GenerationError(f"GenerationOptions.{name} must be an integer >= {lo}, got {v!r}")
        lp = self.length_penalty
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, (int, float)) or not np.isfinite(lp)):
            raise GenerationError(f"GenerationOptions.length_penalty must be a finite number, got {lp!r}")
        if self.early_stopping not in (None, True, False, "never"):
            raise GenerationError(f"GenerationOptions.early_stopping must be True, False or 'never', "
                                  f"got {self.early_stopping!r}")
        eos = self.eos_token_id
        if eos is not None:
            ids = eos if isinstance(eos, (list, tuple)) else (eos,)
            if not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= 0 for e in ids):
                raise GenerationError(f"GenerationOptions.eos_token_id must be token ids >= 0, got {eos!r}")
            object.__setattr__(self, "eos_token_id", tuple(int(e) for e in ids))
        if not isinstance(self.output_attentions, bool):
            raise GenerationError(f"GenerationOptions.output_attentions must be True or False, "
                                  f"got {self.output_attentions!r}")

    def resolved(self, cfg) -> "GenerationOptions":
        """Options > checkpoint generation_config.json > HF defaults, resolved the way `generate` does."""
        return resolve_generation(self, cfg)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """(..., V) float32 -> (..., V) float32 log-probabilities."""
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # a row masked to all -inf stays -inf, not nan
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def ban_repeated_ngrams(ids: np.ndarray, scores: np.ndarray, n: int) -> None:
    """NoRepeatNGramLogitsProcessor, in place: (R, T) ids, (R, V) scores.

    A token is banned if appending it would repeat an n-gram already present in the row. Only windows
    whose first n-1 tokens equal the row's last n-1 tokens can be completed, so match those.
    """
    R, T = ids.shape
    if n <= 0 or T < n:
        return
    windows = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1)    # (R, T-n+1, n)
    prefix = ids[:, T - n + 1:]                                            # (R, n-1)
    hits = np.all(windows[:, :, :-1] == prefix[:, None, :], axis=-1)      # (R, T-n+1)
    rows, cols = np.nonzero(hits)
    scores[rows, windows[rows, cols, -1]] = -np.inf


def _process(ids: np.ndarray, scores: np.ndarray, o: GenerationOptions) -> np.ndarray:
    """HF's logits processors, in HF's order: no-repeat n-gram, then min length / min new tokens (EOS -> -inf).

    ids (R, T), scores (R, V) written in place; `o` resolved."""
    ban_repeated_ngrams(ids, scores, o.no_repeat_ngram_size)
    T = ids.shape[1]
    if o.eos_token_id and (T < o.min_length or T - 1 < o.min_new_tokens):
        scores[:, list(o.eos_token_id)] = -np.inf
    return scores


def _topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top k of (R, N), sorted descending (like torch.topk): (values, indices)."""
    if k < x.shape[1]:
        part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(x.shape[1]), x.shape).copy()
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """HF `_gather_beams`: x (B, N, ...) and idx (B, K) -> (B, K, ...)."""
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return np.take_along_axis(x, idx, axis=1)


def resolve_generation(o: GenerationOptions, cfg) -> GenerationOptions:
    """`o` with every field filled in from the checkpoint (cfg.generation, then config.json) and DEFAULTS.

    In the result max_length is the total length (HF's meaning), min_length includes min_new_tokens,
    eos_token_id is a tuple (maybe empty), pad_token_id is -1 when there is none.
    """
    gen = dict(getattr(cfg, "generation", None) or {})
    for key, off in _UNSUPPORTED.items():
        v = gen.get(key)
        if v is not None and v != off and not (key == "num_return_sequences" and v == 1):
            raise GenerationError(f"generation_config.json: field '{key}' = {v!r} is not supported (only {off!r})")

    def pick(name):
        if getattr(o, name) is not None:
            return getattr(o, name)
        return gen[name] if gen.get(name) is not None else DEFAULTS[name]

    def special(name):  # option > generation_config.json > config.json (as resolved by load_config)
        if getattr(o, name, None) is not None:
            return getattr(o, name)
        return gen[name] if gen.get(name) is not None else getattr(cfg, name, None)

    num_beams = int(pick("num_beams"))
    if num_beams < 1:
        raise GenerationError(f"num_beams must be >= 1, got {num_beams}")
    # length: max_new_tokens wins; else an explicit max_length (option or config); else 20 new tokens.
    # (HF would cap the default at config.max_position_embeddings, which a VisionEncoderDecoder config lacks.)
    max_new_tokens = o.max_new_tokens if o.max_new_tokens is not None else gen.get("max_new_tokens")
    if max_new_tokens is not None:
        max_len = int(max_new_tokens) + 1
    elif o.max_length is not None or gen.get("max_length") is not None:
        max_len = int(pick("max_length"))
    else:
        max_len = DEFAULTS["max_length"] + 1
    if max_len <= 1:
        raise GenerationError(f"max_length {max_len} leaves no room after the decoder start token "
                              "(max_length counts it; use max_new_tokens >= 1)")
    min_new = o.min_new_tokens if o.min_new_tokens is not None else gen.get("min_new_tokens")
    min_len = int(pick("min_length"))
    if min_new is not None:
        min_len = int(min_new) + 1  # HF rewrites min_length from min_new_tokens
    early = pick("early_stopping")
    if early not in (True, False, "never"):
        raise GenerationError(f"early_stopping must be True, False or 'never', got {early!r}")
    eos = special("eos_token_id")
    eos = () if eos is None else tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
    pad = special("pad_token_id")
    if pad is None and eos:
        pad = eos[0]  # HF: pad defaults to the first EOS
    start = special("decoder_start_token_id")
    if start is None:
        start = special("bos_token_id")
    if start is None:
        raise GenerationError("config: no 'decoder_start_token_id' (nor 'bos_token_id')")
    return replace(o, num_beams=num_beams, max_new_tokens=max_len - 1, max_length=max_len, min_length=min_len,
                   min_new_tokens=int(min_new or 0), length_penalty=float(pick("length_penalty")),
                   early_stopping=early, no_repeat_ngram_size=int(pick("no_repeat_ngram_size")), eos_token_id=eos,
                   pad_token_id=-1 if pad is None else int(pad), decoder_start_token_id=int(start))


def generate(model, pixel_values=None, options: GenerationOptions = GenerationOptions(), *,
             encoder_hidden_states=None) -> GenerationOutput:
    """Encode images and decode text like HF `model.generate(pixel_values, ...)`.

    pixel_values: (B, C, H, W) float32 from `preprocess`; or pass `encoder_hidden_states` (B, S, D_enc).
    options: a GenerationOptions; fields left None take the checkpoint's generation_config.json value,
    then HF's default.
    """
    cfg, params = model.config, model.params
    o = resolve_generation(options, cfg)
    dec = cfg.decoder
    if dec.use_learned_position_embeddings and o.max_length > dec.max_position_embeddings + 1:
        # the learned table covers positions 0 .. max_position_embeddings - 1, and the last token is never
        # fed back, so max_position_embeddings new tokens fit (one more is an index error in HF)
        raise GenerationError(f"max_length {o.max_length} exceeds the decoder's max_position_embeddings "
                              f"{dec.max_position_embeddings} + 1")
    if encoder_hidden_states is None:
        if pixel_values is None:
            raise GenerationError("generate needs pixel_values or encoder_hidden_states")
        encoder_hidden_states = encoder_forward(params, cfg, np.asarray(pixel_values, dtype=np.float32))
    if o.num_beams == 1:
        return greedy_search(params, cfg, encoder_hidden_states, o)
    return beam_search(params, cfg, encoder_hidden_states, o)


def _step(params, cfg, tokens, cache, output_attentions):
    """One cached decoder step: (R,) last tokens -> (R, V) float32 logits [, (R, L, S) head-mean cross-attn]."""
    out = decoder_forward(params, cfg, tokens[:, None].astype(np.int64), cache, output_attentions=output_attentions)
    if not output_attentions:
        return np.array(out[:, -1], dtype=np.float32), None  # a copy: the processors write into it
    logits, cross = out
    att = np.stack([a[:, :, -1].mean(axis=1) for a in cross], axis=1).astype(np.float32)  # (R, L, S)
    return np.array(logits[:, -1], dtype=np.float32), att


def greedy_search(params, cfg, encoder_hidden_states, o: GenerationOptions) -> GenerationOutput:
    """HF `_sample` with do_sample=False: argmax of the processed logits.

    HF keeps a finished row in the batch and feeds it pad until every row is done; here it leaves
    the batch, and its K/V cache rows with it (`decoder.drop_rows`), so each later step costs only
    the rows still running. Rows do not interact, so the ids are the same.
    encoder_hidden_states (B, S, D_enc); `o` resolved (`GenerationOptions.resolved`)."""
    B = encoder_hidden_states.shape[0]
    output_attentions = o.output_attentions
    cache = init_cache(params, cfg, encoder_hidden_states, o.max_length)
    ids = np.full((B, 1), o.decoder_start_token_id, dtype=np.int64)   # (R, t): the R running rows
    logprobs = np.zeros((B, 0), dtype=np.float32)                     # (R, t - 1)
    rows = np.arange(B)                                               # (R,) image of each running row
    seqs, lps, atts = [None] * B, [None] * B, [[] for _ in range(B)]
    eos = np.array(o.eos_token_id, dtype=np.int64)
    while len(rows):
        logits, att = _step(params, cfg, ids[:, -1], cache, output_attentions)
        scores = _process(ids, logits, o)
        nxt = np.argmax(scores, axis=-1)
        lp = np.take_along_axis(log_softmax(scores), nxt[:, None], axis=1)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        logprobs = np.concatenate([logprobs, lp], axis=1)
        if att is not None:
            for b, a in zip(rows, att):
                atts[b].append(a)
        done = np.isin(nxt, eos) | (ids.shape[1] >= o.max_length)
        if done.any():
            for k in np.flatnonzero(done):
                seqs[rows[k]] = ids[k].tolist()
                lps[rows[k]] = [float(x) for x in logprobs[k]]
            keep = np.flatnonzero(~done)
            order = drop_rows(cache, keep)
            ids, logprobs, rows = ids[order], logprobs[order], rows[order]
    atts_out = [np.stack(a) for a in atts] if output_attentions else None
    return GenerationOutput(seqs, lps, [float(np.sum(np.float32(l), dtype=np.float32)) for l in lps], atts_out)


def beam_search(params, cfg, encoder_hidden_states, o: GenerationOptions) -> GenerationOutput:
    """HF `_beam_search` (do_sample=False, num_return_sequences=1), step for step; an image whose
    result can no longer change leaves the batch (step h).

    encoder_hidden_states (B, S, D_enc); `o` resolved (`GenerationOptions.resolved`)."""
    B, nb, L = encoder_hidden_states.shape[0], o.num_beams, o.max_length
    lp_pow, early, output_attentions = o.length_penalty, o.early_stopping, o.output_attentions
    eos = np.array(o.eos_token_id, dtype=np.int64)
    K = max(2, 1 + len(eos)) * nb                       # candidates kept per step
    top_nb = np.arange(K) < nb                          # only these may finish at this step

    # cross K/V are computed once per image and shared by its beams (KVCache.cross_rows); the batch
    # is image-major, like HF's expanded one
    cache = init_cache(params, cfg, encoder_hidden_states, L)
    reorder_cache(cache, np.repeat(np.arange(B), nb))
    pad = o.pad_token_id if o.pad_token_id != -1 else None
    fill = pad if pad else (o.eos_token_id[0] if o.eos_token_id else -1)  # HF: `pad or eos[0]` (0 is falsy)
    run_seq = np.full((B, nb, L), fill, dtype=np.int64)
    run_seq[:, :, 0] = o.decoder_start_token_id
    run_scores = np.zeros((B, nb), dtype=np.float32)
    run_scores[:, 1:] = NEG                             # only beam 0 is live at the first step
    run_bidx = np.full((B, nb, L - 1), -1, dtype=np.int64)
    run_tlp = np.zeros((B, nb, L - 1), dtype=np.float32)  # per-token processed log-probs (our addition)
    seqs, bidx, tlp = run_seq.copy(), run_bidx.copy(), run_tlp.copy()
    beam_scores = np.full((B, nb), NEG, dtype=np.float32)
    finished = np.zeros((B, nb), dtype=bool)
    can_improve = np.ones((B, 1), dtype=bool)
    run_att = fin_att = None
    imgs = np.arange(B)                                 # image of each batch entry (images leave as they end)
    out = [None] * B                                    # per image: (seq, beam indices, log-probs, score, att)
    cur = 1
    while True:
        flat_ids = run_seq[:, :, :cur].reshape(B * nb, cur)
        logits, att = _step(params, cfg, flat_ids[:, -1], cache, output_attentions)
        logp = _process(flat_ids, log_softmax(logits), o)            # (B*nb, V)
        V = logp.shape[1]
        logp = logp.reshape(B, nb, V)
        acc = (logp + run_scores[:, :, None]).reshape(B, nb * V)

        # c. top-K continuations over all beams
        topk_lp, topk_idx = _topk(acc, K)
        src = topk_idx // V                                          # (B, K) beam each candidate extends
        tok = topk_idx % V
        cand_seq = _gather(run_seq, src)
        cand_seq[:, :, cur] = tok
        cand_bidx = _gather(run_bidx, src)
        cand_bidx[:, :, cur - 1] = src + np.arange(B)[:, None] * nb
        cand_tlp = _gather(run_tlp, src)
        cand_tlp[:, :, cur - 1] = np.take_along_axis(logp.reshape(B, nb * V), topk_idx, axis=1)
        if output_attentions:
            if run_att is None:
                run_att = np.zeros((B, nb, L - 1) + att.shape[1:], dtype=np.float32)
                fin_att = run_att.copy()
            cand_att = _gather(run_att, src)
            cand_att[:, :, cur - 1] = _gather(att.reshape((B, nb) + att.shape[1:]), src)

        # d. which candidates stop (max length or EOS)
        hits = np.isin(tok, eos) | (cur + 1 >= L)

        # e. best nb unfinished candidates keep running
        run_lp = topk_lp + hits.astype(np.float32) * NEG
        keep = _topk(run_lp, nb)[1]
        run_seq, run_scores, run_bidx, run_tlp = (_gather(cand_seq, keep), _gather(run_lp, keep),
                                                  _gather(cand_bidx, keep), _gather(cand_tlp, keep))
        if output_attentions:
            run_att = _gather(cand_att, keep)

        # f. finished candidates among the top nb compete with the stored finished beams
        just = hits & top_nb[None, :]
        fin_lp = topk_lp / np.float32((cur + 1 - 1) ** lp_pow)
        full = np.all(finished, axis=1, keepdims=True) & (early is True)
        fin_lp = fin_lp + full.astype(np.float32) * NEG
        fin_lp = fin_lp + (~can_improve).astype(np.float32) * NEG
        fin_lp = fin_lp + (~just).astype(np.float32) * NEG
        m_scores = np.concatenate([beam_scores, fin_lp], axis=1)
        best = _topk(m_scores, nb)[1]
        seqs = _gather(np.concatenate([seqs, cand_seq], axis=1), best)
        beam_scores = _gather(m_scores, best)
        bidx = _gather(np.concatenate([bidx, cand_bidx], axis=1), best)
        tlp = _gather(np.concatenate([tlp, cand_tlp], axis=1), best)
        finished = _gather(np.concatenate([finished, just], axis=1), best)
        if output_attentions:
            fin_att = _gather(np.concatenate([fin_att, cand_att], axis=1), best)

        # g. the cache follows the surviving beams (each within its own image: the same cross K/V)
        reorder_cache(cache, run_bidx[:, :, cur - 1].reshape(B * nb))
        cur += 1
        best_len = (L - 1) if (early == "never" and lp_pow > 0.0) else (cur - 1)
        best_possible = run_scores[:, :1] / np.float32(best_len ** lp_pow)
        worst_done = np.where(finished, np.min(beam_scores, axis=1, keepdims=True), NEG)
        can_improve = can_improve & np.any(best_possible > worst_done, axis=-1, keepdims=True)
        if not (can_improve.any() and not (finished.all() and early is True) and not hits.all()):
            break

        # h. an image that cannot improve (all its beams finished; HF then masks its candidates with
        # -1e9, so its finished beams never change again) leaves the batch with its cache rows. The
        # stopping rule over the others is unchanged: the images left are all finished, and `hits`
        # is all-true only at the length limit (at most nb of the K candidates are EOS).
        gone = ~can_improve[:, 0] | (np.all(finished, axis=1) & (early is True))
        if gone.any():
            for b in np.flatnonzero(gone):
                out[imgs[b]] = (seqs[b, 0], bidx[b, 0], tlp[b, 0], beam_scores[b, 0],
                                fin_att[b, 0] if output_attentions else None)
            keep = np.flatnonzero(~gone)
            order = drop_rows(cache, (keep[:, None] * nb + np.arange(nb)).ravel())[::nb] // nb
            imgs, run_seq, run_scores, run_bidx, run_tlp, seqs, beam_scores, bidx, tlp, finished, can_improve = (
                a[order] for a in (imgs, run_seq, run_scores, run_bidx, run_tlp, seqs, beam_scores, bidx, tlp,
                                   finished, can_improve))
            if output_attentions:
                run_att, fin_att = run_att[order], fin_att[order]
            B = len(keep)

    for b in range(B):
        out[imgs[b]] = (seqs[b, 0], bidx[b, 0], tlp[b, 0], beam_scores[b, 0],
                        fin_att[b, 0] if output_attentions else None)
    out_seq, out_lp, out_att = [], [], [] if output_attentions else None
    for seq, bi, lp, _, att in out:
        n = int(np.sum(bi != -1))  # generated tokens of the best beam
        out_seq.append(seq[:n + 1].tolist())
        out_lp.append([float(x) for x in lp[:n]])
        if output_attentions:
            out_att.append(att[:n].copy())
    return GenerationOutput(out_seq, out_lp, [float(o[3]) for o in out], out_att)
