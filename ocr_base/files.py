"""Writing files so that nothing half-written is ever seen: a temporary file beside the
destination, flushed, then renamed over it (`os.replace` is atomic on POSIX and Windows).
Also where both wings keep what they convert on first use (`cache_dir`).

A reader that has the old file open or memory-mapped keeps its consistent view; a run killed
mid-write leaves the old file (or none), never a truncated one.
"""
from __future__ import annotations

import os
import stat
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


def regular_file_size(path, error: type = ValueError, name: str | None = None) -> int:
    """The size of `path`, which must be a regular file: a FIFO would block forever and a device never
    end, so both are refused before anything is read. Missing -> FileNotFoundError; anything else
    unreadable, a folder, a FIFO or a device -> `error` (the reader's own type), naming the file."""
    name = name or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    except OSError as e:
        raise error(f"{name}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{name}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{name}: not a regular file")
    return st.st_size
