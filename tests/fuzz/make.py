"""Hostile and valid files written without torch: the seeds of the fuzzers and the regression recipes.

    torch_zip(tensors)           bytes of a `torch.save` zip (archive/data.pkl, archive/data/<k>, byteorder)
    torch_legacy(tensors)        bytes of a legacy `_use_new_zipfile_serialization=False` file
    state_dict_pickle(tensors)   the data.pkl of either format, opcode by opcode (protocol 2)
    safetensors_bytes(tensors)   a safetensors file
    P                            opcode helpers to write hostile pickles by hand

Layouts follow torch/serialization.py (`_save`, `_legacy_save`), as read by ocr_base.torch_pickle.
A tensor is given as an array (saved whole), or as a `Tensor` recipe with its own storage key,
offset, size and stride (views, shared storages, and hostile values).
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

STORAGE_NAMES = {np.dtype("f4"): "FloatStorage", np.dtype("f8"): "DoubleStorage", np.dtype("f2"): "HalfStorage",
                 np.dtype("i8"): "LongStorage", np.dtype("i4"): "IntStorage", np.dtype("u1"): "ByteStorage",
                 np.dtype("bool"): "BoolStorage"}


class P:
    """Pickle opcodes (protocol 2 and up) as bytes."""
    PROTO2, STOP, MARK, TUPLE, DICT, EMPTY_DICT, SETITEMS = b"\x80\x02", b".", b"(", b"t", b"d", b"}", b"u"
    EMPTY_LIST, APPEND, APPENDS, TUPLE2, REDUCE, BINPERSID, NONE, FALSE = b"]", b"a", b"e", b"\x86", b"R", b"Q", b"N", b"\x89"
    EMPTY_TUPLE, DUP, POP = b")", b"2", b"0"

    @staticmethod
    def int(v: int) -> bytes:
        if 0 <= v < 256:
            return b"K" + bytes([v])
        if -2 ** 31 <= v < 2 ** 31:
            return b"J" + struct.pack("<i", v)
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw

    @staticmethod
    def str(s: str) -> bytes:
        b = s.encode("utf-8")
        return b"X" + struct.pack("<I", len(b)) + b

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    @staticmethod
    def put(i: int) -> bytes:
        return b"r" + struct.pack("<I", i)

    @staticmethod
    def get(i: int) -> bytes:
        return b"j" + struct.pack("<I", i)

    @staticmethod
    def value(v) -> bytes:
        """An int, str, None, bool or tuple of them."""
        if v is None:
            return P.NONE
        if isinstance(v, bool):
            return b"\x88" if v else P.FALSE
        if isinstance(v, int):
            return P.int(v)
        if isinstance(v, str):
            return P.str(v)
        if isinstance(v, float):
            return b"G" + struct.pack(">d", v)
        if isinstance(v, (tuple, list)):
            return P.MARK + b"".join(P.value(x) for x in v) + P.TUPLE
        raise TypeError(type(v))


@dataclass
class Tensor:
    """One tensor as a recipe: elements `size`/`stride`/`offset` of storage `key` (data: its elements)."""
    key: str
    data: np.ndarray
    size: tuple
    stride: tuple
    offset: int = 0
    numel: int | None = None     # the storage's declared element count (default: len(data))


def as_recipes(tensors: dict) -> dict[str, Tensor]:
    out = {}
    for i, (name, t) in enumerate(tensors.items()):
        if not isinstance(t, Tensor):
            a = np.ascontiguousarray(t)
            stride = tuple(s // a.itemsize for s in a.strides)
            t = Tensor(str(i), a.reshape(-1), a.shape, stride)
        out[name] = t
    return out


def _tensor_pickle(t: Tensor, legacy: bool) -> bytes:
    st = STORAGE_NAMES[np.dtype(t.data.dtype)]
    numel = len(t.data) if t.numel is None else t.numel
    pid = (P.MARK + P.str("storage") + P.glob("torch", st) + P.value(t.key) + P.str("cpu") + P.value(numel)
           + (P.NONE if legacy else b"") + P.TUPLE + P.BINPERSID)
    return (P.glob("torch._utils", "_rebuild_tensor_v2") + P.MARK + pid + P.value(t.offset) + P.value(t.size)
            + P.value(t.stride) + P.FALSE + P.glob("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE
            + P.TUPLE + P.REDUCE)


def state_dict_pickle(tensors: dict, legacy: bool = False) -> bytes:
    """{name: array | Tensor} -> the object pickle (an OrderedDict of tensors)."""
    body = b"".join(P.str(name) + _tensor_pickle(t, legacy) for name, t in as_recipes(tensors).items())
    return (P.PROTO2 + P.glob("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE
            + P.MARK + body + P.SETITEMS + P.STOP)


def _storages(recipes: dict[str, Tensor]) -> dict[str, np.ndarray]:
    out = {}
    for t in recipes.values():
        out.setdefault(t.key, t.data)
    return out


def torch_zip(tensors: dict, data_pkl: bytes | None = None, compress: int = zipfile.ZIP_STORED,
              prefix: str = "archive") -> bytes:
    recipes = as_recipes(tensors)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        z.writestr(f"{prefix}/data.pkl", state_dict_pickle(recipes) if data_pkl is None else data_pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, data in _storages(recipes).items():
            z.writestr(f"{prefix}/data/{key}", np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
        z.writestr(f"{prefix}/version", "3\n")
    return buf.getvalue()


def torch_legacy(tensors: dict, obj_pickle: bytes | None = None) -> bytes:
    import pickle

    recipes = as_recipes(tensors)
    storages = _storages(recipes)
    out = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
           pickle.dumps({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
           state_dict_pickle(recipes, legacy=True) if obj_pickle is None else obj_pickle,
           pickle.dumps(list(storages), protocol=2)]
    for data in storages.values():
        out.append(struct.pack("<q", len(data)) + np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
    return b"".join(out)


_ST_NAMES = {"f4": "F32", "f8": "F64", "f2": "F16", "i8": "I64", "i4": "I32", "u1": "U8", "b1": "BOOL"}


def safetensors_bytes(tensors: dict[str, np.ndarray], header: dict | None = None) -> bytes:
    """A safetensors file; `header` (if given) replaces the generated JSON header."""
    h, data, pos = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        h[name] = {"dtype": _ST_NAMES[a.dtype.str[1:]], "shape": list(a.shape), "data_offsets": [pos, pos + len(raw)]}
        data.append(raw)
        pos += len(raw)
    text = json.dumps(h if header is None else header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(data)


def seed_tensors(rng: np.random.Generator) -> dict:
    """A small state dict with the cases a reader must get right: dtypes, views, a shared storage."""
    base = rng.standard_normal(12).astype(np.float32)
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.integers(-5, 5, 4).astype(np.int64),
        "h": rng.standard_normal(5).astype(np.float16),
        "view": Tensor("shared", base, (2, 3), (1, 2), offset=1),
        "again": Tensor("shared", base, (4,), (3,)),
        "expanded": Tensor("e", np.ones(2, np.float32), (3, 2), (0, 1)),
        "scalar": np.float32(rng.standard_normal()).reshape(()),
        "empty": np.zeros((0, 3), np.float32),
    }


def zip_raw(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from already-compressed members (name, data, method, crc, uncompressed size), sizes as declared."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        n = name.encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                               len(n), 0, 0, 0, 0, 0, len(out)) + n
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(n), 0) + n + data
    return bytes(out + central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                                             len(central), len(out), 0))


def deflated_zeros(total: int, chunk: int = 1 << 24) -> bytes:
    """A raw deflate stream of `total` zero bytes (total a multiple of chunk), built from one flushed
    block repeated: each full flush makes a block that depends on nothing before it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (total // chunk) + b"\x03\x00"  # an empty final block ends the stream


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_filter(rows: np.ndarray, bpp: int, rng) -> bytes:
    """(ph, rb) uint8 scanlines -> each row's filter byte (0-4, at random) and its filtered bytes."""
    out, prev = [], np.zeros(rows.shape[1], np.int64)
    for row in rows.astype(np.int64):
        f, line = int(rng.integers(0, 5)), []
        for x in range(len(row)):
            a, b = (row[x - bpp] if x >= bpp else 0), prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)
            line.append((row[x] - [0, a, b, (a + b) // 2, paeth][f]) & 255)
        out.append(bytes([f]) + bytes(line))
        prev = row
    return b"".join(out)


def png16_bytes(a: np.ndarray, interlace: bool, rng) -> bytes:
    """A 16-bit RGB (H, W, 3) or RGBA (H, W, 4) PNG with random row filters (Pillow cannot write one)."""
    from ocr_base.png import ADAM7
    h, w, c = a.shape
    parts = [a[y0::dy, x0::dx] for x0, y0, dx, dy in (ADAM7 if interlace else ((0, 0, 1, 1),))]
    raw = b"".join(png_filter(p.astype(">u2").reshape(p.shape[0], -1).view(np.uint8), 2 * c, rng)
                   for p in parts if p.size)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))
