"""Tokenizer parity: trocr_np.tokenizer against transformers' tokenizers (live, same process).

Vocabularies are trained here with `tokenizers` on a small corpus, so the tests need no download:
a byte-level BPE saved as vocab.json + merges.txt (the base/large Hub layout), the same saved by
transformers as tokenizer.json, and a Unigram (XLM-R-like) tokenizer.json with
`clean_up_tokenization_spaces` on.
"""
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trocr_np.tokenizer import TokenizerError, batch_decode, decode, load_tokenizer

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello, world! It's a nice day, isn't it?",
    "Handwritten notes: 12 apples, 3.5 kg of flour; (don't forget) the milk.",
    "Ünïcödé façade naïve café — “quotes” and ‘single’ ones… ¿Qué? ¡Sí!",
    "e-mail: someone@example.com  tabs\tand\nnewlines", "We're here, you've seen, I'm done, they'll go.",
    "数字 123 四五六 日本語のテキスト", "Sum = a + b * (c - d) / e % 100 # comment",
] * 20
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TEXT = st.one_of(st.text(alphabet=st.sampled_from(list(string.printable) + list("éüß€—“”‘’…日本語 \u00a0")),
                         max_size=40),
                 st.text(max_size=20))  # any unicode, emoji and combining marks included
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _train_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def bpe_dirs(tmp_path_factory):
    """(vocab+merges folder, tokenizer.json folder saved by transformers, vocab size)."""
    tok = _train_bpe()
    pair = tmp_path_factory.mktemp("vocab_merges")
    tok.model.save(str(pair))  # writes vocab.json + merges.txt
    hf = transformers.RobertaTokenizer.from_pretrained(str(pair))
    full = tmp_path_factory.mktemp("tokenizer_json")
    hf.save_pretrained(str(full))
    assert (full / "tokenizer.json").is_file()
    return pair, full, tok.get_vocab_size()


@pytest.fixture(scope="module")
def hf_pair(bpe_dirs):
    return transformers.RobertaTokenizer.from_pretrained(str(bpe_dirs[0]))


@pytest.fixture(scope="module")
def hf_full(bpe_dirs):
    return transformers.AutoTokenizer.from_pretrained(str(bpe_dirs[1]))


def test_special_token_ids(bpe_dirs):
    for d in bpe_dirs[:2]:
        tok = load_tokenizer(d)
        assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3, 4]


@SETTINGS
@given(text=TEXT)
def test_encode_matches_reference(bpe_dirs, hf_pair, hf_full, text):
    for d, hf in ((bpe_dirs[0], hf_pair), (bpe_dirs[1], hf_full)):
        ours = _cached(d)
        assert ours.encode(text).ids == hf(text)["input_ids"]
        assert ours.encode(text, add_special_tokens=False).ids == hf(text, add_special_tokens=False)["input_ids"]


_CACHE = {}


def _cached(d):
    if d not in _CACHE:
        _CACHE[d] = load_tokenizer(d)
    return _CACHE[d]


@SETTINGS
@given(text=TEXT, data=st.data())
def test_decode_matches_reference(bpe_dirs, hf_pair, hf_full, text, data):
    """Round trip of text, and arbitrary id lists with specials sprinkled in (as a random model emits).
    Text holding a special token's string (`<mask>`) is encoded as that token, as HF does, so it
    round-trips only with the specials kept; either way our decode equals HF's."""
    n = bpe_dirs[2]
    ids = data.draw(st.lists(st.integers(0, n - 1), max_size=30))
    for d, hf in ((bpe_dirs[0], hf_pair), (bpe_dirs[1], hf_full)):
        ours = _cached(d)
        enc = hf(text)["input_ids"]
        for skip in (True, False):
            assert decode(ours, enc, skip_special_tokens=skip) == hf.decode(enc, skip_special_tokens=skip)
            assert decode(ours, ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
        if not any(t in text for t in hf.all_special_tokens):
            assert decode(ours, enc) == text  # byte-level BPE is lossless


@pytest.mark.parametrize("text", ["<mask>", "a</s> <pad>b", "<s><s>", "x<unk>"])
def test_decode_special_token_text(bpe_dirs, hf_pair, hf_full, text):
    """Text holding special tokens' strings (which hypothesis once drew: '<mask>') is encoded with
    those tokens, as HF does; our decode equals HF's with and without the specials, and with
    them kept the text comes back whole."""
    for d, hf in ((bpe_dirs[0], hf_pair), (bpe_dirs[1], hf_full)):
        ours = _cached(d)
        enc = hf(text, add_special_tokens=False)["input_ids"]
        for skip in (True, False):
            assert decode(ours, enc, skip_special_tokens=skip) == hf.decode(enc, skip_special_tokens=skip)
        assert decode(ours, enc, skip_special_tokens=False) == text


def test_processor_batch_decode(bpe_dirs, hf_full):
    """The TrOCR processor's batch_decode (what model cards call) on generate-like rows with pads."""
    proc = transformers.TrOCRProcessor(image_processor=transformers.ViTImageProcessor(), tokenizer=hf_full)
    texts = ["Hello, world!", " it's 3.5 kg .", "naïve café", ""]
    rows = [[2, 0] + hf_full(t, add_special_tokens=False)["input_ids"] + [2] for t in texts]
    width = max(map(len, rows))
    rows = [r + [1] * (width - len(r)) for r in rows]
    assert batch_decode(_cached(bpe_dirs[1]), rows) == proc.batch_decode(rows, skip_special_tokens=True)
    assert batch_decode(_cached(bpe_dirs[1]), rows) == [t for t in texts]


@pytest.mark.parametrize("force", [False, True])
def test_bpe_ignores_cleanup_like_reference(bpe_dirs, tmp_path, force):
    """5.24 skips clean_up_tokenization for BPE models unless the 'corrupt output' flag forces it."""
    d = tmp_path / "t"
    d.mkdir()
    for f in ("vocab.json", "merges.txt"):
        (d / f).write_bytes((bpe_dirs[0] / f).read_bytes())
    cfg = {"clean_up_tokenization_spaces": True, "tokenizer_class": "RobertaTokenizer"}
    if force:
        cfg["clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"] = True
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    hf = transformers.RobertaTokenizer.from_pretrained(str(d))
    ours = load_tokenizer(d)
    for text in ["Hello , world .", "I 'm sure it 's fine !", "we 've , they 're ? no n't"]:
        ids = hf(text)["input_ids"]
        assert decode(ours, ids) == hf.decode(ids, skip_special_tokens=True)
    assert (decode(ours, hf("a .")["input_ids"]) == "a.") == force


def test_unigram_cleanup_like_reference(tmp_path):
    """A Unigram (XLM-R-like, as trocr-small) tokenizer.json with clean_up_tokenization_spaces on."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    d = tmp_path / "uni"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": True,
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    hf = transformers.AutoTokenizer.from_pretrained(str(d))
    ours = load_tokenizer(d)
    for text in ["Hello , world .", "It 's nice , isn 't it ?", "they 're here ! we 've got 12 ' s"]:
        ids = hf(text)["input_ids"]
        assert decode(ours, ids) == hf.decode(ids, skip_special_tokens=True)
    assert decode(ours, hf("a , b .")["input_ids"]) == "a, b."


def test_missing_and_bad_files(tmp_path, bpe_dirs):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    d = tmp_path / "pair"
    d.mkdir()
    (d / "vocab.json").write_text("[1, 2]")
    (d / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerError, match="vocab.json"):
        load_tokenizer(d)
    (d / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}))
    (d / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerError, match="merges.txt: line 2"):
        load_tokenizer(d)
