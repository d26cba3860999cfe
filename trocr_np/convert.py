"""Hugging Face TrOCR checkpoint folder -> trocr-np folder, without torch.

The output keeps the HF on-disk tensor names unchanged, so this is a copy plus a
short table of exceptions, checked against the shapes the config implies
(`trocr_np.config.expected_param_shapes`):

  dropped   `encoder.pooler.*`                    ViTModel's pooler; TrOCR never uses it
            `decoder.output_projection.weight`    when tied: the loader falls back to embed_tokens
            `...embed_positions._float_tensor`    fairseq-style 1-element dtype probe buffer
  renamed   transformers 5.x *in-memory* ViT/DeiT names -> the on-disk names that the Hub and
            `save_pretrained` (5.24 too) use, e.g. `encoder.layers.N.attention.q_proj` ->
            `encoder.encoder.layer.N.attention.attention.query`. Only a file written with
            `torch.save(model.state_dict())` under transformers 5.x has in-memory names.

Everything else must match the config exactly: a missing tensor, an unexpected
one or a wrong shape raises CheckpointError naming the file, the tensor and both
shapes, rather than producing a model that runs and reads garbage.

Output folder: `model.safetensors` (float32; or float16, bfloat16, or int8 for the
decoder's matrices, as the table in trocr_np.quant says; metadata records the source
file, dtype, quantize_encoder and trocr-np version) and copies of
`config.json`, the image-processor file(s) (`preprocessor_config.json` and/or
`processor_config.json`, so `load_config` applies transformers' precedence to the copy as to the
source), `generation_config.json` (if present) and the tokenizer files (`tokenizer.json`, or
`vocab.json` + `merges.txt`, or `sentencepiece.bpe.model`, plus `tokenizer_config.json` /
`special_tokens_map.json` / `added_tokens.json` when present).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from ocr_base.checkpoint import CheckpointError, check_tensors, load_safetensors, load_torch, save_safetensors

from .config import expected_param_shapes, load_config, read_preprocessor
from .quant import DTYPES, file_tensors
from .spm import read_model as read_spm_model

CONFIG_FILES = ("config.json",)
OPTIONAL_FILES = ("preprocessor_config.json", "processor_config.json", "generation_config.json",
                  "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
# weights of the other frameworks transformers can save; we read neither (no TensorFlow / Flax reader)
FOREIGN_WEIGHT_FILES = ("tf_model.h5", "tf_model.h5.index.json", "flax_model.msgpack", "flax_model.msgpack.index.json")

# transformers 5.x in-memory encoder names -> on-disk names (its conversion_mapping.py, reversed).
_IN_MEMORY_RENAMES = [
    (re.compile(r"^encoder\.layers\.(\d+)\.attention\.q_proj\."), r"encoder.encoder.layer.\1.attention.attention.query."),
    (re.compile(r"^encoder\.layers\.(\d+)\.attention\.k_proj\."), r"encoder.encoder.layer.\1.attention.attention.key."),
    (re.compile(r"^encoder\.layers\.(\d+)\.attention\.v_proj\."), r"encoder.encoder.layer.\1.attention.attention.value."),
    (re.compile(r"^encoder\.layers\.(\d+)\.attention\.o_proj\."), r"encoder.encoder.layer.\1.attention.output.dense."),
    (re.compile(r"^encoder\.layers\.(\d+)\.mlp\.fc1\."), r"encoder.encoder.layer.\1.intermediate.dense."),
    (re.compile(r"^encoder\.layers\.(\d+)\.mlp\.fc2\."), r"encoder.encoder.layer.\1.output.dense."),
    (re.compile(r"^encoder\.layers\.(\d+)\.(layernorm_before|layernorm_after)\."), r"encoder.encoder.layer.\1.\2."),
]


def find_weights(src: Path) -> Path:
    """The weights file (or shard index) of an HF folder; safetensors preferred."""
    for name in WEIGHT_FILES:
        if (src / name).is_file():
            return src / name
    foreign = [name for name in FOREIGN_WEIGHT_FILES if (src / name).is_file()]
    if foreign:
        raise CheckpointError(f"{src}: only {' and '.join(foreign)} found, TensorFlow / Flax weights we cannot read; "
                              "save PyTorch weights with transformers (VisionEncoderDecoderModel.from_pretrained("
                              f"..., from_tf=True or from_flax=True).save_pretrained(...)) and convert that folder")
    raise FileNotFoundError(f"{src}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def load_hf_weights(path: Path) -> dict[str, np.ndarray]:
    """Read HF weights from safetensors or a torch pickle, as a flat {name: array}."""
    if ".safetensors" in path.name:
        return load_safetensors(path)
    sd = load_torch(path)
    for name, value in sd.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor "
                                  "(expected a flat state dict as save_pretrained writes)")
    return sd


def hf_to_ondisk_names(tensors: dict[str, np.ndarray], tied: bool, learned_positions: bool,
                       where: Path) -> dict[str, np.ndarray]:
    """Apply the rename/drop table (module docstring) to HF tensors."""
    out: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        if name.startswith("encoder.pooler."):
            continue
        if tied and name == "decoder.output_projection.weight":
            continue
        if not learned_positions and name.endswith("embed_positions._float_tensor"):
            continue
        new = name
        for pattern, repl in _IN_MEMORY_RENAMES:
            new = pattern.sub(repl, new)
        if new in out:
            raise CheckpointError(f"{where}: tensor {name!r} and another tensor both map to {new!r}")
        out[new] = arr
    return out


def _check_tied(tensors: dict, where: Path) -> None:
    """A tied config drops `output_projection`: refuse when the checkpoint's differs from embed_tokens
    (a trained, untied projection would be silently thrown away)."""
    out, emb = tensors.get("decoder.output_projection.weight"), tensors.get("decoder.model.decoder.embed_tokens.weight")
    if out is not None and (emb is None or out.shape != emb.shape or not np.array_equal(out, emb)):
        raise CheckpointError(f"{where}: config.json says tie_word_embeddings: true, but the checkpoint has a "
                              "decoder.output_projection.weight that differs from embed_tokens; set "
                              "\"tie_word_embeddings\": false in the decoder config to keep it")


def _tokenizer_files(src: Path) -> list[str]:
    if (src / "tokenizer.json").is_file():
        return ["tokenizer.json"] + [n for n in ("vocab.json", "merges.txt") if (src / n).is_file()]
    has_vocab, has_merges = (src / "vocab.json").is_file(), (src / "merges.txt").is_file()
    if has_vocab and has_merges:
        return ["vocab.json", "merges.txt"]
    if has_vocab != has_merges:
        present, absent = ("vocab.json", "merges.txt") if has_vocab else ("merges.txt", "vocab.json")
        raise FileNotFoundError(f"{src / absent}: not found, but {present} is there (a byte-level BPE tokenizer "
                                "needs both, or supply tokenizer.json)")
    if (src / "sentencepiece.bpe.model").is_file():  # XLM-R (trocr-small): checked now, so a bad file fails here
        read_spm_model(src / "sentencepiece.bpe.model")
        return ["sentencepiece.bpe.model"]
    return []  # no tokenizer: the model still runs, returning token ids only


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("trocr-np")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def convert_trocr(src_dir, dst_dir, dtype: str = "float32", quantize_encoder: bool = False) -> Path:
    """Convert the HF TrOCR folder `src_dir` into a trocr-np folder `dst_dir`; returns dst_dir.

    dtype: "float32" (exact), "float16" (half the size; floating tensors are cast with
    numpy's round-to-nearest), "bfloat16" (the decoder's matrices, round to nearest even)
    or "int8" (the decoder's matrices, per-row symmetric); with bfloat16 and int8 the rest
    stays float32, and quantize_encoder stores the encoder's matrices that way too (int8: the
    encoder then multiplies int8 x int8, its inputs quantised per row at run time,
    trocr_np.kernels_i8). 16- and 8-bit matrices stay small in memory when loaded
    (trocr_np.quant). Needs no torch, also for .bin files.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src / 'config.json'}: not found (a TrOCR checkpoint folder needs config.json)")
    read_preprocessor(str(src))  # preprocessor_config.json or processor_config.json, else a clear error
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: destination is the source folder; choose another folder")
    cfg = load_config(src)
    tok_files = _tokenizer_files(src)
    weights_path = find_weights(src)

    raw = load_hf_weights(weights_path)
    if cfg.decoder.tie_word_embeddings:
        _check_tied(raw, weights_path)
    tensors = hf_to_ondisk_names(raw, tied=cfg.decoder.tie_word_embeddings,
                                 learned_positions=cfg.decoder.use_learned_position_embeddings,
                                 where=weights_path)
    check_tensors(tensors, expected_param_shapes(cfg), weights_path)
    tensors = file_tensors(tensors, dtype, quantize_encoder, where=weights_path)

    dst.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, dst / "model.safetensors", metadata={
        "format": "trocr-np", "source": weights_path.name, "dtype": dtype,
        "quantize_encoder": str(quantize_encoder).lower(), "trocr_np_version": _version()})
    for name in CONFIG_FILES + OPTIONAL_FILES + tuple(tok_files):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return dst
