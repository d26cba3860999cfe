"""Words inside a line (trocr_np.words): token spans, membership of CRAFT's word boxes, word boxes
from the detector or from cross-attention, mapped through the crop's homography.

Expected values are computed here from first principles (a rotation written out, character
positions counted), not with the module's helpers.
"""
import math

import numpy as np
import pytest

from trocr_np import bundled
from trocr_np.config import load_config
from trocr_np.tokenizer import load_tokenizer
from trocr_np.words import Reading, attention_columns, line_words, token_spans, words_in_lines


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(bundled.bundled_model_dir())


def rotated_quad(cx, cy, w, h, deg):
    """TL TR BR BL of a w x h box centred at (cx, cy), text running `deg` degrees counter-clockwise."""
    a = math.radians(deg)
    d, n = np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])
    c = np.array([cx, cy])
    return np.array([c - d * w / 2 - n * h / 2, c + d * w / 2 - n * h / 2,
                     c + d * w / 2 + n * h / 2, c - d * w / 2 + n * h / 2])


@pytest.mark.parametrize("text", ["hello world", "Grüße aus 東京 — ok", "it's 12.5% off!"])
def test_token_spans_cover_the_text_in_order(tok, text):
    ids = [tok.token_to_id("<s>")] + tok.encode(text, add_special_tokens=False).ids + [tok.token_to_id("</s>")]
    spans = token_spans(tok, ids, text)
    assert spans[0] is None and spans[-1] is None, "BOS and EOS produce no characters"
    inner = [s for s in spans if s is not None]
    assert inner[0][0] == 0 and inner[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(inner, inner[1:])), "spans tile the text"
    assert "".join(text[a:b] for a, b in inner) == text
    # a token whose bytes complete no character adds nothing; one that does gets the character
    for k, (a, b) in enumerate(inner):
        if b > a:
            assert tok.decode(ids[1:1 + 1 + k], skip_special_tokens=True).startswith(text[:b])


def test_words_in_lines_membership_and_order():
    line_a = rotated_quad(200, 100, 300, 40, 20)        # a line rising to the right
    line_b = rotated_quad(200, 300, 300, 40, 0)
    d = np.array([math.cos(math.radians(20)), -math.sin(math.radians(20))])
    words = [rotated_quad(*(np.array([200, 100]) + d * t), 60, 30, 20) for t in (80, -100, 0)]   # out of order
    words.append(rotated_quad(150, 300, 50, 30, 0))
    words.append(rotated_quad(600, 600, 50, 30, 0))     # in no line
    got = words_in_lines(np.array(words), np.array([line_a, line_b]))
    assert got == [[1, 2, 0], [3]]


def test_detector_boxes_when_the_words_match():
    q = rotated_quad(300, 200, 400, 50, 10)
    boxes = np.array([rotated_quad(200, 210, 80, 40, 10), rotated_quad(380, 190, 120, 40, 10)])
    r = Reading("one two", 0.8, tokens=[["<s>", 0.9], ["one", 0.6], [" two", 0.4], ["</s>", 0.95]],
                spans=[None, (0, 3), (3, 7), None])
    ws = line_words(r, q, 400, 0, boxes)
    assert [w["method"] for w in ws] == ["detector"] * 2
    np.testing.assert_allclose([w["box"] for w in ws], np.round(boxes, 2))
    assert [w["confidence"] for w in ws] == [0.6, 0.4], "a word's confidence is the mean of its tokens"
    # one box for two words: the detector does not match, and without attention there are no words
    assert line_words(r, q, 400, 0, boxes[:1]) == []


@pytest.mark.parametrize("deg,margin", [(0, 0), (15, 6), (-30, 3)])
def test_attention_boxes_follow_the_attention_through_the_homography(deg, margin):
    w, h, gw = 480, 40, 48
    q = rotated_quad(400, 300, w, h, deg)
    crop_w = w + 2 * margin
    cols = np.zeros((5, gw), np.float32)
    # tokens: "ab" at column 5, "c" at column 9, " de" at column 30, "f" at column 34, EOS spread evenly
    for t, c in enumerate([5, 9, 30, 34]):
        cols[t, c] = 1
    cols[4] = 1 / gw
    r = Reading("abc def", 0.7, tokens=[["ab", 0.5], ["c", 0.7], [" de", 0.9], ["f", 0.8], ["</s>", 1.0]],
                spans=[(0, 2), (2, 3), (3, 6), (6, 7), None], columns=cols)
    ws = line_words(r, q, crop_w, margin, None)
    assert [w["method"] for w in ws] == ["attention"] * 2
    assert [w["text"] for w in ws] == ["abc", "def"]
    assert ws[0]["confidence"] == pytest.approx(0.6) and ws[1]["confidence"] == pytest.approx(0.85)
    # centres in strip coordinates: column centres (j + 0.5) * crop_w / gw - margin, word = mean of its tokens
    x = lambda j: (j + 0.5) * crop_w / gw - margin          # noqa: E731
    c0, c1 = (x(5) + x(9)) / 2, (x(30) + x(34)) / 2
    cut = (c0 + c1) / 2
    a = math.radians(deg)
    along, down = np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])
    tl = q[0]
    page = lambda u, v: tl + u * along + v * down          # noqa: E731  the strip -> page map of a rectangle
    want = [[page(0, 0), page(cut, 0), page(cut, h), page(0, h)], [page(cut, 0), page(w, 0), page(w, h), page(cut, h)]]
    np.testing.assert_allclose([wd["box"] for wd in ws], want, atol=0.02)


def test_attention_columns_drop_the_prefix_tokens_and_sum_rows():
    cfg = load_config(bundled.bundled_model_dir())
    gh, gw = cfg.encoder.grid
    p = cfg.encoder.num_prefix_tokens
    rng = np.random.default_rng(0)
    att = rng.random((3, 2, p + gh * gw)).astype(np.float32)
    got = attention_columns(att, cfg)
    want = np.zeros((3, gw))
    for t in range(3):
        for j in range(gw):
            want[t, j] = sum(att[t, l, p + i * gw + j] for l in range(2) for i in range(gh)) / 2
        want[t] /= want[t].sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_recognition_carries_the_cross_attention_of_generate():
    from trocr_np.generate import GenerationOptions, generate
    from trocr_np.model import load_model
    from trocr_np.preprocess import preprocess
    from trocr_np.recognize import recognize
    model = load_model(bundled.bundled_model_dir())
    crop = np.full((32, 160, 3), 255, np.uint8)
    crop[10:22, 20:140] = 0
    o = GenerationOptions(max_new_tokens=6, output_attentions=True)
    r, = recognize(model, [crop], o)
    want = generate(model, preprocess([crop], model.config), o).cross_attentions[0]
    assert r.cross_attention.shape == (len(r.token_ids), model.config.decoder.decoder_layers, model.config.encoder.seq_len)
    np.testing.assert_array_equal(r.cross_attention, want)
    assert recognize(model, [crop], GenerationOptions(max_new_tokens=6))[0].cross_attention is None
