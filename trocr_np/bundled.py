"""Where the bundled handwriting recogniser lives.

The model is trained by `weights/train.py` and converted with `trocr-np convert
--dtype float16` into `weights/trocr-np-handwritten-small/` (see weights/README.md).
A wheel ships that folder as the data-only package `trocr_np.bundled_weights`
(pyproject.toml maps it); a source checkout or editable install reads it in place.
"""
from __future__ import annotations

from pathlib import Path

BUNDLED_NAME = "trocr-np-handwritten-small"


def bundled_model_dir() -> Path:
    """Folder of the bundled converted model (model.safetensors, config.json, ...)."""
    here = Path(__file__).resolve().parent
    candidates = [here / "bundled_weights",                     # installed wheel
                  here.parent / "weights" / BUNDLED_NAME]       # source checkout / editable
    for d in candidates:
        if (d / "model.safetensors").is_file() and (d / "config.json").is_file():
            return d
    raise FileNotFoundError("bundled model not found (looked in "
                            + ", ".join(str(d) for d in candidates)
                            + "); reinstall trocr-np or pass a converted model folder")
