"""Writing files so that nothing half-written is ever seen: a temporary file beside the
destination, flushed, then renamed over it (`os.replace` is atomic on POSIX and Windows).
Also where both wings keep what they convert on first use (`cache_dir`).

A reader that has the old file open or memory-mapped keeps its consistent view; a run killed
mid-write leaves the old file (or none), never a truncated one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path, data: bytes | str | Callable[[str], None], encoding: str = "utf-8") -> Path:
    """Write `data` to `path` atomically and return the path.

    data: bytes, str (encoded with `encoding`), or a callable that writes the file whose name it is given
    (for writers that want a file name, such as safetensors' save_file). The folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode(encoding) if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path



def cache_dir() -> Path:
    """`$TROCR_NP_CACHE`, else `~/.cache/trocr-np`: converted CRAFT weights and TrOCR folders."""
    return Path(os.environ.get("TROCR_NP_CACHE") or Path.home() / ".cache" / "trocr-np")
