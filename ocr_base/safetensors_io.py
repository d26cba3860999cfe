"""safetensors without the `safetensors` package on the read side: memory-mapped, validated.

The format: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
then the raw little-endian bytes. We parse the header ourselves so every tensor can be a read-only view
into one `np.memmap` of the file (a 1.3 GB checkpoint costs no RAM until a page is touched), and so a
bad file gets an error naming the file and the tensor. Writing goes through `safetensors.numpy.save_file`
and `ocr_base.files.atomic_write`.

References: the safetensors format spec (huggingface/safetensors README).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_write
from .tensors import CheckpointError, in_folder, load_sharded, regular_file

# Budgets checked before the header is parsed: HF's own reader refuses headers over 100 MB; a
# 30,000-tensor model has a header of ~3 MB. JSON parsing costs up to ~20x the header in memory.
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
MAX_RANK = 8
MAX_DIM = 1 << 48


# safetensors dtype name -> little-endian numpy dtype. BF16 has no numpy dtype: we read it as raw
# uint16 and upcast it to float32 (bf16_to_f32), or keep the bits (BFloat16Array, keep_bf16=True).
_ST_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32. Exact: bf16 is the top half of an f32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class BFloat16Array:
    """A bfloat16 tensor kept as its raw bits: `bits` is a uint16 array of the tensor's shape
    (the top 16 bits of each float32). NumPy has no bfloat16, so this tags the bits as bf16 for
    `save_safetensors` and for readers that compute on them without an upcast."""
    bits: np.ndarray

    @property
    def shape(self):
        return self.bits.shape

    def to_float32(self) -> np.ndarray:
        return bf16_to_f32(self.bits)


def load_safetensors(path, mmap: bool = True, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """Read a safetensors checkpoint into {name: array}.

    `path` is a `.safetensors` file, a sharded `*.safetensors.index.json`, or a
    directory holding `model.safetensors` or `model.safetensors.index.json`.

    With mmap=True (default) each array is a read-only view into a memory map of
    the file; with mmap=False each is an independent, writable in-memory copy.
    BF16 tensors are upcast to float32 (numpy has no bfloat16), which means a
    copy in memory either way; with keep_bf16=True they come back as
    BFloat16Array instead, holding the (memory-mapped) uint16 bits. Arrays that the file stores misaligned for their
    dtype are copied too, so Numba kernels can take any returned array.

    Raises FileNotFoundError if nothing is there, and CheckpointError (a
    ValueError) naming the file and tensor for a malformed or truncated file.
    """
    path = in_folder(path, "model.safetensors")
    if path.name.endswith(".index.json"):
        return load_sharded(path, lambda p: _load_safetensors_file(p, mmap, keep_bf16))
    return _load_safetensors_file(path, mmap, keep_bf16)


def safetensors_metadata(path) -> dict[str, str]:
    """The `__metadata__` string table of a safetensors file ({} if it has none)."""
    header, _ = _read_safetensors_header(Path(path))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: __metadata__ is not a JSON object")
    return meta


def _read_safetensors_header(path: Path) -> tuple[dict, int]:
    """-> (header dict, byte offset where the data section starts)."""
    size = regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                raise CheckpointError(f"{path}: safetensors header claims {n} bytes but the file has only "
                                      f"{size - 8} after the length field (truncated, or not a safetensors file)")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: safetensors header of {n:,} bytes is over the limit of "
                                      f"{MAX_HEADER_BYTES:,}")
            text = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError: bad UTF-8 or JSON
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise CheckpointError(f"{path}: safetensors header lists {len(header):,} tensors, over the limit of "
                              f"{MAX_TENSORS:,}")
    return header, 8 + n


def _load_safetensors_file(path: Path, mmap: bool, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    header, data_start = _read_safetensors_header(path)
    data_len = path.stat().st_size - data_start

    # Validate every entry before touching data: dtype, shape, byte range.
    entries = []  # (begin, end, name, dtype_name, shape)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise CheckpointError(f"{path}: tensor {name!r}: header entry must have dtype, shape and data_offsets")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in _ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r}: unsupported dtype {str(dt)[:40]!r} "
                                  f"(supported: {', '.join(_ST_DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK
                and all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)):
            raise CheckpointError(f"{path}: tensor {name!r}: bad shape {str(shape)[:80]} (at most {MAX_RANK} "
                                  f"integers from 0 to 2^48)")
        if 0 in shape and np.prod([s for s in shape if s], dtype=object) > MAX_DIM:
            raise CheckpointError(f"{path}: tensor {name!r}: shape {shape} is too large, even empty")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1]):
            raise CheckpointError(f"{path}: tensor {name!r}: bad data_offsets {str(offs)[:80]}")
        nbytes = _ST_DTYPES[dt].itemsize
        for s in shape:  # Python ints: a product of huge dims cannot wrap around to a small one
            nbytes *= s
        if offs[1] - offs[0] != nbytes:
            raise CheckpointError(f"{path}: tensor {name!r}: shape {tuple(shape)} of {dt} needs {nbytes} bytes "
                                  f"but data_offsets {offs} span {offs[1] - offs[0]}")
        entries.append((offs[0], offs[1], name, dt, tuple(shape)))

    # Ranges may be listed in any order, but must not overlap or run off the end.
    prev_end, prev_name = 0, None
    for begin, end, name, _, _ in sorted(entries):
        if begin < prev_end:
            raise CheckpointError(f"{path}: tensor {name!r} (bytes {begin}..{end}) overlaps tensor {prev_name!r} "
                                  f"(ends at {prev_end})")
        if end > data_len:
            raise CheckpointError(f"{path}: file is truncated: tensor {name!r} needs data bytes {begin}..{end} "
                                  f"but the file holds only {data_len} bytes of data")
        prev_end, prev_name = max(prev_end, end), name

    buf = np.memmap(path, dtype=np.uint8, mode="r") if entries else None
    out = {}
    for begin, end, name, dt, shape in entries:
        raw = np.asarray(buf[data_start + begin: data_start + end])  # plain ndarray view, memmap as its base
        arr = raw.view(_ST_DTYPES[dt]).reshape(shape)
        if dt == "BF16" and not keep_bf16:
            arr = bf16_to_f32(arr)
        elif not mmap or not arr.flags.aligned:
            arr = np.array(arr)
        if mmap:
            arr.flags.writeable = False
        out[name] = BFloat16Array(arr) if dt == "BF16" and keep_bf16 else arr
    return out


def save_safetensors(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> None:
    """Write {name: array} to a safetensors file (C-contiguous copies where needed).
    A BFloat16Array value is written as a BF16 tensor.

    The file is written next to its destination and then renamed over it, so a
    reader that has the old file memory-mapped keeps a consistent view.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {}
    for name, a in tensors.items():
        if isinstance(a, BFloat16Array):
            a = a.bits
        elif not isinstance(a, np.ndarray):
            raise TypeError(f"save_safetensors: tensor {name!r} is a {type(a).__name__}, expected a numpy array")
        arrays[name] = np.ascontiguousarray(a)
    if metadata is not None:
        bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad:
            raise TypeError(f"save_safetensors: metadata must map str to str; bad entries: {bad}")
    bf16 = {name for name, a in tensors.items() if isinstance(a, BFloat16Array)}
    if bf16:
        atomic_write(path, lambda tmp: _write_safetensors(arrays, bf16, metadata, tmp))
    else:
        atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=metadata))


def _write_safetensors(arrays: dict[str, np.ndarray], bf16: set, metadata, filename) -> None:
    """Write the format here, because safetensors.numpy cannot express BF16. Tensors go widest
    dtype first (then by name), so each starts aligned to its item size, as the Rust writer does;
    the header is padded with spaces to a multiple of 8 bytes."""
    st_name = {v: k for k, v in _ST_DTYPES.items() if k != "BF16"}  # <u2 -> U16 (BF16 by name)
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, offset = {}, 0
    for k in order:
        a = arrays[k]
        dt = "BF16" if k in bf16 else st_name.get(a.dtype.newbyteorder("<"))
        if dt is None:
            raise TypeError(f"save_safetensors: tensor {k!r} has unsupported dtype {a.dtype}")
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(filename, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for k in order:
            f.write(np.ascontiguousarray(arrays[k], arrays[k].dtype.newbyteorder("<")).data)
