"""The fuzz targets: each makes case `i` of a seed deterministically and feeds it to one reader or kernel.

    TARGETS[name].case(rng) -> case         a case from a numpy Generator (so any case can be replayed)
    TARGETS[name].run(case, workdir)        feed it; only the exceptions in `allowed` are acceptable

  checkpoint_zip     torch.save zip files: byte mutations, pickle mutations re-zipped, hostile tensor recipes
  checkpoint_legacy  legacy torch files: the same, with the pickles exposed at the start of the file
  pickle_ops         random opcode streams as data.pkl (the pickle dry run and the restricted unpickler)
  safetensors        byte mutations and hostile JSON headers
  images             PNG / JPEG / TIFF / GIF / BMP / WebP / PPM, byte and chunk-aware mutations
  postprocess        detector_np.postprocess.get_det_boxes on random score maps and thresholds
  crop               trocr_np.crop.crop_quad on random quads (convex, folded, degenerate, huge, NaN)
"""
from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .make import P, Tensor, png16_bytes, safetensors_bytes, seed_tensors, state_dict_pickle, torch_legacy, torch_zip

_INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
                2 ** 32, 2 ** 48, 2 ** 60, 2 ** 62, 2 ** 63 - 1, 2 ** 64 - 1]


@dataclass(frozen=True)
class Target:
    case: Callable
    run: Callable
    allowed: tuple
    warm: Callable | None = None  # compiles what the cases use (Numba's first load takes seconds)


def mutate(data: bytes, rng, others=()) -> bytes:
    """1-4 random byte-level mutations: bit flips, interesting integers, cuts, copies, splices."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 8))
        n = len(b)
        at = int(rng.integers(0, n)) if n else 0
        if op == 0 and n:
            b[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:
            b[at] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(0, 256))]))
        elif op == 2 and n >= 8:
            width = int(rng.choice([1, 2, 4, 8]))
            v = int(rng.choice(_INTERESTING)) % (1 << (8 * width))
            at = min(at, n - width)
            b[at: at + width] = v.to_bytes(width, "little" if rng.integers(0, 2) else "big")
        elif op == 3:
            del b[at: at + int(rng.integers(1, 64))]
        elif op == 4:
            b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8))
        elif op == 5 and n:
            k = int(rng.integers(1, min(n, 256) + 1))
            src = int(rng.integers(0, n - k + 1))
            b[at:at] = b[src: src + k] * int(rng.integers(1, 4))
        elif op == 6:
            del b[int(rng.integers(0, n + 1)):]          # truncation
        elif op == 7 and others:
            o = others[int(rng.integers(0, len(others)))]
            cut = int(rng.integers(0, len(o) + 1))
            b = b[:at] + bytearray(o[cut:])
    return bytes(b)


def _write(workdir: Path, data: bytes, name: str) -> Path:
    p = workdir / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------ checkpoints
def _hostile_int(rng):
    return int(rng.choice(_INTERESTING)) * int(rng.choice([1, 1, 1, -1]))


def _hostile_value(rng):
    """What a size / stride / offset / numel may be made of in a hostile file."""
    kind = int(rng.integers(0, 8))
    if kind < 4:
        return int(rng.integers(0, 12))
    return [_hostile_int(rng), 3.0, "3", True, None, (2, 2)][kind - 4] if kind < 8 else 0


def _hostile_recipes(rng) -> dict:
    out = {}
    for i in range(int(rng.integers(1, 5))):
        data = rng.standard_normal(int(rng.integers(0, 24))).astype(np.float32)
        rank = int(rng.integers(0, 4)) if rng.integers(0, 10) else int(rng.integers(4, 12))
        size = tuple(_hostile_value(rng) for _ in range(rank))
        stride = tuple(_hostile_value(rng) for _ in range(rank if rng.integers(0, 8) else rank + 1))
        numel = None if rng.integers(0, 3) else _hostile_value(rng)
        key = str(int(rng.integers(0, 3))) if rng.integers(0, 8) else _hostile_value(rng)
        out[f"t{i}"] = Tensor(key, data, size, stride, _hostile_value(rng) if rng.integers(0, 4) == 0 else 0,
                              numel=numel)
    return out


def _checkpoint_case(rng, legacy: bool) -> bytes:
    tensors = seed_tensors(rng)
    write = torch_legacy if legacy else torch_zip
    kind = int(rng.integers(0, 4))
    if kind == 0:  # the container itself
        return mutate(write(tensors), rng)
    if kind == 1:  # the object pickle, the container intact
        pkl = mutate(state_dict_pickle(tensors, legacy=legacy), rng)
        return torch_legacy(tensors, obj_pickle=pkl) if legacy else torch_zip(tensors, data_pkl=pkl)
    if kind == 2:  # hostile sizes, strides, offsets, storage keys and counts
        try:
            return write(_hostile_recipes(rng))
        except (TypeError, ValueError, OverflowError, struct.error):
            return write(tensors)
    if legacy:
        return write(tensors)
    return torch_zip(tensors, compress=zipfile.ZIP_DEFLATED if rng.integers(0, 2) else zipfile.ZIP_STORED,
                     prefix=str(rng.choice(["archive", "x", "a/b", ""])))


def _load_torch(data, workdir):
    from ocr_base.checkpoint import load_torch
    load_torch(_write(workdir, data, "case.pt"))


# ------------------------------------------------------------------ random pickles
_GLOBALS = [("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"), ("torch", "FloatStorage"),
            ("builtins", "list"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
            ("builtins", "dict"), ("torch", "Size"), ("_codecs", "encode"), ("os", "system"),
            ("builtins", "eval"), ("torch._utils", "_rebuild_parameter"), ("torch", "float32")]


def _random_pickle(rng) -> bytes:
    """Mostly well-formed opcode streams (the stack is modelled, so most reach the unpickler itself),
    built into a dict of whatever was made, with an occasional ill-formed opcode."""
    out = [P.PROTO2 if rng.integers(0, 4) else bytes([0x80, int(rng.integers(0, 6))]), P.EMPTY_DICT, P.MARK]
    stack, memo = ["m"], 0  # "m": a MARK, "v": a value

    def above_mark():
        return len(stack) - 1 - stack[::-1].index("m") if "m" in stack else len(stack)

    for _ in range(int(rng.integers(1, 150))):
        k = int(rng.integers(0, 20))
        top = above_mark()
        if k < 3:
            out.append(P.int(int(rng.integers(-300, 300)) if rng.integers(0, 3) else _hostile_int(rng)))
        elif k < 5:
            out.append(P.str(str(rng.choice(["storage", "cpu", "0", "1", "a", "\u00e9"]))))
        elif k == 5:
            out.append(P.glob(*_GLOBALS[int(rng.integers(0, len(_GLOBALS)))]))
        elif k == 6:
            out.append(bytes([b"]})N"[int(rng.integers(0, 4))]]))
        elif k == 7:
            out.append(P.MARK)
            stack.append("m")
            continue
        elif k == 8 and memo:
            out.append(P.get(int(rng.integers(0, memo))))
        elif k == 9 and top >= 1:
            out.append(P.put(memo) if rng.integers(0, 2) else b"\x94")
            memo += 1
            continue
        elif k == 10 and top >= 1:
            out.append(P.DUP)
        elif k == 11 and "m" in stack[1:]:  # a container from the values above the last MARK
            m = len(stack) - 1 - stack[::-1].index("m")
            op = b"tl\x91d"[int(rng.integers(0, 4))] if m > 0 and stack[m - 1] != "v" else b"tl\x91eu\x90"[
                int(rng.integers(0, 6))]
            out.append(bytes([op]))
            del stack[m:]
            if op in b"eu\x90":
                continue  # the container below the mark stays the top
        elif k == 12 and top >= 2:
            out.append(bytes([b"aR\x86b"[int(rng.integers(0, 4))]]))  # APPEND, REDUCE, TUPLE2, BUILD: 2 -> 1
            stack.pop()
            continue
        elif k == 13 and top >= 3:
            out.append(bytes([b"s\x87"[int(rng.integers(0, 2))]]))  # SETITEM, TUPLE3: 3 -> 1
            del stack[-2:]
            continue
        elif k == 14 and top >= 1:
            out.append(bytes([b"\x85Q"[int(rng.integers(0, 2))]]))  # TUPLE1, BINPERSID: 1 -> 1
            continue
        elif k == 15 and top >= 1:
            out.append(P.POP)
            stack.pop()
            continue
        elif k == 16 and rng.integers(0, 8) == 0:  # anything at all
            out.append(bytes([int(rng.integers(0, 256))]))
            continue
        else:
            continue
        stack.append("v")
    while stack.count("m") > 1:  # close inner marks into tuples
        m = len(stack) - 1 - stack[::-1].index("m")
        out.append(P.TUPLE)
        stack[m:] = ["v"]
    if (len(stack) - 1) % 2:
        out.append(P.NONE)
    out.append(P.SETITEMS + P.STOP)
    return b"".join(out)


def _pickle_case(rng) -> bytes:
    pkl = _random_pickle(rng)
    tensors = {"w": np.ones(3, np.float32)}
    return torch_legacy(tensors, obj_pickle=pkl) if rng.integers(0, 2) else torch_zip(tensors, data_pkl=pkl)


# ------------------------------------------------------------------ safetensors
_JSON_VALUES = [0, 1, -1, 3, 2 ** 31, 2 ** 63, 2 ** 64, 1.5, True, None, "F32", "3", [], [3], [2, 2], [0, 12],
                [12, 0], [0, 2 ** 64], {}, [[0]], [True, 3], [0, 2 ** 62], [2 ** 40, 0, 2 ** 40]]


def _safetensors_case(rng) -> bytes:
    tensors = {"a": rng.standard_normal((2, 3)).astype(np.float32), "b": np.arange(4, dtype=np.int64),
               "c": np.zeros(0, np.float32)}
    good = safetensors_bytes(tensors)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return mutate(good, rng)
    header = json.loads(good[8: 8 + struct.unpack("<Q", good[:8])[0]])
    for _ in range(int(rng.integers(1, 4))):
        name = str(rng.choice(list(header) + ["new", "__metadata__"]))
        entry = header.setdefault(name, {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
        if not isinstance(entry, dict) or rng.integers(0, 6) == 0:
            header[name] = copy.deepcopy(_JSON_VALUES[int(rng.integers(0, len(_JSON_VALUES)))])
            continue
        field = str(rng.choice(["dtype", "shape", "data_offsets"]))
        v = copy.deepcopy(_JSON_VALUES[int(rng.integers(0, len(_JSON_VALUES)))])
        if field == "dtype" and rng.integers(0, 2):
            v = str(rng.choice(["F64", "F16", "BF16", "I8", "U64", "BOOL", "F8_E4M3", "f32"]))
        entry[field] = v
    blob = safetensors_bytes({}, header=header) + good[8 + struct.unpack("<Q", good[:8])[0]:]
    return blob if kind == 1 else mutate(blob, rng)


def _load_safetensors(data, workdir):
    from ocr_base.checkpoint import load_safetensors
    load_safetensors(_write(workdir, data, "case.safetensors"))


# ------------------------------------------------------------------ images
_SEEDS: list[bytes] = []


def _image_seeds() -> list[bytes]:
    from PIL import Image
    if _SEEDS:
        return _SEEDS
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8))
    variants = [(rgb, "PNG", {}), (rgb.convert("P"), "PNG", {}), (rgb.convert("1"), "PNG", {}),
                (rgb.convert("LA"), "PNG", {}), (Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16)),
                                                 "PNG", {}),
                (rgb, "JPEG", {}), (rgb, "JPEG", {"progressive": True}), (rgb.convert("L"), "JPEG", {}),
                (rgb, "TIFF", {}), (rgb, "TIFF", {"compression": "tiff_deflate"}),
                (rgb, "TIFF", {"compression": "tiff_lzw"}), (rgb.convert("1"), "TIFF", {"compression": "group4"}),
                (rgb, "TIFF", {"save_all": True, "append_images": [rgb.convert("L"), rgb]}),
                (rgb.convert("P"), "GIF", {}), (rgb, "BMP", {}), (rgb, "WEBP", {}), (rgb, "PPM", {}),
                (rgb.convert("RGBA"), "PNG", {}), (rgb.convert("CMYK"), "JPEG", {})]
    for im, fmt, kw in variants:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        _SEEDS.append(buf.getvalue())
    for c, interlace in ((3, False), (4, True)):  # 16-bit colour, decoded by ocr_base.png
        _SEEDS.append(png16_bytes(rng.integers(0, 65536, (7, 11, c)).astype(np.uint16), interlace, rng))
    return _SEEDS


def _png_chunks_mutated(data: bytes, rng) -> bytes:
    """Mutate one chunk's payload of a PNG and fix its CRC, so the mutation reaches the decoder."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos: pos + 8])
        chunks.append([kind, data[pos + 8: pos + 8 + n]])
        pos += 12 + n
    k = int(rng.integers(0, len(chunks)))
    if chunks[k][0] == b"IDAT" and rng.integers(0, 2):
        raw = zlib.decompress(chunks[k][1])
        chunks[k][1] = zlib.compress(mutate(raw, rng) if rng.integers(0, 2) else raw[: int(rng.integers(0, len(raw) + 1))])
    else:
        chunks[k][1] = mutate(chunks[k][1], rng)
    return data[:8] + b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
                               for t, d in chunks)


def _image_case(rng) -> bytes:
    seeds = _image_seeds()
    data = seeds[int(rng.integers(0, len(seeds)))]
    if data.startswith(b"\x89PNG") and rng.integers(0, 2):
        return _png_chunks_mutated(data, rng)
    return mutate(data, rng, others=seeds)


def _load_pages(data, workdir):
    from ocr_base.image_io import load_pages
    load_pages(data)


def _warm_images(workdir):
    for data in _image_seeds():
        _load_pages(data, workdir)


# ------------------------------------------------------------------ compiled kernels
def _maps_case(rng):
    h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        text = rng.random((h, w), np.float32)
    else:  # blobs: components with peaks, joined by links
        text = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(0, 12))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            text[max(0, y - 3): y + 3, max(0, x - 6): x + 6] = rng.uniform(0.3, 1.0)
    link = (rng.random((h, w)) * (rng.random() > 0.3)).astype(np.float32)
    thresholds = [float(rng.choice([0.0, 1.0, rng.random()])) for _ in range(3)]
    return text, link, thresholds, bool(rng.integers(0, 2))


def _det_boxes(case, workdir):
    from detector_np.postprocess import get_det_boxes
    text, link, (t, lt, low), poly = case
    boxes, polys, _ = get_det_boxes(text, link, t, lt, low, poly=poly)
    assert len(boxes) == len(polys)
    for b in boxes:
        assert np.all(np.isfinite(np.asarray(b, np.float64)))


def _quad_case(rng):
    h, w = int(rng.integers(1, 48)), int(rng.integers(1, 48))
    c = int(rng.choice([1, 3, 4]))
    img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    kind = int(rng.integers(0, 6))
    if kind == 0:    # a rotated rectangle
        cx, cy, a = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5), rng.uniform(-np.pi, np.pi)
        hw, hh = rng.uniform(0, 30), rng.uniform(0, 15)
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        quad = corners @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [cx, cy]
    elif kind == 1:  # any four points (folded, self-intersecting, collinear ...)
        quad = rng.uniform(-10, 60, (4, 2)).round(int(rng.integers(0, 3)))
    elif kind == 2:  # huge or tiny coordinates
        quad = rng.uniform(-1, 1, (4, 2)) * 10.0 ** int(rng.integers(-3, 4))
    elif kind == 3:  # repeated points
        quad = np.repeat(rng.uniform(0, 40, (2, 2)), 2, axis=0)
    elif kind == 4:  # non-finite
        quad = rng.uniform(0, 40, (4, 2))
        quad[int(rng.integers(0, 4)), int(rng.integers(0, 2))] = rng.choice([np.nan, np.inf, -np.inf])
    else:            # a near-perspective quad
        quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], float) + rng.normal(0, 4, (4, 2))
    margin = float(rng.choice([0.0, 0.1, rng.uniform(0, 2)]))
    fast = bool(rng.integers(0, 4))  # the reference path (slow, float64 temporaries) on small crops only
    return img, quad, margin, str(rng.choice(["replicate", "constant"])), fast


def _crop(case, workdir):
    from trocr_np.crop import crop_quad, quad_size
    img, quad, margin, border, fast = case
    if not fast and np.all(np.isfinite(quad)) and np.prod(quad_size(quad)) * (1 + 2 * margin) ** 2 > 2e5:
        fast = True
    out = crop_quad(img, quad, margin=margin, border=border, fast=fast)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == img.shape[2]


def _allowed():
    from ocr_base.checkpoint import CheckpointError
    from ocr_base.image_io import ImageError
    return CheckpointError, ImageError


def targets() -> dict[str, Target]:
    CheckpointError, ImageError = _allowed()
    return {
        "checkpoint_zip": Target(lambda rng: _checkpoint_case(rng, False), _load_torch, (CheckpointError,)),
        "checkpoint_legacy": Target(lambda rng: _checkpoint_case(rng, True), _load_torch, (CheckpointError,)),
        "pickle_ops": Target(_pickle_case, _load_torch, (CheckpointError,)),
        "safetensors": Target(_safetensors_case, _load_safetensors, (CheckpointError,)),
        "images": Target(_image_case, _load_pages, (ImageError,), _warm_images),
        "postprocess": Target(_maps_case, _det_boxes, ()),
        "crop": Target(_quad_case, _crop, (ValueError,)),
    }
