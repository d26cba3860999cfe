"""`torch.save` files read without torch, through a restricted unpickler.

Both container formats:
  zip (torch >= 1.6): `<prefix>/data.pkl` + `<prefix>/data/<key>` (one raw storage per entry)
    + `<prefix>/byteorder`;
  legacy (`_use_new_zipfile_serialization=False`, old .pth): pickles of the magic number, the protocol
    version and a sys_info dict, then the object pickle, then a pickled list of storage keys, then
    each storage as an 8-byte element count followed by its raw bytes, in key order.
Pickles are read by an unpickler that only admits tensor rebuilds and plain containers, so a hostile
file cannot run code (pickle's `find_class` is the only door to Python callables; we keep it locked),
after a dry run (`ocr_base.pickle_scan`) has bounded what they cost. Sizes, strides, offsets and
element counts must be plain integers; a tensor must lie inside its storage and the storage inside the
file (compressed members: inside MAX_INFLATED); all tensors together within OUTPUT_FACTOR x the data.

References: torch/serialization.py (`_save`, `_legacy_save`, `_load`, `_legacy_load`),
torch/_utils.py (`_rebuild_tensor_v2`), torch/_weights_only_unpickler.py (the same idea inside torch).

This module must never import torch: it is what lets us convert without it.
"""
from __future__ import annotations

import builtins
import collections
import contextlib
import io
import lzma
import mmap
import pickle
import reprlib
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .pickle_scan import MAX_DEPTH, scan_pickle
from .safetensors_io import bf16_to_f32
from .tensors import CheckpointError, UnsafeCheckpointError, in_folder, load_sharded, regular_file

# Budgets (module docstring of ocr_base.pickle_scan for the pickle's own):
MAX_RANK = 8                   # tensor dimensions
MAX_PICKLE_BYTES = 64 << 20    # data.pkl; a 30,000-tensor state dict pickles to ~3 MB
MAX_INFLATED = 256 << 20       # all compressed zip members together (torch.save never compresses)
OUTPUT_FACTOR = 4              # all tensors together <= 4x the data bytes (+1 MiB): tied copies, bf16 -> f32
# What zipfile and its decompressors raise for damaged archives (bad CRC, method 99, encryption, ...).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
               RuntimeError, zlib.error, lzma.LZMAError, struct.error, OverflowError, KeyError, IndexError,
               TypeError, MemoryError)
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80

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


def _bytearray(data=b""):
    # bytearray(n) would allocate n bytes: only copies of bytes already in the file are admitted.
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("bytearray is only admitted on bytes")
    return bytearray(data)


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
       for name in ("dict", "list", "tuple", "set", "frozenset")},
    **{(mod, "bytearray"): _Admitted(_bytearray) for mod in ("builtins", "__builtin__")},
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
    """Scan (bounded costs, see ocr_base.pickle_scan), then unpickle the same bytes. f: seekable."""
    start = f.tell()
    scan_pickle(f, file, what, error=CheckpointError)
    f.seek(start)
    try:
        return _RestrictedUnpickler(f, file, persistent_load).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, UnicodeDecodeError, OverflowError, RecursionError, MemoryError) as e:
        raise CheckpointError(f"{file}: cannot read {what} (truncated or corrupt?): {type(e).__name__}: {e}") from None


def _storage_type(pid, file: Path) -> _StorageType:
    st = pid[1]
    if not isinstance(st, _StorageType):
        raise CheckpointError(f"{file}: persistent id {_short.repr(pid)} does not name a torch storage type")
    if not isinstance(pid[2], str) or not _is_count(pid[4]):
        raise CheckpointError(f"{file}: persistent id {_short.repr(pid)}: key must be a string and the element "
                              "count a non-negative integer")
    return st


def _is_count(v) -> bool:
    """A size, stride, offset or element count: a plain int (not bool) from 0 to 2^48."""
    return type(v) is int and 0 <= v <= 1 << 48


class _Budget:
    """Bytes all tensors of one file may take together (OUTPUT_FACTOR x the data bytes + 1 MiB)."""

    def __init__(self, data_bytes):
        self.data, self.used = data_bytes, 0

    def spend(self, nbytes, file, name):
        self.used += nbytes
        if self.used > OUTPUT_FACTOR * self.data + (1 << 20):
            raise CheckpointError(f"{file}: tensor {name!r}: the tensors would take {self.used:,} bytes, over "
                                  f"{OUTPUT_FACTOR}x the {self.data:,} bytes of data in the file (storages "
                                  "referenced over and over?)")


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
    size = regular_file(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    budget = _Budget(size)
    with contextlib.ExitStack() as open_files:  # the zip stays open while its storages are read
        if magic == b"PK\x03\x04":
            obj = _load_torch_zip(path, budget, open_files)
        else:
            obj = _load_torch_legacy(path)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: top-level object is a {type(obj).__name__}, expected a dict of tensors")
        try:
            return _materialize_tree(obj, path, budget)
        except RecursionError:
            raise CheckpointError(f"{path}: containers nested too deeply") from None


def _zip_read(zf: zipfile.ZipFile, path: Path, name: str, cap: int, budget=None) -> bytes:
    """One zip member, inflated to at most `cap` bytes (its declared size is checked first)."""
    try:
        info = zf.getinfo(name)
        if info.file_size > cap:
            raise CheckpointError(f"{path}: zip entry {name} declares {info.file_size:,} bytes, over the "
                                  f"limit of {cap:,}")
        if budget is not None:
            budget.data += info.file_size
        with zf.open(info) as f:
            return f.read(cap + 1)  # the member stream stops at its declared size (and checks its CRC)
    except CheckpointError:
        raise
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: cannot read zip entry {name} (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from None


def _load_torch_zip(path: Path, budget: _Budget, open_files: contextlib.ExitStack):
    try:
        zf = open_files.enter_context(zipfile.ZipFile(path))
        infos = {i.filename: i for i in zf.infolist()}
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable zip archive (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from None
    pkls = [n for n in infos if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(pkls) != 1:
        raise CheckpointError(f"{path}: expected exactly one <prefix>/data.pkl in the zip, found "
                              f"{_short.repr(pkls)}")
    prefix = pkls[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in infos:
        byteorder = _zip_read(zf, path, prefix + "byteorder", 16).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
    data_pkl = _zip_read(zf, path, pkls[0], MAX_PICKLE_BYTES)
    inflated = [0]

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
            data = _zip_read(zf, path, name, MAX_INFLATED - inflated[0], budget)
            inflated[0] += len(data)
            return np.frombuffer(data, np.uint8)
        try:
            with open(path, "rb") as f:  # the local header's name/extra lengths give the data offset
                f.seek(info.header_offset)
                local = f.read(30)
        except (OSError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{path}: cannot read zip entry {name}: {e}") from None
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
            raise CheckpointError(f"{path}: unsupported persistent id {_short.repr(pid)}")
        st, key, numel = _storage_type(pid, path), pid[2], pid[4]
        if key not in storages:
            dtype = st.dtype.newbyteorder("<" if byteorder == "little" else ">")
            entry = f"{prefix}data/{key}"
            storages[key] = _Storage(f"{entry} in {path.name}", dtype, numel, lambda e=entry: read_entry(e),
                                     bf16=st.name == "BFloat16Storage")
        return storages[key]

    return _unpickle(io.BytesIO(data_pkl), path, persistent_load, what=pkls[0])


def _load_torch_legacy(path: Path):
    try:
        with open(path, "rb") as fd:
            f = mmap.mmap(fd.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (cannot map it: {e})") from None
    with f:
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
                raise CheckpointError(f"{path}: unsupported persistent id {_short.repr(pid)}")
            st, key, numel, view = _storage_type(pid, path), pid[2], pid[4], pid[5]
            if key not in storages:
                storages[key] = _Storage(f"{key} in {path.name}", st.dtype, numel,
                                         lambda k=key: read_legacy(k), bf16=st.name == "BFloat16Storage")
            root = storages[key]
            if view is None:
                return root
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and _is_count(view[1]) and _is_count(view[2])):
                raise CheckpointError(f"{path}: malformed storage view {_short.repr(view)}")
            view_key, offset, view_size = view  # an old-style storage view into the root
            return _StorageView(root, offset, view_size, f"{view_key} in {path.name}")

        obj = _unpickle(f, path, persistent_load, what="legacy object pickle")
        keys = _unpickle(f, path, what="legacy storage key list")
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise CheckpointError(f"{path}: legacy storage key list is malformed")
        # Walk the storages: 8-byte little-endian element count, then the bytes.
        pos, file_size = f.tell(), path.stat().st_size
        for key in keys:
            if key not in storages:
                raise CheckpointError(f"{path}: storage {key} is listed but no tensor uses it")
            count = int.from_bytes(f[pos: pos + 8], "little") if pos + 8 <= file_size else 0
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


def _materialize_tree(obj, path: Path, budget: _Budget):
    """Replace every _LazyTensor in a (nested) container by its numpy array.

    Each object is converted once (by identity), so a DAG of shared containers costs its size, not
    the size of its unfolding; a value referenced twice comes out as one shared object, as in torch.
    """
    done: dict[int, tuple] = {}

    def walk(o, name, depth):
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: containers nested too deeply (over {MAX_DEPTH} levels)")
        if id(o) in done:
            return done[id(o)][0]
        if isinstance(o, _LazyTensor):
            out = _materialize(o, path, name or "<top>", budget)
        elif isinstance(o, dict):
            items = [(k, walk(v, _child(name, k), depth + 1)) for k, v in o.items()]
            out = collections.OrderedDict(items) if isinstance(o, collections.OrderedDict) else dict(items)
        elif isinstance(o, (list, tuple)):
            out = type(o)(walk(v, f"{name}[{i}]", depth + 1) for i, v in enumerate(o))
        else:
            return o
        done[id(o)] = (out, o)  # keep o alive: its id must not be reused while we walk
        return out

    return walk(obj, "", 0)


def _child(prefix: str, key) -> str:
    k = key if isinstance(key, str) else _short.repr(key)
    return f"{prefix}.{k}" if prefix else k


def _materialize(t: _LazyTensor, path: Path, name: str, budget: _Budget) -> np.ndarray:
    st = t.storage
    if not isinstance(st, (_Storage, _StorageView)):
        raise CheckpointError(f"{path}: tensor {name!r} is not backed by a storage")
    size, stride, offset = t.size, t.stride, t.offset
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
            and len(size) <= MAX_RANK and all(map(_is_count, size)) and all(map(_is_count, stride))
            and _is_count(offset)):
        raise CheckpointError(f"{path}: tensor {name!r}: bad size {_short.repr(size)} / stride "
                              f"{_short.repr(stride)} / offset {_short.repr(offset)} (non-negative integers, "
                              f"rank <= {MAX_RANK})")
    size, stride = tuple(size), tuple(s if n > 1 else 0 for n, s in zip(size, stride))  # a length-1 dim's stride is unused
    dtype = st.dtype
    numel = int(np.prod(size, dtype=object)) if size else 1
    if 0 in size:
        if np.prod([n for n in size if n], dtype=object) > 1 << 48:
            raise CheckpointError(f"{path}: tensor {name!r}: size {size} is too large")
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
        # Overlapping strides (torch's `expand`: stride 0) are legal, but can turn a few bytes into
        # gigabytes: the budget, not the storage, bounds what they may take.
        budget.spend(numel * dtype.itemsize * (2 if st.bf16 else 1), path, name)
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                               strides=[s * dtype.itemsize for s in stride], writeable=False)
        arr = np.array(view, dtype=dtype.newbyteorder("="), order="C")  # copy: contiguous, native order
    if st.bf16:
        arr = bf16_to_f32(arr)
    return arr
