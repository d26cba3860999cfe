"""`torch.save` files read without torch, through a restricted unpickler.

Both container formats:
  zip (torch >= 1.6): `<prefix>/data.pkl` + `<prefix>/data/<key>` (one raw storage per entry)
    + `<prefix>/byteorder`;
  legacy (`_use_new_zipfile_serialization=False`, old .pth): pickles of the magic number, the protocol
    version and a sys_info dict, then the object pickle, then a pickled list of storage keys, then
    each storage as an 8-byte element count followed by its raw bytes, in key order.
Pickles are read by an unpickler that only admits tensor rebuilds and plain containers, so a hostile
file cannot run code (pickle's `find_class` is the only door to Python callables; we keep it locked).

References: torch/serialization.py (`_save`, `_legacy_save`, `_load`, `_legacy_load`),
torch/_utils.py (`_rebuild_tensor_v2`), torch/_weights_only_unpickler.py (the same idea inside torch).

This module must never import torch: it is what lets us convert without it.
"""
from __future__ import annotations

import builtins
import collections
import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .safetensors_io import bf16_to_f32
from .tensors import CheckpointError, UnsafeCheckpointError, in_folder, load_sharded

# PyTorch pickles: restricted unpickling

# torch storage class name -> numpy dtype of one element. BFloat16 is read as
# raw uint16 and upcast to float32 after the tensor is cut out.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("f8"), "FloatStorage": np.dtype("f4"), "HalfStorage": np.dtype("f2"),
    "BFloat16Storage": np.dtype("u2"),
    "LongStorage": np.dtype("i8"), "IntStorage": np.dtype("i4"), "ShortStorage": np.dtype("i2"),
    "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("c8"), "ComplexDoubleStorage": np.dtype("c16"),
}
# torch dtype attributes (`torch.float32` pickles as the global `torch float32`).
_TORCH_DTYPES = ("float64", "double", "float32", "float", "float16", "half", "bfloat16", "int64", "long",
                 "int32", "int", "int16", "short", "int8", "uint8", "bool")


class _Frozen:
    """Base for every object a pickle can reach. Pickle's BUILD opcode sets attributes
    (or calls __setstate__) on whatever is on its stack, so a hostile file could
    otherwise rewrite, say, the shared FloatStorage marker's dtype and corrupt every
    later load in the process. Slots without __dict__, and no setattr, forbid it."""
    __slots__ = ()

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"{type(self).__name__} objects are read-only")

    def _set(self, **attrs):
        for k, v in attrs.items():
            object.__setattr__(self, k, v)


class _Admitted(_Frozen):
    """A read-only stand-in for one admitted callable global."""
    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._set(_fn=fn)

    def __call__(self, *args):
        return self._fn(*args)


class _StorageType(_Frozen):
    """Stands in for a `torch.<X>Storage` class: only its element dtype matters."""
    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self._set(name=name, dtype=dtype)


class _Storage(_Frozen):
    """One flat storage of `numel` elements; its bytes are fetched on first use.

    `flat()` returns a 1-D array of however many elements the file really
    holds (fewer than numel if it is truncated; tensors check their own range).
    """
    __slots__ = ("key", "dtype", "numel", "bf16", "_read", "_flat")

    def __init__(self, key, dtype, numel, read, bf16=False):
        self._set(key=key, dtype=dtype, numel=numel, bf16=bf16, _read=read, _flat=None)

    def flat(self) -> np.ndarray:
        if self._flat is None:
            raw = self._read()  # uint8 array (maybe a memmap slice)
            n = min(len(raw) // self.dtype.itemsize, self.numel)
            self._set(_flat=raw[: n * self.dtype.itemsize].view(self.dtype))
        return self._flat


class _StorageView(_Frozen):
    """A legacy-format view: elements [offset, offset + numel) of a root storage."""
    __slots__ = ("root", "offset", "numel", "key", "dtype", "bf16")

    def __init__(self, root, offset, numel, key):
        self._set(root=root, offset=offset, numel=numel, key=key, dtype=root.dtype, bf16=root.bf16)

    def flat(self) -> np.ndarray:
        return self.root.flat()[self.offset: self.offset + self.numel]


class _LazyTensor(_Frozen):
    """What `_rebuild_tensor_v2` returns while unpickling: a recipe, cut out later."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self._set(storage=storage, offset=offset, size=size, stride=stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    # torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    # backward_hooks[, metadata]); requires_grad and hooks don't matter for inference.
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data  # an nn.Parameter is just its tensor for us


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles spell `bytes` objects as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only admitted as encode(str, 'latin1')")
    return text.encode("latin1")


# Everything find_class can hand out; all of it read-only (see _Frozen). torch dtype
# globals (`torch.float32`) come back as their names: plain immutable strings.
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _Admitted(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Admitted(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Admitted(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Admitted(_rebuild_parameter),
    ("torch", "Size"): _Admitted(tuple),
    ("collections", "OrderedDict"): _Admitted(collections.OrderedDict),
    ("_codecs", "encode"): _Admitted(_codecs_encode),
    **{(mod, name): _Admitted(getattr(builtins, name))
       for mod in ("builtins", "__builtin__")  # __builtin__: Python 2 era pickles
       for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray")},
    **{("torch", name): _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
    **{("torch", name): name for name in _TORCH_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose only callables are tensor rebuilds and containers."""

    def __init__(self, f, file: Path, persistent_load=None):
        super().__init__(f)
        self._file, self._persistent_load = file, persistent_load

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(f"{self._file}: refusing to load global {module}.{name}: only tensors and plain "
                                  "containers are allowed in a checkpoint (the file may be malicious)") from None

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise CheckpointError(f"{self._file}: unexpected persistent id {pid!r} in pickle")
        return self._persistent_load(pid)


def _unpickle(f, file: Path, persistent_load=None, what="pickle"):
    try:
        return _RestrictedUnpickler(f, file, persistent_load).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, UnicodeDecodeError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{file}: cannot read {what} (truncated or corrupt?): {type(e).__name__}: {e}") from None


def _storage_type(pid, file: Path) -> _StorageType:
    st = pid[1]
    if not isinstance(st, _StorageType):
        raise CheckpointError(f"{file}: persistent id {pid!r} does not name a torch storage type")
    return st


# ----------------------------------------------------------------------------
# PyTorch pickles: the two container formats

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def load_torch(path) -> dict:
    """Read a `torch.save` checkpoint (zip or legacy format) without torch.

    `path` is a file, a sharded `pytorch_model.bin.index.json`, or a directory
    holding `pytorch_model.bin` or `pytorch_model.bin.index.json`.

    Returns the saved top-level dict with every tensor replaced by a C-contiguous
    numpy array (a copy, so non-contiguous and shared-storage tensors come out
    independent). BFloat16 tensors are upcast to float32. Nested dicts stay
    nested: if the file holds e.g. {"state_dict": {...}, "epoch": 3}, picking
    out the state dict is the caller's job.

    Only tensors and plain containers are unpickled; any other global in the
    pickle (os.system, builtins.eval, ...) raises CheckpointError before it can
    run. Truncated or corrupt files raise CheckpointError naming the file (and
    the tensor whose bytes are missing).
    """
    path = in_folder(path, "pytorch_model.bin")
    if path.name.endswith(".index.json"):
        return load_sharded(path, _load_torch_file)
    return _load_torch_file(path)


def _load_torch_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        obj = _load_torch_zip(path)
    else:
        obj = _load_torch_legacy(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: top-level object is a {type(obj).__name__}, expected a dict of tensors")
    try:
        return _materialize_tree(obj, path, "")
    except RecursionError:
        raise CheckpointError(f"{path}: containers nested too deeply") from None


def _load_torch_zip(path: Path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable zip archive (truncated or corrupt?): {e}") from None
    with zf:
        pkls = [n for n in zf.namelist() if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if len(pkls) != 1:
            raise CheckpointError(f"{path}: expected exactly one <prefix>/data.pkl in the zip, found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in zf.namelist():
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
        try:
            data_pkl = zf.read(pkls[0])
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError(f"{path}: cannot read {pkls[0]}: {e}") from None
        infos = {i.filename: i for i in zf.infolist()}

    file_size = path.stat().st_size
    mm = None
    storages: dict[str, _Storage] = {}

    def read_entry(name):
        """Raw bytes of one zip entry; stored (uncompressed) ones straight from a memory map."""
        nonlocal mm
        info = infos.get(name)
        if info is None:
            return np.zeros(0, np.uint8)  # missing: every tensor on it will report itself
        if info.compress_type != zipfile.ZIP_STORED:
            try:
                with zipfile.ZipFile(path) as z:
                    return np.frombuffer(z.read(name), np.uint8)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise CheckpointError(f"{path}: cannot read zip entry {name}: {e}") from None
        with open(path, "rb") as f:  # the local header's name/extra lengths give the data offset
            f.seek(info.header_offset)
            local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{path}: corrupt local header for zip entry {name}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        stop = min(start + info.file_size, file_size)
        if stop <= start:
            return np.zeros(0, np.uint8)
        if mm is None:
            mm = np.memmap(path, dtype=np.uint8, mode="r")
        return mm[start:stop]

    def persistent_load(pid):
        # ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{path}: unsupported persistent id {pid!r}")
        st, key, numel = _storage_type(pid, path), str(pid[2]), pid[4]
        if key not in storages:
            dtype = st.dtype.newbyteorder("<" if byteorder == "little" else ">")
            entry = f"{prefix}data/{key}"
            storages[key] = _Storage(f"{entry} in {path.name}", dtype, int(numel), lambda e=entry: read_entry(e),
                                     bf16=st.name == "BFloat16Storage")
        return storages[key]

    return _unpickle(io.BytesIO(data_pkl), path, persistent_load, what=pkls[0])


def _load_torch_legacy(path: Path):
    with open(path, "rb") as f:
        try:
            magic = _unpickle(f, path, what="legacy magic number")
        except UnsafeCheckpointError:
            raise
        except CheckpointError:
            magic = None
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither the zip format nor the legacy "
                                  "format's magic number)")
        protocol = _unpickle(f, path, what="legacy protocol version")
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy protocol version {protocol!r}")
        sys_info = _unpickle(f, path, what="legacy sys_info")
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
            raise CheckpointError(f"{path}: big-endian legacy checkpoints are not supported")

        storages: dict[str, _Storage] = {}
        offsets: dict[str, tuple[int, int]] = {}  # key -> (byte start, bytes present), filled below

        def persistent_load(pid):
            # ('storage', storage_type, root_key, location, numel, view_metadata)
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                raise CheckpointError(f"{path}: unsupported persistent id {pid!r}")
            st, key, numel, view = _storage_type(pid, path), str(pid[2]), pid[4], pid[5]
            if key not in storages:
                storages[key] = _Storage(f"{key} in {path.name}", st.dtype, int(numel),
                                         lambda k=key: read_legacy(k), bf16=st.name == "BFloat16Storage")
            root = storages[key]
            if view is None:
                return root
            view_key, offset, view_size = view  # an old-style storage view into the root
            return _StorageView(root, int(offset), int(view_size), f"{view_key} in {path.name}")

        obj = _unpickle(f, path, persistent_load, what="legacy object pickle")
        keys = _unpickle(f, path, what="legacy storage key list")
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise CheckpointError(f"{path}: legacy storage key list is malformed")
        # Walk the storages: 8-byte little-endian element count, then the bytes.
        pos, file_size = f.tell(), path.stat().st_size
        for key in keys:
            if key not in storages:
                raise CheckpointError(f"{path}: storage {key} is listed but no tensor uses it")
            count = int.from_bytes(_read_at(f, pos, 8).ljust(8, b"\0"), "little") if pos + 8 <= file_size else 0
            nbytes = count * storages[key].dtype.itemsize
            start = pos + 8
            offsets[key] = (start, max(0, min(nbytes, file_size - start)))
            pos = start + nbytes

    mm = None

    def read_legacy(key):
        nonlocal mm
        if key not in offsets:
            return np.zeros(0, np.uint8)
        start, n = offsets[key]
        if n == 0:
            return np.zeros(0, np.uint8)
        if mm is None:
            mm = np.memmap(path, dtype=np.uint8, mode="r")
        return mm[start: start + n]

    return obj


def _read_at(f, pos, n):
    f.seek(pos)
    return f.read(n)


def _materialize_tree(obj, path: Path, prefix: str):
    """Replace every _LazyTensor in a (nested) container by its numpy array."""
    if isinstance(obj, _LazyTensor):
        return _materialize(obj, path, prefix or "<top>")
    if isinstance(obj, dict):
        items = [(k, _materialize_tree(v, path, f"{prefix}.{k}" if prefix else str(k))) for k, v in obj.items()]
        return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize_tree(v, path, f"{prefix}[{i}]") for i, v in enumerate(obj))
    return obj


def _materialize(t: _LazyTensor, path: Path, name: str) -> np.ndarray:
    st = t.storage
    if not isinstance(st, (_Storage, _StorageView)):
        raise CheckpointError(f"{path}: tensor {name!r} is not backed by a storage")
    try:
        size = tuple(int(s) for s in t.size)
        stride = tuple(int(s) for s in t.stride)
        offset = int(t.offset)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: tensor {name!r} has a malformed size/stride/offset") from None
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise CheckpointError(f"{path}: tensor {name!r}: bad size {size} / stride {stride} / offset {offset}")
    dtype = st.dtype
    if 0 in size:
        arr = np.zeros(size, dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))  # last element the tensor touches
        if last >= st.numel:
            raise CheckpointError(f"{path}: tensor {name!r} (size {size}, stride {stride}, offset {offset}) reaches "
                                  f"element {last} of storage {st.key}, which has only {st.numel}")
        flat = st.flat()
        if last >= len(flat):
            raise CheckpointError(f"{path}: file is truncated: tensor {name!r} needs {(last + 1) * dtype.itemsize} "
                                  f"bytes of storage {st.key} but only {len(flat) * dtype.itemsize} are present")
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                               strides=[s * dtype.itemsize for s in stride], writeable=False)
        arr = np.array(view, dtype=dtype.newbyteorder("="), order="C")  # copy: contiguous, native order
    if st.bf16:
        arr = bf16_to_f32(arr)
    return arr

