"""Tensor files, the parts both readers share: the error types, the folder -> file resolver,
HF shard indexes, and the one check of a tensor set against the shapes a model expects.

Used by `ocr_base.safetensors_io` and `ocr_base.torch_pickle` (the two readers) and by both wings'
weight loaders (`trocr_np.model`, `trocr_np.convert`, `detector_np.weights`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .files import regular_file_size


class CheckpointError(ValueError):
    """A checkpoint file is missing pieces, truncated, malformed or unsafe.

    The message always names the file, and the tensor when one is involved.
    """


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked for a Python global we do not admit (it may be malicious)."""


def in_folder(path, name: str) -> Path:
    """`path` itself, or for a folder its `name` file, else its sharded `name`.index.json."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (name, name + ".index.json"):
        if (path / candidate).is_file():
            return path / candidate
    raise FileNotFoundError(f"{path}: no {name} or {name}.index.json in this folder")


MAX_INDEX_BYTES = 64 << 20  # a shard index of 10^5 tensors is ~10 MB


def regular_file(path: Path) -> int:
    """The size of `path`, which must be a regular file (FIFOs and devices would block or never end)."""
    return regular_file_size(path, CheckpointError)


def load_sharded(index_path: Path, load_one) -> dict:
    """Read a HF `*.index.json` ({"weight_map": {tensor: shard file}}) and merge its shards.

    Shards are plain file names beside the index (no folders: an index cannot point elsewhere).
    """
    if regular_file(index_path) > MAX_INDEX_BYTES:
        raise CheckpointError(f"{index_path}: shard index is over {MAX_INDEX_BYTES:,} bytes")
    try:
        with open(index_path, "rb") as f:
            weight_map = json.loads(f.read(MAX_INDEX_BYTES + 1))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # ValueError: bad UTF-8 or JSON
        raise CheckpointError(f"{index_path}: not a valid shard index ({type(e).__name__}: {e})") from None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index_path}: weight_map is not a JSON object")
    for name, shard in weight_map.items():
        if not (isinstance(shard, str) and shard and Path(shard).name == shard and shard not in (".", "..")):
            raise CheckpointError(f"{index_path}: tensor {name!r}: shard must be a file name beside the index, "
                                  f"got {str(shard)[:80]!r}")
    out: dict = {}
    where: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            first = next(k for k, v in weight_map.items() if v == shard)
            raise FileNotFoundError(f"{shard_path}: shard listed in {index_path} (for tensor {first!r}) is missing")
        for name, arr in load_one(shard_path).items():
            if name in out:
                raise CheckpointError(f"{shard_path}: tensor {name!r} is also in shard {where[name]}")
            out[name], where[name] = arr, shard
    for name, shard in weight_map.items():
        if where.get(name) != shard:
            raise CheckpointError(f"{index_path}: tensor {name!r} is listed in shard {shard} but is not in it")
    return out


def check_tensors(tensors: dict, expected: dict[str, tuple[int, ...]], where, *, implied_by: str = "config.json",
                  finite: bool = False) -> None:
    """The one check of a tensor set: exact names, shapes, floating dtype (and finite values if asked).

    tensors: {name: array}; expected: {name: shape}. Raises CheckpointError naming `where` and the first
    missing / unexpected / mis-shaped tensor (with a count of the others), so a wrong checkpoint or a
    mismatched config is reported before any maths runs.
    """
    def first(names, say):
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise CheckpointError(f"{where}: {say(names[0])}{more}")

    missing = [k for k in expected if k not in tensors]
    if missing:
        first(missing, lambda k: f"missing tensor {k!r} of shape {tuple(expected[k])} required by {implied_by}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        first(unexpected, lambda k: f"unexpected tensor {k!r} of shape {tuple(np.shape(tensors[k]))}: "
                                    f"{implied_by} has no place for it")
    for k, shape in expected.items():
        a = tensors[k]
        if tuple(a.shape) != tuple(shape):
            raise CheckpointError(f"{where}: tensor {k!r} has shape {tuple(a.shape)} but {implied_by} implies "
                                  f"{tuple(shape)}")
        if a.dtype.kind != "f":
            raise CheckpointError(f"{where}: tensor {k!r} has dtype {a.dtype}, expected floating point")
        if finite and not np.all(np.isfinite(a)):
            raise CheckpointError(f"{where}: tensor {k!r} contains NaN or infinity")
