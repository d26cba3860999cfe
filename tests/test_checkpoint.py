"""ocr_base.checkpoint against torch / safetensors themselves, on files they wrote.

torch writes the files here (both serialisation formats); our reader must give
exactly what `torch.load(weights_only=True)` gives, refuse hostile pickles
without running them, and name the file (and tensor) when a file is damaged.
"""
import collections
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.numpy import load_file as st_load_file  # noqa: E402
from safetensors.numpy import save_file as st_save_file  # noqa: E402

from ocr_base.checkpoint import (  # noqa: E402
    CheckpointError, UnsafeCheckpointError, load_safetensors, load_torch, safetensors_metadata, save_safetensors,
)

FORMATS = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}}


def _as_numpy(t):
    """What our reader promises for a torch tensor: same values, bf16 upcast to float32."""
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()


def _assert_same(ours, ref, name="<top>"):
    if isinstance(ref, torch.Tensor):
        want = _as_numpy(ref)
        assert isinstance(ours, np.ndarray), name
        assert ours.dtype == want.dtype, (name, ours.dtype, want.dtype)
        assert ours.shape == want.shape, (name, ours.shape, want.shape)
        assert ours.flags.c_contiguous, name
        np.testing.assert_array_equal(ours, want, err_msg=name)
    elif isinstance(ref, dict):
        assert type(ours) is type(ref), name
        assert list(ours) == list(ref), name
        for k in ref:
            _assert_same(ours[k], ref[k], f"{name}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), name
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same(a, b, f"{name}[{i}]")
    else:
        assert ours == ref, name


def _rich_state_dict():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    shared = torch.arange(20, dtype=torch.float32)
    sd = collections.OrderedDict()
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        sd[f"w_{dt}".replace("torch.", "")] = torch.randn(3, 5, generator=g).to(dt)
    sd["i64"] = torch.randint(-2**40, 2**40, (7,), generator=g, dtype=torch.int64)
    sd["i32"] = torch.randint(-2**30, 2**30, (2, 3), generator=g, dtype=torch.int32)
    sd["i16"] = torch.randint(-2**14, 2**14, (4,), generator=g, dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([[True, False], [False, True]])
    sd["transposed"] = base.t()                       # non-contiguous, stride (1, 8)
    sd["strided"] = base[1:5:2, ::3]                  # offset + steps
    sd["expanded"] = torch.randn(1, 4, generator=g).expand(3, 4)  # stride 0
    sd["base"] = base                                 # shares storage with the two above
    sd["shared_a"] = shared[:10]                      # two views of one storage
    sd["shared_b"] = shared[5:].view(3, 5)
    sd["scalar"] = torch.tensor(3.5)                  # 0-d
    sd["num_batches_tracked"] = torch.tensor(25301)   # 0-d int64, as BatchNorm saves it
    sd["empty"] = torch.zeros(0, 3)
    sd["empty_i"] = torch.zeros(2, 0, dtype=torch.int64)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["nested"] = collections.OrderedDict(inner={"x": torch.ones(2), "y": [torch.zeros(1), 7, "s"]}, n=1.5)
    return sd


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_roundtrip_matches_torch_load(tmp_path, fmt):
    sd = _rich_state_dict()
    path = tmp_path / "weights.pt"
    torch.save(sd, path, **FORMATS[fmt])
    ours = load_torch(path)
    ref = torch.load(path, weights_only=True)
    _assert_same(ours, ref)
    # views of one storage come out as independent arrays
    ours["base"][0, 0] = 1234.0
    assert ours["transposed"][0, 0] != 1234.0
    ours["shared_a"][7] = -1.0
    assert ours["shared_b"][0, 2] == 7.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_directory_and_sharded_bin(tmp_path, fmt):
    a = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3)}
    b = {"b.weight": torch.randn(2, 2, dtype=torch.float16)}
    torch.save(a, tmp_path / "pytorch_model-00001-of-00002.bin", **FORMATS[fmt])
    torch.save(b, tmp_path / "pytorch_model-00002-of-00002.bin", **FORMATS[fmt])
    weight_map = {**{k: "pytorch_model-00001-of-00002.bin" for k in a},
                  **{k: "pytorch_model-00002-of-00002.bin" for k in b}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ours = load_torch(tmp_path)  # a directory finds the index
    _assert_same(ours, {**a, **b})
    # an index naming a tensor its shard lacks is an error naming that tensor
    weight_map["c.missing"] = "pytorch_model-00002-of-00002.bin"
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="c.missing"):
        load_torch(tmp_path / "pytorch_model.bin.index.json")


def test_zip_any_prefix_and_compressed_entries(tmp_path):
    sd = {"w": torch.randn(4, 3), "i": torch.arange(5)}
    buf = io.BytesIO()
    torch.save(sd, buf)  # file-like target: the archive folder is "archive"
    raw = tmp_path / "raw.bin"
    raw.write_bytes(buf.getvalue())
    assert any(n.startswith("archive/") for n in zipfile.ZipFile(raw).namelist())
    _assert_same(load_torch(raw), sd)
    # the same archive re-packed with deflate and another prefix still loads
    packed = tmp_path / "packed.bin"
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename.replace("archive/", "my-model/", 1), src.read(info.filename))
    _assert_same(load_torch(packed), sd)


def test_zip_big_endian_byteorder_record(tmp_path):
    # torch on a big-endian machine writes byteorder "big" and big-endian storages.
    sd = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    little = tmp_path / "little.pt"
    torch.save(sd, little)
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(info.filename, data)
    ours = load_torch(big)
    _assert_same(ours, sd)
    assert ours["a"].dtype.isnative


def test_craft_checkpoint_matches_torch_load():
    m = pytest.importorskip("easyocr_en_models")
    path = Path(m.model_dir()) / "craft_mlt_25k.pth"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    ours = load_torch(path)
    ref = torch.load(path, weights_only=True, map_location="cpu")  # saved from CUDA tensors
    assert list(ours) == list(ref)
    for k in ref:
        _assert_same(ours[k], ref[k], k)


# ---------------------------------------------------------------- hostile pickles

def _payloads(marker: Path):
    """Pickles that would create `marker` if their globals were honoured."""
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"

    class Reduce:  # the classic __reduce__ trick, pickled for real
        def __reduce__(self):
            import os
            return (os.system, (cmd,))

    return {
        "os.system": b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd.encode() + b"\x85R.",
        "posix.system": b"cposix\nsystem\n(V" + cmd.encode() + b"\ntR.",                # protocol 0
        "builtins.eval": b"\x80\x02cbuiltins\neval\nX" + struct.pack("<I", len(code)) + code.encode() + b"\x85R.",
        "builtins.exec": pickle.dumps(0, protocol=4)[:2] +                                 # STACK_GLOBAL
        b"\x8c\x08builtins\x8c\x04exec\x93\x8c" + bytes([len(code)]) + code.encode() + b"\x85R.",
        "subprocess.Popen": pickle.dumps(["touch", str(marker)], protocol=2)[:-1].replace(
            b"\x80\x02", b"\x80\x02csubprocess\nPopen\n", 1) + b"\x85R.",
        "INST os.system": b"(V" + cmd.encode() + b"\nios\nsystem\n.",                      # INST opcode
        "__reduce__": pickle.dumps(Reduce(), protocol=2),
        "nested in a dict": b"\x80\x02}X\x01\x00\x00\x00kcos\nsystem\nX" + struct.pack("<I", len(cmd))
        + cmd.encode() + b"\x85Rs.",
        "getattr chain": b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\nX\x02\x00\x00\x00os\x85RX\x06"
        b"\x00\x00\x00system\x86R.",
    }


@pytest.mark.parametrize("container", ["raw", "zip", "legacy"])
def test_malicious_pickles_are_refused_and_do_not_run(tmp_path, container):
    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    # The os.system payload does run under plain pickle: the threat is real.
    pickle.loads(payloads["os.system"])
    assert marker.exists()
    marker.unlink()

    template = tmp_path / "template.pt"
    torch.save({"w": torch.ones(2)}, template, **(FORMATS["legacy"] if container == "legacy" else {}))
    for what, payload in payloads.items():
        path = tmp_path / f"evil_{container}.bin"
        if container == "raw":
            path.write_bytes(payload)
        elif container == "zip":  # a real torch zip whose data.pkl is replaced
            with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, "w") as dst:
                for info in src.infolist():
                    data = payload if info.filename.endswith("/data.pkl") else src.read(info.filename)
                    dst.writestr(info.filename, data)
        else:  # legacy: real magic/protocol/sys_info pickles, then the payload
            with open(template, "rb") as f:
                for _ in range(3):
                    pickle.load(f)
                head = template.read_bytes()[: f.tell()]
            path.write_bytes(head + payload)
        with pytest.raises(UnsafeCheckpointError) as e:
            load_torch(path)
        assert str(path) in str(e.value), what
        assert "refusing to load global" in str(e.value), what
        assert not marker.exists(), f"payload {what!r} ran"


def test_bogus_persistent_id_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2)}, evil)
    # persistent id naming something that is not a storage type
    payload = b"\x80\x02}X\x01\x00\x00\x00w(X\x07\x00\x00\x00storageX\x01\x00\x00\x00xX\x01\x00\x00\x000X\x03" \
              b"\x00\x00\x00cpuK\x02tQs."
    with zipfile.ZipFile(evil) as src, zipfile.ZipFile(tmp_path / "e2.pt", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, payload if info.filename.endswith("data.pkl") else src.read(info.filename))
    with pytest.raises(CheckpointError, match="storage type"):
        load_torch(tmp_path / "e2.pt")


# ---------------------------------------------------------------- damaged files

@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_torch_files(tmp_path, fmt):
    sd = collections.OrderedDict(first=torch.randn(100), second=torch.randn(50, 40), third=torch.randn(30))
    path = tmp_path / "w.pt"
    torch.save(sd, path, **FORMATS[fmt])
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 300, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as e:
            load_torch(bad)
        assert str(bad) in str(e.value)
    if fmt == "legacy":  # storages come last: a cut in them names a tensor on the lost bytes
        bad = tmp_path / "cut_storage.pt"
        bad.write_bytes(data[:-8])
        with pytest.raises(CheckpointError, match="truncated: tensor '(first|second|third)'"):
            load_torch(bad)


def test_zip_with_short_storage_names_tensor(tmp_path):
    sd = collections.OrderedDict(a=torch.randn(10), b=torch.randn(4, 4))
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    bad = tmp_path / "short.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, data[:-4] if info.filename.endswith("/data/1") else data)
    with pytest.raises(CheckpointError, match=r"truncated: tensor 'b'"):
        load_torch(bad)


def test_not_a_checkpoint(tmp_path):
    for name, data in {"empty.bin": b"", "noise.bin": bytes(range(256)) * 4, "text.bin": b"hello world\n"}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_torch(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="nothing.bin"):
        load_torch(tmp_path / "nothing.bin")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_torch(tmp_path)
    torch.save(torch.ones(3), tmp_path / "tensor.pt")  # not a dict
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_torch(tmp_path / "tensor.pt")


# ---------------------------------------------------------------- safetensors

def _np_tensors():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f64": rng.standard_normal(4),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": rng.integers(-2**40, 2**40, 6),
        "i32": rng.integers(-9, 9, (2, 3)).astype(np.int32),
        "i8": np.array([-128, 5, 127], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.mark.parametrize("mmap", [True, False])
def test_safetensors_matches_reference_loader(tmp_path, mmap):
    path = tmp_path / "t.safetensors"
    st_save_file(_np_tensors(), str(path), metadata={"k": "v"})
    ref = st_load_file(str(path))
    ours = load_safetensors(path, mmap=mmap)
    assert sorted(ours) == sorted(ref)
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and ours[k].shape == ref[k].shape, k
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)
        assert ours[k].flags.writeable == (not mmap), k
    if mmap:  # views into one memory map of the file, not copies
        base = ours["f32"]
        while base is not None and not isinstance(base, np.memmap):
            base = base.base
        assert base is not None
    assert safetensors_metadata(path) == {"k": "v"}


def test_safetensors_bf16_upcast(tmp_path):
    from safetensors.torch import save_file as st_save_torch
    t = {"b": torch.randn(4, 3).to(torch.bfloat16), "f": torch.randn(2)}
    path = tmp_path / "bf16.safetensors"
    st_save_torch(t, str(path))
    ours = load_safetensors(path)
    assert ours["b"].dtype == np.float32
    np.testing.assert_array_equal(ours["b"], t["b"].float().numpy())
    np.testing.assert_array_equal(ours["f"], t["f"].numpy())


def test_safetensors_sharded_and_directory(tmp_path):
    st_save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    st_save_file({"b": np.zeros((2, 2), np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    ours = load_safetensors(tmp_path)
    assert sorted(ours) == ["a", "b"] and ours["b"].shape == (2, 2)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_safetensors(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_safetensors(tmp_path / "sub")


def _write_raw_safetensors(path, header: dict, data: bytes):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_safetensors_truncated_names_first_tensor_past_end(tmp_path):
    path = tmp_path / "t.safetensors"
    st_save_file({"aaa": np.ones(10, np.float32), "zzz": np.ones(1000, np.float32),
                  "mmm": np.ones(100, np.float32)}, str(path))
    data = path.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    offsets = {k: v["data_offsets"] for k, v in json.loads(data[8:header_end]).items()}
    # cut one byte into the data of the tensor stored second: that tensor is named, not the last one
    second = sorted(offsets, key=lambda k: offsets[k][0])[1]
    cut = header_end + offsets[second][0] + 1
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=rf"{bad.name}.*truncated.*'{second}'"):
        load_safetensors(bad)
    for n in (0, 5, 20):  # into the length field / the header
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=bad.name):
            load_safetensors(bad)


def test_safetensors_malformed_headers(tmp_path):
    p = tmp_path / "bad.safetensors"
    cases = {
        "overlaps": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12),
        "needs 8 bytes": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, 4),
        "unsupported dtype": ({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, 2),
        "bad shape": ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4),
        "bad data_offsets": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 4),
        "must have dtype": ({"a": {"shape": [1], "data_offsets": [0, 4]}}, 4),
    }
    for msg, (header, n) in cases.items():
        _write_raw_safetensors(p, header, b"\0" * n)
        with pytest.raises(CheckpointError, match=msg) as e:
            load_safetensors(p)
        assert p.name in str(e.value) and "'a'" in str(e.value), msg
    p.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_safetensors(p)
    p.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        load_safetensors(p)
    # ranges listed out of order are fine as long as they don't overlap
    _write_raw_safetensors(p, {"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                               "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                           np.array([1.0, 2.0], np.float32).tobytes())
    out = load_safetensors(p)
    assert out["a"][0] == 1.0 and out["b"][0] == 2.0


def test_save_safetensors_roundtrip(tmp_path):
    t = _np_tensors()
    t["noncontig"] = np.arange(12, dtype=np.float32).reshape(3, 4).T
    path = tmp_path / "out.safetensors"
    save_safetensors(t, path, metadata={"source": "test"})
    ref = st_load_file(str(path))
    for k in t:
        np.testing.assert_array_equal(ref[k], t[k], err_msg=k)
    assert safetensors_metadata(path) == {"source": "test"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]  # no temp file left behind
    with pytest.raises(TypeError, match="metadata"):
        save_safetensors(t, path, metadata={"n": 1})


def test_pickle_cannot_mutate_admitted_globals(tmp_path):
    # BUILD on an admitted global (here the FloatStorage marker, then torch.float32 and
    # OrderedDict) would let one hostile file silently corrupt every later load.
    hostile = {
        "FloatStorage": b"\x80\x02ctorch\nFloatStorage\nN}X\x05\x00\x00\x00dtypeX\x02\x00\x00\x00f2s\x86b.",
        "float32": b"\x80\x02ctorch\nfloat32\nN}X\x05\x00\x00\x00namesX\x02\x00\x00\x00f2s\x86b.",
        "OrderedDict": b"\x80\x02ccollections\nOrderedDict\n}X\x03\x00\x00\x00fooX\x01\x00\x00\x00xsb.",
        "_rebuild_tensor_v2": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x03\x00\x00\x00_fnccollections"
                              b"\nOrderedDict\ns\x86b.",
    }
    for what, payload in hostile.items():
        path = tmp_path / f"{what}.bin"
        path.write_bytes(payload)
        with pytest.raises(CheckpointError, match=path.name):
            load_torch(path)
    good = tmp_path / "good.pt"
    sd = {"w": torch.randn(3, 4), "x": torch.randn(2)}
    torch.save(sd, good)
    _assert_same(load_torch(good), sd)


def test_deeply_nested_containers_give_checkpoint_error(tmp_path):
    path = tmp_path / "deep.pt"
    n = 200_000
    with open(path, "wb") as f:  # legacy header, then {"a": [[[...]]]} built with raw opcodes
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(b"\x80\x02}X\x01\x00\x00\x00a" + b"]" * n + b"a" * (n - 1) + b"s.")
        pickle.dump([], f, protocol=2)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_torch(path)
