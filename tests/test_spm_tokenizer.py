"""SentencePiece (XLM-R, as microsoft/trocr-small-* ship it) tokenizers: trocr_np.spm against transformers, live.

Models are trained here with the `sentencepiece` package on generated English-ish text (digits,
punctuation, a few accented and CJK words): a unigram and a BPE model, and a unigram model with
user-defined and control symbols. Each is saved as `sentencepiece.bpe.model` in a folder shaped like
trocr-small (tokenizer_config.json + special_tokens_map.json, `<mask>` with lstrip), a bare folder, and a
folder as transformers 4.x saved it (added_tokens_decoder, clean_up_tokenization_spaces on), and one with
add_prefix_space off.

References: transformers 5.24 `AutoTokenizer` (what TrOCRProcessor loads) and
`XLMRobertaTokenizer.from_pretrained`. In 5.24 there is no sentencepiece-backed XLM-R tokenizer any more:
`XLMRobertaTokenizerFast` is the same class, and it reads the .model through `protobuf` (test extra).
"""
import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trocr_np import spm
from trocr_np.tokenizer import batch_decode, load_tokenizer

transformers = pytest.importorskip("transformers")
sentencepiece = pytest.importorskip("sentencepiece")

BATCH = 20  # strings (or id rows) per hypothesis example: 500 examples -> 10,000 compared per test
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])

_SYLLABLES = ["th", "e", "qu", "ick", "br", "own", "f", "ox", "ju", "mps", "ov", "er", "la", "zy", "do", "g",
              "he", "llo", "wor", "ld", "an", "in", "ing", "tion", "s", "ed", "re", "con", "a", "i", "o", "u"]
_RARE = ["café", "naïve", "Zürich", "façade", "señor", "数字", "日本語", "Ålesund", "1,000", "3.14", "$5", "e-mail"]


def _corpus(seed=0, n=4000):
    rng = random.Random(seed)

    def word():
        r = rng.random()
        if r < 0.03:
            return rng.choice(_RARE)
        if r < 0.10:
            return str(rng.randint(0, 99999))
        w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
        if r < 0.2:
            w = w.capitalize()
        if r > 0.9:
            w += rng.choice(".,;:!?")
        elif r > 0.88:
            w = "(" + w + ")"
        return w
    return [" ".join(word() for _ in range(rng.randint(3, 15))) for _ in range(n)]


def _train(path, model_type, vocab_size, **kw):
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_prefix=str(path), model_type=model_type, vocab_size=vocab_size,
        hard_vocab_limit=False, minloglevel=2, **kw)
    return path.with_suffix(".model")


def _tok(content, **kw):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True, **kw}


# trocr-small's tokenizer_config.json / special_tokens_map.json (an AddedToken <mask> with lstrip)
_MASK = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False}
_SMALL_CFG = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
              "pad_token": "<pad>", "mask_token": {**_MASK, "normalized": True, "__type": "AddedToken"},
              "sp_model_kwargs": {}, "tokenizer_class": "XLMRobertaTokenizer"}
_SMALL_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
              "cls_token": "<s>", "mask_token": {**_MASK, "normalized": False}}


def _saved_cfg(n):
    """tokenizer_config.json as transformers 4.x save_pretrained wrote it for XLM-R (n = number of ids)."""
    return {"added_tokens_decoder": {"0": _tok("<s>"), "1": _tok("<pad>"), "2": _tok("</s>"), "3": _tok("<unk>"),
                                     str(n - 1): _tok("<mask>", lstrip=True)},
            "bos_token": "<s>", "clean_up_tokenization_spaces": True, "cls_token": "<s>", "eos_token": "</s>",
            "mask_token": "<mask>", "model_max_length": 512, "pad_token": "<pad>", "sep_token": "</s>",
            "tokenizer_class": "XLMRobertaTokenizer", "unk_token": "<unk>"}


def _folder(root, name, model, cfg=None, smap=None):
    d = root / name
    d.mkdir()
    (d / "sentencepiece.bpe.model").write_bytes(model.read_bytes())
    if cfg is not None:
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    if smap is not None:
        (d / "special_tokens_map.json").write_text(json.dumps(smap))
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm_train")
    return {"unigram": _train(root / "unigram", "unigram", 800), "bpe": _train(root / "bpe", "bpe", 800),
            "symbols": _train(root / "symbols", "unigram", 600, user_defined_symbols=["<sep>", "@@"],
                              control_symbols=["<ctrl>"])}


@pytest.fixture(scope="module")
def cases(models, tmp_path_factory):
    """name -> (folder, our tokenizer, [reference tokenizers])."""
    root = tmp_path_factory.mktemp("spm_folders")
    n_sym = len(spm.read_model(models["symbols"]).pieces) + 2
    dirs = {"unigram_small": _folder(root, "unigram_small", models["unigram"], _SMALL_CFG, _SMALL_MAP),
            "bpe_small": _folder(root, "bpe_small", models["bpe"], _SMALL_CFG, _SMALL_MAP),
            "unigram_bare": _folder(root, "unigram_bare", models["unigram"]),
            "bpe_no_prefix": _folder(root, "bpe_no_prefix", models["bpe"],
                                     {"tokenizer_class": "XLMRobertaTokenizer", "add_prefix_space": False}),
            "symbols_saved": _folder(root, "symbols_saved", models["symbols"], _saved_cfg(n_sym))}
    out = {}
    for name, d in dirs.items():
        refs = [transformers.XLMRobertaTokenizer.from_pretrained(str(d))]
        if (d / "tokenizer_config.json").is_file():  # AutoTokenizer needs the config to pick the class
            refs.append(transformers.AutoTokenizer.from_pretrained(str(d)))
            assert type(refs[1]) is type(refs[0])  # 5.24: one class, XLMRobertaTokenizerFast is an alias
        ours = load_tokenizer(d)
        for ref in refs:  # the reference really read the pieces (without protobuf it silently has 5 tokens)
            assert len(ref) == ours.get_vocab_size() == len(spm.read_model(d / "sentencepiece.bpe.model").pieces) + 2
        out[name] = (d, ours, refs)
    return out


# ------------------------------------------------------------------------------------------------ reader

def _edited(proto):
    """Every field we read set away from its default (negative int32s, false flags, no charsmap)."""
    t, n = proto.trainer_spec, proto.normalizer_spec
    t.model_type, t.vocab_size, t.byte_fallback, t.pad_id, t.bos_id, t.eos_id = 2, 123, True, -1, -7, 2 ** 31 - 1
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = "[UNK]", "ß", "日本", "<p>"
    n.name, n.precompiled_charsmap = "identity", b""
    n.add_dummy_prefix, n.remove_extra_whitespaces, n.escape_whitespaces = False, False, False
    proto.pieces[5].score = -1e30
    return proto


@pytest.mark.parametrize("name", ["unigram", "bpe", "symbols", "edited"])
def test_reader_matches_protobuf(models, name, tmp_path):
    """Every field we read equals what protobuf's generated ModelProto parser reads."""
    from transformers.convert_slow_tokenizer import import_protobuf
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(models["unigram" if name == "edited" else name].read_bytes())
    f = models.get(name)
    if name == "edited":
        f = tmp_path / "edited.model"
        f.write_bytes(_edited(proto).SerializeToString())
    m = spm.read_model(f)
    assert [(p.piece, p.score, p.type) for p in m.pieces] == [(p.piece, p.score, p.type) for p in proto.pieces]
    for spec, ref in ((m.trainer_spec, proto.trainer_spec), (m.normalizer_spec, proto.normalizer_spec)):
        for field in spec.__dataclass_fields__:
            assert getattr(spec, field) == getattr(ref, field), field
    assert m.trainer_spec.model_type == {"unigram": spm.UNIGRAM, "bpe": spm.BPE, "symbols": spm.UNIGRAM,
                                         "edited": spm.BPE}[name]


def test_pipeline_equals_transformers_backend(cases):
    """Our tokenizers pipeline serialises like the reference's backend (added tokens compared by id)."""
    for name, (d, ours, refs) in cases.items():
        a = json.loads(ours.to_str())
        for ref in refs:
            b = json.loads(ref.backend_tokenizer.to_str())
            for j in (a, b):
                j["added_tokens"].sort(key=lambda t: t["id"])
            keys = set(a) | set(b)
            if name == "symbols_saved":  # our decoder also does clean_up_tokenization (transformers: in Python)
                keys.discard("decoder")
            for k in keys:
                assert a.get(k) == b.get(k), (name, k)


# ------------------------------------------------------------------------------------------------ encode / decode

_ALPHABET = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()[]{}-_/\\@#$%&*+=<>")
             + list("éèêëüöäßñçÅøœÉ\u0301\u0308")  # accents, incl. combining marks (NFKC composes them)
             + list("数字日本語中文한국어") + ["😀", "👍🏽", "👨\u200d👩\u200d👧", "\u200b", "\ufeff"]
             + list("１２３ＡＢＣﬁ½Ⅻ") + [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\x00", "\x7f", "\x0b"])
_FRAGMENTS = ["the", "quick", "brown", "fox", "hello", "world", "tion", "ing", " ", "  ", "\t", "\n", " \t ",
              "12", "3.14", "1,000", "$5", "(", ")", ".", ",", "café", "naïve", "数字", "é", "e\u0301",
              "<s>", "</s>", "<pad>", "<unk>", "<mask>", " <mask>", "<sep>", "@@", "<ctrl>", "▁", "▁▁", "qqxz", "Ωψ"]
TEXT = st.one_of(st.lists(st.sampled_from(_ALPHABET), max_size=40).map("".join),
                 st.lists(st.sampled_from(_FRAGMENTS), max_size=10).map("".join),
                 st.text(max_size=20))  # any unicode


@SETTINGS
@given(batch=st.lists(TEXT, min_size=BATCH, max_size=BATCH))
def test_encode_matches_transformers(cases, batch):
    """ids with and without <s> ... </s>, and the decoded round trip, equal the reference's."""
    for name, (d, ours, refs) in cases.items():
        ref = refs[-1]  # AutoTokenizer where the folder names a class (the others: test_pipeline_equals_...)
        got = [e.ids for e in ours.encode_batch(batch)]
        assert got == ref(batch)["input_ids"], name
        assert [e.ids for e in ours.encode_batch(batch, add_special_tokens=False)] == ref(
            batch, add_special_tokens=False)["input_ids"], name
        assert batch_decode(ours, got) == ref.batch_decode(got, skip_special_tokens=True), name


_ID = st.one_of(st.integers(0, 5), st.integers(0, 1 << 20))  # 0-4: the specials, 5: <mask> (last id)


@SETTINGS
@given(rows=st.lists(st.lists(_ID, max_size=30), min_size=BATCH, max_size=BATCH))
def test_decode_matches_transformers(cases, rows):
    """Arbitrary id rows (as an untrained model emits them, specials sprinkled in): batch_decode equals."""
    for name, (d, ours, refs) in cases.items():
        n = ours.get_vocab_size()
        ids = [[i if i < 5 else n - 1 if i == 5 else i % n for i in r] for r in rows]
        assert batch_decode(ours, ids) == refs[-1].batch_decode(ids, skip_special_tokens=True), name
        assert batch_decode(ours, ids, skip_special_tokens=False) == refs[-1].batch_decode(ids), name


def test_fairseq_layout(cases, models):
    """<s>=0 <pad>=1 </s>=2 <unk>=3, spm piece i at i+1, <mask> last; a word the model lacks maps to <unk>."""
    d, ours, refs = cases["unigram_small"]
    m = spm.read_model(models["unigram"])
    assert [ours.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert ours.token_to_id("<mask>") == len(m.pieces) + 1
    assert all(ours.token_to_id(p.piece) == i + 1 for i, p in enumerate(m.pieces[3:], 3))
    ids = ours.encode("Ωψ").ids
    assert ids[0] == 0 and ids[-1] == 2 and 3 in ids and ids == refs[0]("Ωψ")["input_ids"]


# ------------------------------------------------------------------------------------------------ bad files

def _png_bytes(tmp_path):
    from PIL import Image
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "x.png")
    return (tmp_path / "x.png").read_bytes()


def _bad_files(models, tmp_path):
    good = models["unigram"].read_bytes()
    rng = np.random.default_rng(0)
    bad = {"empty": b"", "png": _png_bytes(tmp_path), "json": json.dumps(_SMALL_CFG).encode(),
           "text": b"hello world\n", "zeros": bytes(64),
           "wrong_wire_type": b"\x08\x01",  # pieces (field 1) as a varint
           "piece_type_9": b"\x0a\x05\x0a\x01a\x18\x09",  # a piece with an undefined type
           "no_specs": b"\x0a\x05\x0a\x01a\x18\x02"}  # one <unk> piece, no trainer/normalizer spec
    for k in range(50):
        bad[f"random_{k}"] = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
    for k, cut in enumerate(sorted(rng.choice(len(good) - 1, 60, replace=False)) + [1, len(good) - 1]):
        bad[f"truncated_{k}"] = good[:cut]
    return bad


def test_bad_model_files_raise_clear_errors(models, tmp_path):
    for name, data in _bad_files(models, tmp_path).items():
        f = tmp_path / f"{name}.model"
        f.write_bytes(data)
        with pytest.raises(spm.SentencePieceError, match=f"{name}.model: "):
            spm.read_model(f)
    with pytest.raises(spm.SentencePieceError, match="is a folder"):
        spm.read_model(tmp_path)


def test_corrupted_bytes_never_crash(models):
    """Changed bytes in a real model: parsed or a SentencePieceError, never an IndexError / struct.error.
    (Without its charsmap, which takes any byte and is checked by the test below.)"""
    from transformers.convert_slow_tokenizer import import_protobuf
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(models["bpe"].read_bytes())
    proto.normalizer_spec.precompiled_charsmap = b""
    good = proto.SerializeToString()
    rng = np.random.default_rng(1)
    for _ in range(300):
        buf = bytearray(good)
        for pos in rng.integers(0, len(good), int(rng.integers(1, 4))):
            buf[pos] = int(rng.integers(0, 256))
        try:
            spm.parse_model(bytes(buf), "corrupted.model")
        except spm.SentencePieceError as e:
            assert str(e).startswith("corrupted.model")


def test_corrupted_charsmap_is_refused_or_safe(models):
    """Bytes changed in the charsmap's trie: refused when read, or the tokenizer built on it encodes without the
    Rust normaliser panicking (it indexes the trie unchecked)."""
    from transformers.convert_slow_tokenizer import import_protobuf
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(models["unigram"].read_bytes())
    cm = proto.normalizer_spec.precompiled_charsmap
    n = int.from_bytes(cm[:4], "little")
    rng = np.random.default_rng(2)
    texts = ["hello é 数字 ｆｕｌｌ ﬁ ½ Ⅻ \u3000 x", "".join(chr(int(c)) for c in rng.integers(32, 0x3000, 300))]
    refused = 0
    for _ in range(40):
        b = bytearray(cm)
        for pos in rng.integers(0, 4 + n, int(rng.integers(1, 4))):
            b[pos] = int(rng.integers(0, 256))
        proto.normalizer_spec.precompiled_charsmap = bytes(b)
        try:
            m = spm.parse_model(proto.SerializeToString(), "corrupted.model")
        except spm.SentencePieceError as e:
            assert str(e).startswith("corrupted.model: not a valid SentencePiece model"), e
            refused += 1
            continue
        spm.xlmr_tokenizer(m).encode_batch(texts)
    assert 0 < refused < 40  # both outcomes were exercised


def test_load_tokenizer_names_bad_model(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "sentencepiece.bpe.model").write_bytes(_png_bytes(tmp_path))
    with pytest.raises(ValueError, match="sentencepiece.bpe.model: not a valid SentencePiece model"):
        load_tokenizer(d)



def test_trocr_small_folder_converts_and_decodes_like_processor(cases, tmp_path):
    """A trocr-small-like folder (sentencepiece only): TrOCRProcessor picks XLMRobertaTokenizer, `convert`
    copies the .model and the converted folder's tokenizer batch-decodes generate-like rows like the processor."""
    from conftest import make_hf_trocr

    from trocr_np.convert import convert_trocr
    from trocr_np.model import load_model
    d, ours, _ = cases["unigram_small"]
    _, src = make_hf_trocr(tmp_path, "tiny", tokenizer=None, vocab_size=ours.get_vocab_size())
    for f in d.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    proc = transformers.TrOCRProcessor.from_pretrained(str(src))
    assert type(proc.tokenizer).__name__ == "XLMRobertaTokenizer"
    tok = load_model(convert_trocr(src, tmp_path / "out")).tokenizer
    texts = ["Hello, world!", " it's 3.5 kg .", "naïve café", "", "Ωψ 数字"]
    rows = [[2, 0] + proc.tokenizer(t, add_special_tokens=False)["input_ids"] + [2] for t in texts]
    rows = [r + [1] * (max(map(len, rows)) - len(r)) for r in rows]
    assert batch_decode(tok, rows) == proc.batch_decode(rows, skip_special_tokens=True)
    assert [e.ids for e in tok.encode_batch(texts)] == proc.tokenizer(texts)["input_ids"]


_NO_SPM = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sentencepiece", "google", "torch", "transformers"):
            raise ImportError(f"imported {name}")
sys.meta_path.insert(0, Block())
from trocr_np.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
print(json.dumps(tok.encode(sys.argv[2]).ids))
"""


def test_reads_without_sentencepiece_or_protobuf(cases):
    """A fresh interpreter where importing sentencepiece / protobuf / torch / transformers raises."""
    import subprocess
    import sys
    d, _, refs = cases["bpe_small"]
    text = "Hello, wörld 12\t数字!"
    r = subprocess.run([sys.executable, "-c", _NO_SPM, str(d), text], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == refs[0](text)["input_ids"]
