"""SentencePiece `.model` files (XLM-R's `sentencepiece.bpe.model`) read without `sentencepiece` or `protobuf`.

References:
  google/sentencepiece `src/sentencepiece_model.proto` (the ModelProto schema: field numbers, defaults);
  the protobuf wire-format spec (varints, fixed32/64, length-delimited records);
  transformers 5.24 `models/xlm_roberta/tokenization_xlm_roberta.py` + `tokenization_utils_tokenizers.py`
  (`_convert_from_sentencepiece`) and `convert_slow_tokenizer.py` (`XLMRobertaConverter.convert_from_spm`):
  how the `tokenizers` pipeline of an XLM-R folder is assembled from the proto.

A `.model` file is one serialised ModelProto: repeated `pieces` (piece, score, type), a `trainer_spec`
(model type, special ids and pieces) and a `normalizer_spec` (the precompiled NFKC charsmap and the
whitespace flags). `read_model` parses just those fields, checking every length against the buffer and
every index the charsmap's trie can reach, so a truncated, corrupt or foreign file raises
`SentencePieceError` naming the file instead of an IndexError here or a Rust panic at encode time.

`xlmr_tokenizer` then builds what transformers 5.24 builds for `XLMRobertaTokenizer.from_pretrained` on a
folder with only this file: the fairseq id layout (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, spm piece i>=3
at id i+1, `<mask>` last), a Unigram model over the piece scores (transformers 5.24 uses Unigram for BPE-type
files too), the Precompiled normaliser, WhitespaceSplit + Metaspace pre-tokeniser, Metaspace decoder and
the `<s> $A </s>` template. Decoding (ids -> text, all OCR needs) is the same for either model type; encoding
a BPE-type model this way differs from `sentencepiece` itself (and from transformers 4.x) on most words.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

# SentencePiece piece types (ModelProto.SentencePiece.Type) and trainer model types (TrainerSpec.ModelType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4

# wire types
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class SentencePieceError(ValueError):
    """A SentencePiece model file is truncated, malformed or not a SentencePiece model (the message names it)."""


@dataclass(frozen=True)
class Piece:
    piece: str
    score: float
    type: int = NORMAL


@dataclass(frozen=True)
class TrainerSpec:
    model_type: int = UNIGRAM
    vocab_size: int = 8000
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"


@dataclass(frozen=True)
class NormalizerSpec:
    name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


@dataclass(frozen=True)
class SpmModel:
    pieces: tuple[Piece, ...]
    trainer_spec: TrainerSpec
    normalizer_spec: NormalizerSpec


# ---------------------------------------------------------------------------------------------- wire format

def _bad(where: str, why: str) -> SentencePieceError:
    return SentencePieceError(f"{where}: not a valid SentencePiece model ({why}; truncated or foreign file?)")


def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    """Decode a base-128 varint at buf[pos:end] -> (value as uint64, next position)."""
    value = shift = 0
    while True:
        if pos >= end:
            raise _bad(where, "truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:  # a varint is at most 10 bytes
            raise _bad(where, "varint longer than 10 bytes")


def _records(buf: bytes, start: int, end: int, where: str) -> list[tuple[int, int, object]]:
    """Split one message's bytes into (field number, wire type, value) records.

    value: int for varints, bytes for length-delimited and fixed-width fields. Groups (wire types 3/4,
    never used by SentencePiece) and the undefined wire types 6/7 are errors.
    """
    out, pos = [], start
    while pos < end:
        key, pos = _varint(buf, pos, end, where)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _bad(where, f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end, where)
        elif wire in (_FIXED64, _FIXED32, _LEN):
            if wire == _LEN:
                n, pos = _varint(buf, pos, end, where)
            else:
                n = 8 if wire == _FIXED64 else 4
            if n > end - pos:
                raise _bad(where, f"field {field} needs {n} bytes at byte {pos}, only {end - pos} left")
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise _bad(where, f"unsupported wire type {wire} (field {field}) at byte {pos}")
        out.append((field, wire, value))
    return out


def _fields(records, schema: dict[int, tuple[str, str]], where: str) -> dict[str, object]:
    """Typed values of the known fields (the last occurrence wins, as in protobuf); unknown fields are skipped.

    schema: field number -> (name, kind), kind one of "str", "bytes", "bool", "int32", "enum", "float", "msg".
    """
    wire_of = {"str": _LEN, "bytes": _LEN, "msg": _LEN, "bool": _VARINT, "int32": _VARINT, "enum": _VARINT,
               "float": _FIXED32}
    out = {}
    for field, wire, value in records:
        if field not in schema:
            continue
        name, kind = schema[field]
        if wire != wire_of[kind]:
            raise _bad(where, f"field {name} has wire type {wire}, expected {wire_of[kind]}")
        if kind == "str":
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(where, f"field {name} is not valid UTF-8") from None
        elif kind == "bool":
            value = value != 0
        elif kind in ("int32", "enum"):
            value = value - (1 << 64) if value >= 1 << 63 else value  # negative int32s are sign-extended to 64 bits
            if not -(1 << 31) <= value < 1 << 31:
                raise _bad(where, f"field {name} = {value} is out of int32 range")
        elif kind == "float":
            value = struct.unpack("<f", value)[0]
        out[name] = value
    return out


_PIECE = {1: ("piece", "str"), 2: ("score", "float"), 3: ("type", "enum")}
_TRAINER = {3: ("model_type", "enum"), 4: ("vocab_size", "int32"), 35: ("byte_fallback", "bool"),
            40: ("unk_id", "int32"), 41: ("bos_id", "int32"), 42: ("eos_id", "int32"), 43: ("pad_id", "int32"),
            45: ("unk_piece", "str"), 46: ("bos_piece", "str"), 47: ("eos_piece", "str"), 48: ("pad_piece", "str")}
_NORMALIZER = {1: ("name", "str"), 2: ("precompiled_charsmap", "bytes"), 3: ("add_dummy_prefix", "bool"),
               4: ("remove_extra_whitespaces", "bool"), 5: ("escape_whitespaces", "bool")}


def parse_model(buf: bytes, where: str = "<bytes>") -> SpmModel:
    """Serialised ModelProto -> SpmModel, validated (where: the file name used in error messages)."""
    buf = bytes(buf)
    if not buf:
        raise _bad(where, "empty file")
    pieces, trainer, normalizer, present = [], {}, {}, set()
    for field, wire, value in _records(buf, 0, len(buf), where):
        present.add(field)
        # ModelProto has fields 1..5 and extensions from 200; anything else means this is some other file
        if not (1 <= field <= 5 or field >= 200):
            raise _bad(where, f"unknown top-level field {field}")
        if field in (1, 2, 3) and wire != _LEN:
            raise _bad(where, f"top-level field {field} has wire type {wire}, expected 2")
        if field == 1:
            n = len(pieces)
            p = _fields(_records(value, 0, len(value), f"{where} piece {n}"), _PIECE, f"{where} piece {n}")
            pieces.append(Piece(p.get("piece", ""), p.get("score", 0.0), p.get("type", NORMAL)))
        elif field == 2:  # a message field given twice is merged, its scalars last-one-wins (protobuf rules)
            trainer.update(_fields(_records(value, 0, len(value), f"{where} trainer_spec"), _TRAINER,
                                   f"{where} trainer_spec"))
        elif field == 3:
            normalizer.update(_fields(_records(value, 0, len(value), f"{where} normalizer_spec"), _NORMALIZER,
                                      f"{where} normalizer_spec"))
    if not pieces:
        raise _bad(where, "no pieces")
    # spm_train always writes both specs after the pieces, so a file cut short at a record boundary lacks them
    for field, name in ((2, "trainer_spec"), (3, "normalizer_spec")):
        if field not in present:
            raise _bad(where, f"no {name}")
    model = SpmModel(tuple(pieces), TrainerSpec(**trainer), NormalizerSpec(**normalizer))
    _validate(model, where)
    if model.normalizer_spec.precompiled_charsmap:
        _check_charsmap(model.normalizer_spec.precompiled_charsmap, where)
    return model


def _validate(m: SpmModel, where: str) -> None:
    """Invariants every model SentencePiece writes holds (non-empty unique pieces, known types, one <unk>)."""
    seen = set()
    for i, p in enumerate(m.pieces):
        if not p.piece:
            raise SentencePieceError(f"{where}: piece {i} is empty")
        if not NORMAL <= p.type <= BYTE:
            raise SentencePieceError(f"{where}: piece {i} ({p.piece!r}) has unknown type {p.type}")
        if p.piece in seen:
            raise SentencePieceError(f"{where}: piece {p.piece!r} appears twice")
        seen.add(p.piece)
    if m.trainer_spec.model_type not in (UNIGRAM, BPE, WORD, CHAR):
        raise SentencePieceError(f"{where}: unknown model type {m.trainer_spec.model_type}")
    unk = [i for i, p in enumerate(m.pieces) if p.type == UNKNOWN]
    if len(unk) != 1:
        raise SentencePieceError(f"{where}: {len(unk)} unknown pieces, a SentencePiece model has exactly one")


def _check_charsmap(cm: bytes, where: str) -> None:
    """Check every index the Precompiled normaliser can touch in this charsmap.

    Layout: uint32 trie size in bytes, a darts-clone double-array trie (uint32 units) over the UTF-8 bytes
    of the input, then NUL-terminated replacement strings the trie's leaves point into. `tokenizers`
    indexes the trie without bounds checks, so a corrupt map would panic at encode time: walk every node
    reachable from the root (breadth-first, all 255 non-NUL bytes at once) and check children, leaves
    and replacement offsets are in range.
    """
    n = int.from_bytes(cm[:4], "little") if len(cm) >= 4 else 0
    if n == 0 or n % 4 or 4 + n > len(cm):
        raise _bad(where, f"precompiled_charsmap trie size {n} does not fit its {len(cm)} bytes")
    units = np.frombuffer(cm, "<u4", n // 4, 4).astype(np.int64)
    strings = cm[4 + n:]
    try:
        strings.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(where, "precompiled_charsmap replacements are not valid UTF-8") from None
    if not strings or strings[-1] != 0:
        raise _bad(where, "precompiled_charsmap replacements are not NUL-terminated")
    base = np.arange(len(units)) ^ ((units >> 10) << ((units & (1 << 9)) >> 6))  # children of i: base[i] ^ byte
    label, leaf = units & ((1 << 31) | 0xFF), (units >> 8) & 1
    byte = np.arange(1, 256)
    seen = np.zeros(len(units), bool)
    nodes = np.array([0])
    while nodes.size:
        if (base[nodes] | 0xFF).max() >= len(units):
            raise _bad(where, "precompiled_charsmap trie points outside itself")
        child = base[nodes][:, None] ^ byte
        child = np.unique(child[label[child] == byte])
        child = child[~seen[child]]
        seen[child] = True
        leaves = child[leaf[child] == 1]
        if leaves.size and base[leaves].max() >= len(units):
            raise _bad(where, "precompiled_charsmap trie points outside itself")
        values = units[base[leaves]] & 0x7FFFFFFF
        if values.size and (values.max() >= len(strings) or
                            (np.frombuffer(strings, np.uint8)[values] & 0xC0 == 0x80).any()):
            raise _bad(where, "precompiled_charsmap points outside its replacement strings")
        nodes = child


def read_model(path) -> SpmModel:
    """Read and validate a SentencePiece `.model` file."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except IsADirectoryError:
        raise SentencePieceError(f"{path}: is a folder, not a SentencePiece model file") from None
    return parse_model(buf, str(path))


# ---------------------------------------------------------------------------------------------- XLM-R pipeline

def xlmr_tokenizer(model: SpmModel, specials: dict[str, AddedToken] | None = None,
                   added: list[AddedToken] = (), add_prefix_space: bool = True, where: str = "<model>") -> Tokenizer:
    """The `tokenizers` pipeline transformers 5.24 builds for an XLM-R folder holding this model.

    specials: the named special tokens ("bos_token", "pad_token", "eos_token", "unk_token", "mask_token", and
      "sep_token"/"cls_token") from the folder's configs; missing ones default to XLM-R's.
    added: `added_tokens_decoder` entries of tokenizer_config.json, in id order.
    add_prefix_space: tokenizer_config's flag; False drops the "▁" Metaspace puts before the first word.
    """
    if len(model.pieces) < 3:
        raise SentencePieceError(f"{where}: {len(model.pieces)} pieces; an XLM-R model starts with <unk>, <s>, </s>")
    names = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
             "sep_token": "</s>", "cls_token": "<s>", "mask_token": "<mask>"}
    names = {k: AddedToken(v, special=True, normalized=False) for k, v in names.items()} | dict(specials or {})
    bos, pad, eos, unk, mask = (names[k].content for k in ("bos_token", "pad_token", "eos_token", "unk_token",
                                                             "mask_token"))
    # fairseq's dictionary: its own four specials, then spm pieces 3.. (spm ids 0-2 are <unk> <s> </s>), <mask> last
    vocab = [(bos, 0.0), (pad, 0.0), (eos, 0.0), (unk, 0.0)]
    vocab += [(p.piece, p.score) for p in model.pieces[3:]] + [(mask, 0.0)]
    tok = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))

    charsmap = model.normalizer_spec.precompiled_charsmap
    if charsmap:
        try:
            tok.normalizer = normalizers.Precompiled(charsmap)
        except Exception as e:  # the Rust side raises a bare Exception on a malformed charsmap
            raise SentencePieceError(f"{where}: precompiled_charsmap cannot be read ({e})") from None
    scheme = "always" if add_prefix_space else "never"
    # WhitespaceSplit first: every whitespace run (tabs, newlines too) separates words and is dropped
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)

    tok.add_special_tokens(list(names.values()))
    for t in added:  # after the names: tokenizer_config's added_tokens_decoder flags win, as in transformers
        (tok.add_special_tokens if t.special else tok.add_tokens)([t])
    # spm control pieces are special, user-defined ones are not; both are matched whole on the raw text
    for p in model.pieces:
        if p.type in (CONTROL, USER_DEFINED):
            t = AddedToken(p.piece, normalized=False, special=p.type == CONTROL)
            (tok.add_special_tokens if t.special else tok.add_tokens)([t])

    tok.post_processor = processors.TemplateProcessing(
        single=[bos, "$A", eos], pair=[bos, "$A", eos, eos, "$B", eos],
        special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))])
    return tok
