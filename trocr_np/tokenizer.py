"""TrOCR tokenizer: the `tokenizers` library configured like the reference processor's tokenizer.

References:
  transformers 5.24 `models/roberta/tokenization_roberta.py` (how a byte-level BPE is assembled from
  vocab.json + merges.txt) and `tokenization_utils_tokenizers.py::_decode` (what `batch_decode` does
  after the Rust decoder: the optional `clean_up_tokenization` pass, which 5.24 skips for BPE models).

A model folder holds either `tokenizer.json` (loaded as is) or the older pair `vocab.json` + `merges.txt`
(base/large checkpoints on the Hub). The pair is turned into the same pipeline RobertaTokenizer builds:
ByteLevel pre-tokenizer without prefix space, BPE without an unk token, ByteLevel decoder, RoBERTa
post-processor, and the five RoBERTa specials registered as special added tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from . import spm

# RoBERTa's special tokens in the order RobertaTokenizer registers them (its `_special_tokens_map`).
_ROBERTA_SPECIALS = {
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
}

# transformers' `clean_up_tokenization`: applied in this order to the decoded string.
_CLEANUP_REPLACEMENTS = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


class TokenizerError(ValueError):
    """A tokenizer file is missing or malformed (the message names the file)."""


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}: not valid JSON ({e})") from None


def _added_token(spec) -> AddedToken:
    """A special token from tokenizer_config.json / special_tokens_map.json (a string or an AddedToken dict)."""
    if isinstance(spec, str):
        return AddedToken(spec, special=True, normalized=False)
    return AddedToken(spec["content"], single_word=spec.get("single_word", False), lstrip=spec.get("lstrip", False),
                      rstrip=spec.get("rstrip", False), normalized=spec.get("normalized", False),
                      special=spec.get("special", True))


def _special_specs(d: Path, tok_cfg: dict) -> tuple[list[AddedToken], dict]:
    """Specials: tokenizer_config's added_tokens_decoder (ids fixed by the file, in id order), and the named
    specials from special_tokens_map.json / tokenizer_config.json (raw specs), defaulting to RoBERTa's
    (which are XLM-R's too)."""
    added = tok_cfg.get("added_tokens_decoder") or {}
    added = [_added_token(spec) for _, spec in sorted(added.items(), key=lambda kv: int(kv[0]))]
    names = dict(_ROBERTA_SPECIALS)
    smap = _read_json(d / "special_tokens_map.json") if (d / "special_tokens_map.json").is_file() else {}
    for key in names:
        spec = smap.get(key, tok_cfg.get(key))
        if spec is not None:
            names[key] = spec
    if not added and (d / "added_tokens.json").is_file():
        extra = [t for src in (tok_cfg, smap) for key in ("additional_special_tokens", "extra_special_tokens")
                 for t in (src.get(key) if isinstance(src.get(key), list) else [])]
        added = _legacy_added_tokens(d / "added_tokens.json", list(names.values()) + extra)
    return added, names


def _legacy_added_tokens(path: Path, special_specs: list) -> list[AddedToken]:
    """added_tokens.json ({token: id}, transformers 4.x), read as transformers 5.24 reads it when
    tokenizer_config.json has no added_tokens_decoder: in id order, special iff a named or additional
    special token (then not normalized), else a normalized plain token."""
    table = _read_json(path)
    if not isinstance(table, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
        raise TokenizerError(f"{path}: expected a JSON object mapping tokens to integer ids")
    specials = {v if isinstance(v, str) else v.get("content") for v in special_specs}
    return [AddedToken(t, lstrip=False, rstrip=False, normalized=t not in specials, special=t in specials)
            for t, _ in sorted(table.items(), key=lambda kv: kv[1])]


def _bpe_from_vocab_merges(d: Path, tok_cfg: dict) -> Tokenizer:
    """vocab.json + merges.txt -> the byte-level BPE pipeline RobertaTokenizer builds (add_prefix_space False)."""
    vocab_path, merges_path = d / "vocab.json", d / "merges.txt"
    vocab = _read_json(vocab_path)
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{vocab_path}: expected a JSON object mapping tokens to ids")
    with open(merges_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # merges.txt starts with a "#version" header; blank lines carry nothing
    merges = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"{merges_path}: line {n} is not a pair of tokens: {line!r}")
        merges.append((parts[0], parts[1]))
    add_prefix_space = bool(tok_cfg.get("add_prefix_space", False))
    trim_offsets = bool(tok_cfg.get("trim_offsets", True))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                        end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()

    added, names = _special_specs(d, tok_cfg)
    for t in added:
        (tok.add_special_tokens if t.special else tok.add_tokens)([t])
    for key, spec in names.items():
        t = _added_token(spec)
        if key == "mask_token" and isinstance(spec, str):
            t = AddedToken(spec, lstrip=True, special=True, normalized=False)  # RoBERTa's <mask> eats the space before it
        tok.add_special_tokens([t])

    def content(spec):
        return spec if isinstance(spec, str) else spec["content"]
    sep, cls = content(names["sep_token"]), content(names["cls_token"])
    tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)),
                                                      trim_offsets=trim_offsets, add_prefix_space=add_prefix_space)
    return tok


def load_tokenizer(model_dir) -> Tokenizer:
    """Load the tokenizer of a TrOCR model folder: tokenizer.json, else vocab.json + merges.txt.

    `clean_up_tokenization_spaces` from tokenizer_config.json is folded into the returned tokenizer's
    decoder (a Fuse + Replace chain) when the reference would apply it, so `decode` needs no side state.
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: model folder not found")
    tok_cfg = _read_json(d / "tokenizer_config.json") if (d / "tokenizer_config.json").is_file() else {}
    if (d / "tokenizer.json").is_file():
        try:
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # the Rust loader raises a bare Exception
            raise TokenizerError(f"{d / 'tokenizer.json'}: cannot be read by `tokenizers` ({e})") from None
    elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        tok = _bpe_from_vocab_merges(d, tok_cfg)
    elif (d / "sentencepiece.bpe.model").is_file():  # XLM-R, as the trocr-small models ship it
        added, names = _special_specs(d, tok_cfg)
        tok = spm.xlmr_tokenizer(spm.read_model(d / "sentencepiece.bpe.model"),
                                 {k: _added_token(v) for k, v in names.items()}, added,
                                 bool(tok_cfg.get("add_prefix_space", True)), str(d / "sentencepiece.bpe.model"))
    else:
        raise FileNotFoundError(f"{d}: no tokenizer.json, nor vocab.json + merges.txt, nor sentencepiece.bpe.model")

    # transformers 5.24 honours clean_up_tokenization_spaces only for non-BPE models (for BPE it would
    # delete real spaces before punctuation) unless the "even though it will corrupt output" flag is set.
    model_is_bpe = json.loads(tok.to_str())["model"]["type"] == "BPE"
    cleanup = bool(tok_cfg.get("clean_up_tokenization_spaces", False)) and (
        not model_is_bpe or bool(tok_cfg.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")))
    if cleanup:
        chain = [tok.decoder] if tok.decoder is not None else []
        tok.decoder = decoders.Sequence(chain + [decoders.Fuse()]
                                        + [decoders.Replace(a, b) for a, b in _CLEANUP_REPLACEMENTS])
    return tok


def decode(tok: Tokenizer, ids, skip_special_tokens: bool = True) -> str:
    """Token ids -> text, equal to the reference processor's `batch_decode(..., skip_special_tokens=True)` row."""
    return tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)


def batch_decode(tok: Tokenizer, rows, skip_special_tokens: bool = True) -> list[str]:
    """Several rows of token ids -> texts."""
    return [decode(tok, r, skip_special_tokens) for r in rows]
