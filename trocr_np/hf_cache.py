"""Hugging Face TrOCR folders used directly: converted on first use into the cache, loaded from it after.

    load_model("path/to/hf-folder")
      -> is_converted? no -> key = sha256 of (name, size, mtime_ns) of every file in the folder
                             + the converter's format version
      -> $TROCR_NP_CACHE/trocr/<folder name>-<key[:16]>  exists? load it
      -> else convert_trocr into a temporary folder beside it, then rename it into place

The key reads file *stats*, not contents, so a multi-GB checkpoint costs nothing to recognise on
every run; any edit of a file (new size or mtime) gives a new key and a fresh conversion, and a
byte-identical copy with other mtimes is converted once more (harmless). The rename is atomic: a
run killed mid-conversion leaves only a temporary folder (swept on the next conversion), never a
half-written entry; two processes converting at once both finish and one rename wins. When the
cache folder is not writable the conversion goes to a temporary folder and is read into memory.
`trocr-np convert` remains the explicit path (choose the folder, the dtype; no cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ocr_base.checkpoint import CheckpointError, safetensors_metadata
from ocr_base.files import cache_dir

# bump when the converted folder's content changes for the same source files
FORMAT_VERSION = 1
_STALE_PREFIX = ".converting-"


def is_converted(model_dir) -> bool:
    """True for a folder written by `convert_trocr` (its model.safetensors says format trocr-np)."""
    st = Path(model_dir) / "model.safetensors"
    try:
        return st.is_file() and safetensors_metadata(st).get("format") == "trocr-np"
    except CheckpointError:
        return False  # an unreadable file: let the HF path (the converter) name the problem


def folder_key(model_dir) -> str:
    """sha256 hex of the folder's regular files (name, size, mtime_ns) and FORMAT_VERSION."""
    entries = []
    for p in sorted(Path(model_dir).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            s = p.stat()
            entries.append([p.name, s.st_size, s.st_mtime_ns])
    blob = json.dumps({"format": FORMAT_VERSION, "files": entries}).encode()
    return hashlib.sha256(blob).hexdigest()


def cache_entry(model_dir) -> Path:
    """Where the converted copy of `model_dir` lives (or will live) in the cache."""
    src = Path(model_dir).resolve()
    return cache_dir() / "trocr" / f"{src.name or 'model'}-{folder_key(src)[:16]}"


def converted_folder(model_dir) -> tuple[Path, bool]:
    """The cached conversion of the HF folder `model_dir`, converting it first if needed.

    Returns (folder, temporary): temporary is True when the cache was not writable and the folder is
    a temporary one the caller must read fully and then delete."""
    from .convert import convert_trocr

    entry = cache_entry(model_dir)
    if (entry / "model.safetensors").is_file():
        return entry, False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=_STALE_PREFIX + entry.name + "."))
    except OSError:  # read-only home / cache: convert where we can and keep it in memory only
        tmp = Path(tempfile.mkdtemp(prefix="trocr-np-"))
        try:
            convert_trocr(model_dir, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp, True
    try:
        convert_trocr(model_dir, tmp)
        try:
            os.replace(tmp, entry)
        except OSError:
            if not (entry / "model.safetensors").is_file():  # not "another process won the race"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _sweep(entry.parent)
    return entry, False


def _sweep(folder: Path) -> None:
    """Remove temporary folders left by conversions that were killed (older than an hour)."""
    import time
    for p in folder.glob(_STALE_PREFIX + "*"):
        try:
            if time.time() - p.stat().st_mtime > 3600:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass
