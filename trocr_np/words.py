"""Words inside a recognised line: their text, box, confidence, and how each box was found.

    token_spans(tokenizer, ids, text) -> [(start, end)] per token: the characters of `text` it produced
    attention_columns(cross_attention, cfg) -> (T, gw): each token's attention over the patch columns
    line_words(reading, quad, crop_width, margin, detector_boxes) -> [{text, box, confidence, method}]
    words_in_lines(word_boxes, line_quads) -> [[word index, ...] per line], left to right

A word is a whitespace-separated run of the line's text. Its confidence is the mean probability of
the tokens that produced its characters (the line's confidence when the tokens are unknown). Its box
(4 corners TL TR BR BL in page coordinates, like `Line.box`) comes from one of two places:

  "detector"   Without a LinkRefiner, CRAFT's boxes are words, and the pipeline merges them into
               lines. When the detector words inside a line match the recognised words one to one
               (same count; both are ordered left to right along the line), each word takes its
               CRAFT box.
  "attention"  Otherwise each token's cross-attention over the encoder's patches (head and layer
               mean, summed over patch rows) says where along the line the decoder looked while
               writing it. A word's centre is the attention-weighted mean column of its tokens
               (kept in left-to-right order), neighbouring words are split half way between their
               centres, the first and last words reach the line's ends. The cut is made in the
               upright strip the recogniser read and mapped back to the page through the crop's
               homography (`trocr_np.crop`), so rotated and perspective lines get rotated words.

Token spans come from decoding growing prefixes of the ids: the characters a token adds to the
decoded prefix are its own. A byte-level BPE token that ends inside a multi-byte character adds
nothing until the character is complete (its span is empty and it joins the word that follows).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .crop import perspective_transform, quad_size


@dataclass
class Reading:
    """What the pipeline needs from the recogniser for one line.

    tokens:  generated tokens as (text, probability), EOS included, or None when unknown.
    spans:   per token, the [start, end) characters of `text` it produced, None for a special token
             (see token_spans).
    columns: (T, gw) float32 attention of each token over the encoder's gw patch columns (rows sum to
             1), which span the crop's width; None without output_attentions.
    """
    text: str
    confidence: float
    tokens: list | None = None
    spans: list | None = None
    columns: np.ndarray | None = None


def token_spans(tokenizer, ids, text: str) -> list[tuple[int, int] | None]:
    """[(start, end)] per id: the part of `text` (the decoded ids) each token produced; None for special
    tokens (BOS, EOS, pad: they produce no text and belong to no word)."""
    out, prev = [], 0
    for k in range(1, len(ids) + 1):
        if tokenizer.decode([int(ids[k - 1])], skip_special_tokens=True) == "":
            out.append(None)
            continue
        prefix = tokenizer.decode([int(i) for i in ids[:k]], skip_special_tokens=True)
        n = 0  # characters of the prefix that are final (a partial UTF-8 sequence decodes to U+FFFD)
        for a, b in zip(prefix, text):
            if a != b:
                break
            n += 1
        n = max(n, prev)
        out.append((prev, n))
        prev = n
    return out


def attention_columns(cross_attention, cfg) -> np.ndarray:
    """(T, L, S) head-mean cross-attention -> (T, gw): layer mean over the patches, summed over patch rows.

    The prefix tokens (CLS, DeiT's distillation token) are left out and each row renormalised.
    """
    a = np.asarray(cross_attention, np.float64).mean(axis=1)            # (T, S)
    gh, gw = cfg.encoder.grid
    p = cfg.encoder.num_prefix_tokens
    cols = a[:, p:p + gh * gw].reshape(-1, gh, gw).sum(axis=1)           # (T, gw)
    total = cols.sum(axis=1, keepdims=True)
    return (cols / np.where(total > 0, total, 1.0)).astype(np.float32)


def words_in_lines(word_boxes, line_quads) -> list[list[int]]:
    """Which detector word boxes (N, 4, 2) lie in which line quad (M, 4, 2), each list left to right.

    A word belongs to the line whose upright strip holds its centre (the nearest to the strip's middle
    row if several); words no line holds are left out.
    """
    words = np.asarray(word_boxes, np.float64).reshape(-1, 4, 2)
    centres = np.concatenate([words.mean(axis=1), np.ones((len(words), 1))], axis=1)   # (N, 3)
    best = np.full(len(words), -1)
    best_d = np.full(len(words), np.inf)
    along = np.zeros(len(words))
    for i, q in enumerate(np.asarray(line_quads, np.float64).reshape(-1, 4, 2)):
        h, w = quad_size(q)
        try:
            to_strip = np.linalg.inv(_strip_to_page(q, h, w))
        except (ValueError, np.linalg.LinAlgError):
            continue
        s = centres @ to_strip.T
        u, v = s[:, 0] / s[:, 2], s[:, 1] / s[:, 2]
        d = np.abs(v / h - 0.5)
        take = (u >= 0) & (u <= w) & (v >= 0) & (v <= h) & (d < best_d)
        best[take], best_d[take], along[take] = i, d[take], u[take]
    out = [[] for _ in range(len(np.asarray(line_quads).reshape(-1, 4, 2)))]
    for k in np.argsort(along, kind="stable"):
        if best[k] >= 0:
            out[best[k]].append(int(k))
    return out


def line_words(reading: Reading, quad, crop_width: int, margin: int = 0, detector_boxes=None) -> list[dict]:
    """The words of one recognised line (see the module docstring); [] for a line without text.

    quad:           the line's quad (4, 2) TL TR BR BL in page coordinates (what was cropped).
    crop_width:     width in pixels of the crop the recogniser read (the strip plus 2 * margin).
    margin:         the crop's margin in pixels on each side.
    detector_boxes: (K, 4, 2) CRAFT word boxes inside this line, left to right, or None.
    """
    found = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", reading.text)]
    if not found:
        return []
    confs = [_word_confidence(reading, a, b) for a, b, _ in found]
    if detector_boxes is not None and len(detector_boxes) == len(found):
        boxes, method = [np.asarray(b, np.float64).reshape(4, 2) for b in detector_boxes], "detector"
    elif reading.columns is not None and reading.spans is not None:
        boxes, method = _attention_boxes(reading, found, quad, crop_width, margin), "attention"
    else:
        return []
    return [dict(text=t, box=np.round(b, 2).tolist(), confidence=c, method=method)
            for (_, _, t), b, c in zip(found, boxes, confs)]


def _word_tokens(reading: Reading, a: int, b: int) -> list[int]:
    """Indices of the tokens that produced characters [a, b) (an empty span joins the next word)."""
    return [k for k, sp in enumerate(reading.spans or []) if sp is not None
            and ((sp[0] < b and sp[1] > a) or (sp[0] == sp[1] and a <= sp[0] < b))]


def _word_confidence(reading: Reading, a: int, b: int) -> float:
    ks = _word_tokens(reading, a, b) if reading.tokens else []
    if not ks:
        return reading.confidence
    return round(float(np.mean([reading.tokens[k][1] for k in ks])), 4)


def _strip_to_page(quad, h, w) -> np.ndarray:
    """The homography from the upright h x w strip's edge coordinates to the page (as in crop_quad)."""
    return perspective_transform(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64), quad)


def _attention_boxes(reading: Reading, found, quad, crop_width, margin) -> list[np.ndarray]:
    q = np.asarray(quad, np.float64).reshape(4, 2)
    h, w = quad_size(q)
    cols = np.asarray(reading.columns, np.float64)                      # (T, gw)
    gw = cols.shape[1]
    x = (np.arange(gw) + 0.5) * crop_width / gw - margin               # column centres in strip coordinates
    centres = []
    for a, b, _ in found:
        ks = [k for k in _word_tokens(reading, a, b) if k < len(cols)]
        prof = cols[ks].sum(axis=0) if ks else np.zeros(gw)
        # no tokens (or no attention mass): fall back to the word's place in the text
        c = float(prof @ x / prof.sum()) if prof.sum() > 0 else (a + b) / 2 / max(len(reading.text), 1) * w
        centres.append(min(max(c, 0.0), float(w)))
    centres = np.maximum.accumulate(centres)                            # reading order is left to right
    cuts = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [float(w)]])
    H = _strip_to_page(q, h, w)
    out = []
    for x0, x1 in zip(cuts[:-1], cuts[1:]):
        s = np.array([[x0, 0, 1], [x1, 0, 1], [x1, h, 1], [x0, h, 1]], np.float64) @ H.T
        out.append(s[:, :2] / s[:, 2:])
    return out
