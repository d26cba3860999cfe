"""Every bug recipe of issue 16 (hostile and broken inputs), each with its recipe, torch-free.

Readers must raise their one error type naming the file (CheckpointError, ImageError, ConfigError,
ValueError for geometry), before allocating what a file only claims; memory bombs are checked with
tracemalloc (numpy and the unpickler allocate through it), never with timings.
"""
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from ocr_base import image_io
from ocr_base.checkpoint import CheckpointError, UnsafeCheckpointError, load_safetensors, load_torch
from ocr_base.image_io import ImageError, load_image, load_pages
from tests.fuzz.make import P, Tensor, deflated_zeros, safetensors_bytes, state_dict_pickle, torch_legacy, \
    torch_zip, zip_raw

MB = 1 << 20


def _write(tmp_path, data, name="x.pt"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _peak(fn):
    """(result or exception, peak traced bytes) of fn()."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - the caller checks which
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _raises_small(exc, fn, match=None, limit=64 * MB):
    out, peak = _peak(fn)
    assert isinstance(out, exc), f"expected {exc.__name__}, got {out!r}"
    if match:
        assert match in str(out), str(out)
    assert peak < limit, f"peak {peak / MB:.0f} MB"
    return out


def _legacy_with_object(obj_pickle: bytes) -> bytes:
    return torch_legacy({}, obj_pickle=obj_pickle)


# ------------------------------------------------------------------ checkpoint zip container
def _patch_zip_field(data: bytes, name: str, offset_local: int, offset_central: int, value: int) -> bytes:
    """Set a 2-byte field of `name`'s local header and central directory entry."""
    b, n = bytearray(data), name.encode()
    for sig, off in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
        name_at = 30 if sig == b"PK\x03\x04" else 46
        i = -1
        while True:
            i = b.index(sig, i + 1)
            if b[i + name_at: i + name_at + len(n)] == n:
                break
        b[i + off: i + off + 2] = struct.pack("<H", value)
    return bytes(b)


def test_bit_flip_in_byteorder_is_checkpoint_error(tmp_path):
    data = bytearray(torch_zip({"w": np.ones(3, np.float32)}))
    i = data.index(b"little")
    data[i] ^= 0x04  # CRC no longer matches: zipfile raised BadZipFile, unguarded
    with pytest.raises(CheckpointError, match="x.pt"):
        load_torch(_write(tmp_path, bytes(data)))


@pytest.mark.parametrize("field,value,what", [((8, 10), 99, "compression method 99"),
                                               ((6, 8), 1, "encrypted flag")])
def test_unsupported_compression_and_encryption(tmp_path, field, value, what):
    data = _patch_zip_field(torch_zip({"w": np.ones(3, np.float32)}), "archive/data.pkl", *field, value)
    with pytest.raises(CheckpointError, match="x.pt"):  # was NotImplementedError / RuntimeError
        load_torch(_write(tmp_path, data))


def test_corrupt_deflate_in_data_pkl(tmp_path):
    good = torch_zip({"w": np.ones(3, np.float32)}, compress=zipfile.ZIP_DEFLATED)
    info = zipfile.ZipFile(io.BytesIO(good)).getinfo("archive/data.pkl")
    start = info.header_offset + 30 + len(info.filename)
    bad = bytearray(good)
    for k in range(start + 2, start + info.compress_size - 2):
        bad[k] ^= 0x5A  # zlib.error (invalid code lengths ...) was a traceback
    with pytest.raises(CheckpointError, match="x.pt"):
        load_torch(_write(tmp_path, bytes(bad)))


def test_gigabyte_deflated_member_refused_before_inflating(tmp_path):
    # 1 GiB of zeros deflates to ~1 MB; it was inflated with no cap.
    pkl = state_dict_pickle({"w": Tensor("0", np.zeros(1, np.float32), (1 << 28,), (1,), numel=1 << 28)})
    data = zip_raw([("archive/data.pkl", pkl, 0, zlib.crc32(pkl), len(pkl)),
                    ("archive/data/0", deflated_zeros(1 << 30), 8, 0, 1 << 30)])
    assert len(data) < 2 * MB
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, data)), match="over the limit")


# ------------------------------------------------------------------ pickles
def test_bytes8_of_two_to_the_sixty(tmp_path):
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"x" * 16  # was MemoryError
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, data)))
    obj = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"x" * 16
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, _legacy_with_object(obj), "y.pt")),
                  match="y.pt")


def test_memo_index_two_to_the_27(tmp_path):
    # PROTO 2, EMPTY_DICT, LONG_BINPUT 2^27, STOP: CPython resized its memo to 2^27 slots (2.15 GB)
    obj = P.PROTO2 + P.EMPTY_DICT + P.put(1 << 27) + P.STOP
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, _legacy_with_object(obj))), match="memo")


def test_list_dag_of_depth_40(tmp_path):
    # each level holds the one below twice: 2^40 nodes as a tree, ~600 bytes as a pickle
    dag = P.EMPTY_LIST
    for i in range(40):
        dag += P.put(i) + P.POP + P.EMPTY_LIST + P.MARK + P.get(i) + P.get(i) + P.APPENDS
    pkl = P.PROTO2 + P.EMPTY_DICT + P.str("a") + dag + b"s" + P.STOP
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, torch_zip({}, data_pkl=pkl))))


def test_shared_dag_of_a_tensor_costs_one_copy(tmp_path):
    # one 1 MB tensor referenced 3,000 times through the memo (was 3.1 GB: one copy per reference)
    w = np.arange(MB // 4, dtype=np.float32)
    body = P.str("t0") + _one_tensor_pickle(w) + P.put(7)
    for i in range(1, 3000):
        body += P.str(f"t{i}") + P.get(7)
    pkl = P.PROTO2 + P.EMPTY_DICT + P.MARK + body + P.SETITEMS + P.STOP
    out, peak = _peak(lambda: load_torch(_write(tmp_path, torch_zip({"t": w}, data_pkl=pkl))))
    assert isinstance(out, dict) and len(out) == 3000, out
    np.testing.assert_array_equal(out["t2999"], w)
    assert peak < 16 * MB


def _one_tensor_pickle(a):
    from tests.fuzz.make import _tensor_pickle, as_recipes
    return _tensor_pickle(as_recipes({"t": a})["t"], legacy=False)


def test_distinct_rebuilds_of_one_storage_hit_the_budget(tmp_path):
    w = np.arange(MB // 4, dtype=np.float32)
    body = b"".join(P.str(f"t{i}") + _one_tensor_pickle(w) for i in range(3000))
    pkl = P.PROTO2 + P.EMPTY_DICT + P.MARK + body + P.SETITEMS + P.STOP
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, torch_zip({"t": w}, data_pkl=pkl))),
                  match="bytes of data", limit=32 * MB)


def test_zero_stride_bomb(tmp_path):
    # a 325-byte file: size (2.5e8,) stride (0,) on a 6-element storage materialised 1 GB
    t = Tensor("0", np.ones(6, np.float32), (250_000_000,), (0,))
    for data in (torch_zip({"w": t}), torch_legacy({"w": t})):
        _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, data)), match="x.pt")


def test_bytearray_of_three_gigabytes(tmp_path):
    pkl = (P.PROTO2 + P.EMPTY_DICT + P.str("a") + P.glob("builtins", "bytearray") + P.MARK + P.int(3_000_000_000)
           + P.TUPLE + P.REDUCE + b"s" + P.STOP)
    _raises_small(CheckpointError, lambda: load_torch(_write(tmp_path, torch_zip({}, data_pkl=pkl))))


@pytest.mark.parametrize("size,stride,offset", [((3.0,), (1,), 0), (("3",), (1,), 0), ((3,), (1.0,), 0),
                                                ((3,), (1,), "0"), ((True,), (1,), 0), ((-1,), (1,), 0),
                                                ((2,), (1 << 62,), 0), ((1,), (1 << 62,), 0),
                                                ((1,) * 9, (1,) * 9, 0), ((3,), (1, 1), 0)])
def test_sizes_strides_offsets_are_strict(tmp_path, size, stride, offset):
    t = Tensor("0", np.ones(6, np.float32), size, stride, offset)  # floats / strings were accepted silently;
    for data in (torch_zip({"w": t}), torch_legacy({"w": t})):     # stride 2^62 was an OverflowError
        with pytest.raises(CheckpointError, match="x.pt"):
            load_torch(_write(tmp_path, data))


def test_bad_utf8_and_truncated_pickles(tmp_path):
    bad_utf8 = P.PROTO2 + P.EMPTY_DICT + b"X\x02\x00\x00\x00\xff\xfe" + P.NONE + b"s" + P.STOP
    good = state_dict_pickle({"w": np.ones(3, np.float32)})
    for pkl in (bad_utf8, good[: len(good) // 2]):  # UnicodeDecodeError, EOFError
        with pytest.raises(CheckpointError, match="x.pt"):
            load_torch(_write(tmp_path, torch_zip({"w": np.ones(3, np.float32)}, data_pkl=pkl)))
        with pytest.raises(CheckpointError, match="x.pt"):
            load_torch(_write(tmp_path, _legacy_with_object(pkl)))


def test_hostile_globals_stay_refused(tmp_path):
    pkl = P.PROTO2 + P.glob("os", "system") + P.str("echo pwned") + b"\x85" + P.REDUCE + P.STOP
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_torch(_write(tmp_path, torch_zip({}, data_pkl=pkl)))


def test_fifo_and_device_checkpoints(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_torch(path)
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_safetensors(path)


# ------------------------------------------------------------------ shard index
@pytest.mark.parametrize("index", [{"weight_map": {"a": 5}}, {"weight_map": {"a": ["x"]}},
                                   {"weight_map": {"a": "../model.safetensors"}}, {"weight_map": []},
                                   "[" * 100_000])
def test_bad_shard_index(tmp_path, index):
    (tmp_path / "model.safetensors.index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    with pytest.raises(CheckpointError, match="index.json"):  # {"a": 5} was a TypeError
        load_safetensors(tmp_path)


# ------------------------------------------------------------------ safetensors
@pytest.mark.parametrize("entry", [{"dtype": "F32", "shape": [2 ** 64], "data_offsets": [0, 4]},
                                   {"dtype": "F32", "shape": [2 ** 32, 2 ** 32], "data_offsets": [0, 0]},
                                   {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]},
                                   {"dtype": "F32", "shape": [True, 1], "data_offsets": [0, 4]},
                                   {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]},
                                   {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4]},
                                   {"dtype": "F32", "shape": [0, 2 ** 62], "data_offsets": [0, 0]},
                                   {"dtype": "F32", "shape": [2 ** 40, 0, 2 ** 40], "data_offsets": [0, 0]}])
def test_bad_safetensors_entries(tmp_path, entry):
    data = safetensors_bytes({"t": np.ones(1, np.float32)}, header={"t": entry})
    with pytest.raises(CheckpointError, match="x.safetensors"):  # OverflowError, TypeError, a bare reshape error
        load_safetensors(_write(tmp_path, data, "x.safetensors"))


def test_deep_json_header(tmp_path):
    text = b"[" * 100_000  # was a RecursionError
    data = struct.pack("<Q", len(text)) + text
    with pytest.raises(CheckpointError, match="x.safetensors"):
        load_safetensors(_write(tmp_path, data, "x.safetensors"))


def test_million_tensor_header_refused_unparsed(tmp_path):
    # 10^6 tensors took 16.5 s and 1.56 GB; the header alone is over the byte limit
    text = ("{" + ",".join(f'"t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
                           for i in range(1_000_000)) + "}").encode()
    data = struct.pack("<Q", len(text)) + text
    path = _write(tmp_path, data, "x.safetensors")
    del text, data
    _raises_small(CheckpointError, lambda: load_safetensors(path), match="over the limit")


def test_tensor_count_limit(tmp_path):
    from ocr_base import safetensors_io
    n = safetensors_io.MAX_TENSORS + 1
    text = ("{" + ",".join(f'"{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for i in range(n))
            + "}").encode()
    assert len(text) < safetensors_io.MAX_HEADER_BYTES
    with pytest.raises(CheckpointError, match="tensors, over the limit"):
        load_safetensors(_write(tmp_path, struct.pack("<Q", len(text)) + text, "x.safetensors"))


# ------------------------------------------------------------------ configs and the converter
_ENCODER = {"model_type": "vit", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "image_size": 16, "patch_size": 8}
_DECODER = {"model_type": "trocr", "vocab_size": 11, "d_model": 8, "decoder_layers": 1,
            "decoder_attention_heads": 2, "decoder_ffn_dim": 16, "max_position_embeddings": 10}


@pytest.mark.parametrize("section,key,value", [("decoder", "decoder_layers", 10_000_000),
                                               ("decoder", "decoder_layers", 1_000_000),
                                               ("decoder", "decoder_attention_heads", 0),
                                               ("decoder", "vocab_size", 10 ** 9),
                                               ("decoder", "d_model", 1 << 20),
                                               ("decoder", "max_position_embeddings", 10 ** 8),
                                               ("encoder", "num_hidden_layers", 10 ** 7),
                                               ("encoder", "num_attention_heads", 0),
                                               ("encoder", "image_size", 10 ** 6),
                                               ("encoder", "patch_size", 0),
                                               ("encoder", "image_size", [4096, 4096]),
                                               ("encoder", "hidden_size", True)])
def test_config_fields_bounded_before_shape_tables(section, key, value):
    from trocr_np.config import ConfigError, parse_config
    enc, dec = dict(_ENCODER), dict(_DECODER)
    (enc if section == "encoder" else dec)[key] = value
    cfg = {"model_type": "vision-encoder-decoder", "decoder_start_token_id": 2, "encoder": enc, "decoder": dec}
    # 10^7 decoder layers exhausted a 24 GB machine (a shape table of 10^8 entries); heads 0 divided by zero
    with pytest.raises(ConfigError, match=key if key != "patch_size" else "patch"):
        parse_config(cfg, {"image_processor_type": "ViTImageProcessor"})


@pytest.mark.parametrize("size", [10 ** 6, {"height": 10 ** 6, "width": 4}, 0])
def test_preprocessor_size_bounded(size):
    from trocr_np.config import ConfigError, parse_preprocessor
    with pytest.raises(ConfigError):
        parse_preprocessor({"image_processor_type": "ViTImageProcessor", "size": size})


def _hf_folder(tmp_path, tied: bool, out_proj: str):
    """A tiny HF TrOCR folder written by hand: config.json, preprocessor_config.json, model.safetensors."""
    from ocr_base.checkpoint import save_safetensors
    from trocr_np.config import expected_param_shapes, parse_config
    cfg = {"model_type": "vision-encoder-decoder", "decoder_start_token_id": 2, "encoder": _ENCODER,
           "decoder": dict(_DECODER, tie_word_embeddings=tied)}
    pre = {"image_processor_type": "ViTImageProcessor"}
    shapes = expected_param_shapes(parse_config(cfg, pre))
    rng = np.random.default_rng(0)
    t = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    emb = t["decoder.model.decoder.embed_tokens.weight"]
    if out_proj == "same":
        t["decoder.output_projection.weight"] = emb.copy()
    elif out_proj == "trained":
        t["decoder.output_projection.weight"] = emb + 1
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "preprocessor_config.json").write_text(json.dumps(pre))
    save_safetensors(t, src / "model.safetensors")
    return src


def test_tied_config_with_trained_output_projection_is_an_error(tmp_path):
    from trocr_np.convert import convert_trocr
    # exited 0 and silently dropped the trained projection
    with pytest.raises(CheckpointError, match="tie_word_embeddings"):
        convert_trocr(_hf_folder(tmp_path, tied=True, out_proj="trained"), tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_tied_config_with_a_copy_of_the_embeddings_converts(tmp_path):
    from trocr_np.convert import convert_trocr
    dst = convert_trocr(_hf_folder(tmp_path, tied=True, out_proj="same"), tmp_path / "out")
    assert "decoder.output_projection.weight" not in load_safetensors(dst)


@pytest.mark.parametrize("dst_kind", ["file", "under_a_file"])
def test_convert_dst_that_is_a_file_is_one_line(tmp_path, capsys, dst_kind):
    from trocr_np.cli import main
    src = _hf_folder(tmp_path, tied=True, out_proj="none")
    (tmp_path / "f").write_text("x")
    dst = tmp_path / "f" if dst_kind == "file" else tmp_path / "f" / "sub"
    assert main(["convert", str(src), str(dst)]) == 2  # was a FileExistsError / NotADirectoryError traceback
    err = capsys.readouterr().err
    assert err.startswith("trocr-np convert: error: ") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------ images
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(w, h, rows: bytes, depth=8, color=2) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


def test_png_with_half_its_rows(tmp_path):
    # IDAT holds 16 of 32 rows in a complete zlib stream: it loaded as a full image with black rows
    rows = b"".join(b"\0" + bytes([100]) * 24 * 3 for _ in range(16))
    with pytest.raises(ImageError, match="truncated PNG"):
        load_image(_write(tmp_path, _png(24, 32, rows), "half.png"))
    # the 164-byte PNG that became 24 x 1,048,592
    tall = _png(24, 1_048_592, b"".join(b"\0" + bytes(72) for _ in range(16)))
    _raises_small(ImageError, lambda: load_image(tall), match="truncated PNG", limit=256 * MB)


def test_complete_pngs_still_load():
    full = b"".join(b"\0" + bytes([100]) * 24 * 3 for _ in range(32))
    assert np.asarray(load_image(_png(24, 32, full))).shape == (32, 24, 3)


def test_pixels_bounded_per_file_not_only_per_page(monkeypatch):
    # an 8-page TIFF of 10000^2 bilevel pages is 52 KB and expanded to 3.7 GB: here the same at 1/100
    page = Image.new("1", (1000, 1000), 1)
    buf = io.BytesIO()
    page.save(buf, "TIFF", save_all=True, append_images=[page] * 7, compression="group4")
    monkeypatch.setattr(image_io, "MAX_FILE_PIXELS", 2_500_000)
    with pytest.raises(ImageError, match="per file"):
        load_pages(buf.getvalue(), max_pixels=1_000_000)
    monkeypatch.setattr(image_io, "MAX_FILE_PIXELS", 8_000_000)
    assert len(load_pages(buf.getvalue(), max_pixels=1_000_000)) == 8


def test_fifo_and_devices_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # it blocked forever
    for path in (fifo, "/dev/zero"):  # /dev/zero was a bare MemoryError ("/dev/zero: " in the CLI)
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(path)


# ------------------------------------------------------------------ pipeline and CLI
@pytest.mark.parametrize("fast", [True, False])
def test_self_intersecting_quad_is_value_error(fast):
    from trocr_np.crop import crop_quad
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="self-intersecting"):  # ZeroDivisionError from the kernel
        crop_quad(img, [[0, 0], [40, 40], [40, 0], [0, 40]], fast=fast)
    with pytest.raises(ValueError, match="over the limit"):
        crop_quad(img, [[0, 0], [1e6, 0], [1e6, 1e6], [0, 1e6]], fast=fast)


@pytest.mark.parametrize("kw", [dict(width=100_000), dict(canvas_size=20_000), dict(width=8192),
                                dict(mag_ratio=17.0)])
def test_detect_options_capped(kw):
    from detector_np.detect import DetectOptions
    with pytest.raises(ValueError, match="DetectOptions"):  # 19.7 GiB / 53.7 GiB were tried
        DetectOptions(**kw)


def test_tall_image_at_a_legal_width_is_refused_before_resizing():
    from detector_np.preprocess import resize_aspect_ratio
    img = np.zeros((4000, 10, 3), np.uint8)  # width 4096 would make it 4096 x 1,638,400
    _raises_small(ValueError, lambda: resize_aspect_ratio(img, width=4096), match="canvas limit")


def test_group_lines_on_ten_thousand_unmergeable_boxes():
    from detector_np.lines import _merge_rows
    n = 10_000  # 7.5 s and 3.4 GB with the pairwise matrices
    x = np.arange(n) * 100.0
    boxes = np.stack([x, x + 10, np.zeros(n), np.full(n, 10.0)], 1).tolist()
    out, peak = _peak(lambda: _merge_rows(boxes, 0.5, 0.6))
    assert out == boxes and peak < 64 * MB
    col = np.stack([np.zeros(n), np.full(n, 10.0), x, x + 10], 1).tolist()  # one column: no sort helps x
    out, peak = _peak(lambda: _merge_rows(col, 0.5, 0.6))
    assert out == col and peak < 64 * MB


def _merge_rows_pairwise(boxes, width_ths, row_overlap):
    """The former all-pairs row merge (N x N matrices): the reference `_merge_rows` must equal."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    while len(b) > 1:
        x0, x1, y0, y1 = (b[:, k] for k in range(4))
        h = np.minimum.outer(y1 - y0, y1 - y0)
        overlap = np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0)
        gap = np.maximum.outer(x0, x0) - np.minimum.outer(x1, x1)
        join = (h > 0) & (overlap > row_overlap * h) & (gap < width_ths * h)
        np.fill_diagonal(join, False)
        if not join.any():
            break
        label = np.arange(len(b))
        while True:
            new = np.minimum(label, np.where(join, label[None, :], len(b)).min(1))
            new = new[new]
            if np.array_equal(new, label):
                break
            label = new
        b = np.array([[b[label == k, 0].min(), b[label == k, 1].max(), b[label == k, 2].min(),
                       b[label == k, 3].max()] for k in np.unique(label)])
    return b.tolist()


def test_merge_rows_equals_the_pairwise_algorithm_on_random_boxes():
    from detector_np.lines import _merge_rows
    rng = np.random.default_rng(16)
    merged = 0
    for t in range(600):
        n = int(rng.integers(0, 60))
        x0 = rng.uniform(0, 500, n).round(int(rng.integers(0, 3)))
        y0 = rng.uniform(0, 300, n).round(int(rng.integers(0, 2)))
        w, h = rng.uniform(-5, 80, n).round(1), rng.uniform(-3, 40, n).round(1)
        if t % 4 == 0:  # rows of boxes on a grid: many joins, chains of merges over several rounds
            y0, h = (y0 // 40) * 40, np.abs(h)
        boxes = np.stack([x0, x0 + w, y0, y0 + h], 1).tolist()
        width_ths, row_overlap = [(0.5, 0.6), (0.0, 0.0), (2.0, 1.0), (1.0, 0.3)][t % 4]
        want = _merge_rows_pairwise(boxes, width_ths, row_overlap)
        assert _merge_rows(boxes, width_ths, row_overlap) == want, t
        merged += len(want) < len(boxes)
    assert merged > 100  # the cases exercise merging, not only no-ops


def test_cli_error_line_names_the_path_once(monkeypatch, capsys, tmp_path):
    from trocr_np import pipeline
    from trocr_np.cli import main
    from trocr_np.pipeline import ErrorRecord
    src = str(tmp_path / "bad.png")

    def fake_ocr_files(files, *a, **k):
        yield ErrorRecord(src, f"{src}: corrupt or truncated image (OSError: broken)", "ImageError")
        yield ErrorRecord(src, "no text found", "ValueError", page=2)
    monkeypatch.setattr(pipeline, "expand_inputs", lambda inputs: [src])
    monkeypatch.setattr(pipeline, "ocr_files", fake_ocr_files)
    assert main(["ocr", src]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"trocr-np ocr: error: {src}: corrupt or truncated image (OSError: broken)"
    assert err[1] == f"trocr-np ocr: error: {src} (page 2): no text found"


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    import detector_np
    from trocr_np.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(detector_np, "detect", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    assert main(["detect", "page.png"]) == 130
    assert capsys.readouterr().err == "trocr-np detect: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is handler, "main() leaves the caller's SIGINT handler alone"


@pytest.mark.parametrize("how", ["module", "script"])
@pytest.mark.parametrize("where", ["code", "exec"])
def test_interrupted_program_dies_of_sigint(where, how, tmp_path):
    # The program: after Ctrl-C, the one line, then death by SIGINT (shells report 130, and a shell
    # loop stops), wherever the KeyboardInterrupt was raised and however it is started (`python -m`,
    # or a file like the console script). A plain `return 130` exited 130, except under `python -m`
    # when the KeyboardInterrupt had passed out of an exec of a string (as in Numba's and
    # dataclasses' generated code): then CPython died of SIGINT, so the status hung on where Ctrl-C landed.
    raise_it = "raise KeyboardInterrupt" if where == "code" else "exec('raise KeyboardInterrupt')"
    (tmp_path / "child.py").write_text(
        "import sys, detector_np\nfrom trocr_np import cli\n"
        f"def interrupted(*a, **k):\n    {raise_it}\n"
        "detector_np.detect = interrupted\nsys.argv = ['trocr-np', 'detect', 'page.png']\ncli.run()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["-m", "child"] if how == "module" else [str(tmp_path / "child.py")]
    p = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])})
    assert (p.returncode, p.stderr) == (-signal.SIGINT, "trocr-np detect: interrupted\n")


# ------------------------------------------------------------------ 16-bit colour PNGs
@pytest.mark.parametrize("channels,interlace", [(3, False), (3, True), (4, False), (4, True)])
def test_16_bit_rgb_png_scaled_by_257_not_its_high_byte(channels, interlace):
    from tests.fuzz.make import png16_bytes
    rng = np.random.default_rng(channels * 2 + interlace)
    a = rng.integers(0, 65536, (9, 13, channels)).astype(np.uint16)
    a[0, 0, :3] = 1000  # Pillow alone gives 3 (1000 >> 8); round(1000 / 257) = 4
    if channels == 4:
        a[..., 3] = 65535
    out = np.asarray(load_image(png16_bytes(a, interlace, rng)))
    np.testing.assert_array_equal(out, (a[..., :3].astype(np.int64) * 2 + 257) // 514)
    assert out[0, 0].tolist() == [4, 4, 4]


def test_png_unfilter_kernel_equals_reference():
    from ocr_base.png import unfilter, unfilter_reference
    from tests.fuzz.make import png_filter
    rng = np.random.default_rng(5)
    for _ in range(40):
        ph, rb, bpp = int(rng.integers(1, 9)), int(rng.integers(1, 40)), int(rng.choice([1, 2, 3, 4, 6, 8]))
        rows = rng.integers(0, 256, (ph, rb), dtype=np.uint8)
        raw = np.frombuffer(png_filter(rows, bpp, rng), np.uint8)
        fast, ref = np.empty_like(rows), np.empty_like(rows)
        assert unfilter(raw, fast, bpp) and unfilter_reference(raw, ref, bpp)
        np.testing.assert_array_equal(ref, rows)
        np.testing.assert_array_equal(fast, rows)
    bad = np.frombuffer(b"\x05" + bytes(4), np.uint8)
    assert not unfilter(bad, np.empty((1, 4), np.uint8), 1)
    assert not unfilter_reference(bad, np.empty((1, 4), np.uint8), 1)


def test_tiff_whose_strips_do_not_cover_the_page():
    # found by the images fuzzer: a 2 KB TIFF whose ImageLength was raised to 4,325,389 decoded its one
    # 13-row strip and left 73 MP of black (3.6 s, 220 MB per copy)
    buf = io.BytesIO()
    Image.fromarray(np.full((13, 17, 3), 90, np.uint8)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd: ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry: entry + 4])
        if tag == 257:  # ImageLength
            data[entry + 8: entry + 12 if kind == 4 else entry + 10] = \
                struct.pack("<I", 4_325_389) if kind == 4 else struct.pack("<H", 65_000)
    _raises_small(ImageError, lambda: load_image(bytes(data)), match="truncated TIFF", limit=32 * MB)
