"""`trocr-np convert` against the files transformers itself writes.

Random TrOCR models are built with transformers (tests/conftest.py::make_hf_trocr)
and saved in every layout we claim to read: safetensors (single and sharded),
pytorch_model.bin (zip and legacy torch formats, single and sharded), and a
`torch.save(model.state_dict())` with transformers 5.x in-memory names. Each is
converted by the CLI in a subprocess where importing torch or transformers
raises, and the output must equal the model's own files tensor for tensor.
"""
import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from conftest import make_hf_trocr  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from ocr_base.checkpoint import CheckpointError, safetensors_metadata  # noqa: E402
from trocr_np.cli import main  # noqa: E402
from trocr_np.convert import convert_trocr  # noqa: E402

# Runs `trocr-np ARGS` with torch and transformers made unimportable.
NO_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, BlockTorch())
if sys.argv[1] == "--import-torch":
    import torch
from trocr_np.cli import main
rc = main(sys.argv[1:])
leaked = [m for m in ("torch", "transformers") if m in sys.modules]
assert not leaked, f"imported {leaked}"
sys.exit(rc)
"""


def run_without_torch(*args):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def hf_reference(hf_dir, tied: bool) -> dict[str, np.ndarray]:
    """What the converter must write: the model's own safetensors minus the unused pooler
    (and minus a tied output projection, which transformers does not save anyway)."""
    ref = load_file(str(hf_dir / "model.safetensors"))
    return {k: v for k, v in ref.items()
            if not k.startswith("encoder.pooler.") and not (tied and k == "decoder.output_projection.weight")}


def assert_converted_equals(dst, ref):
    ours = load_file(str(dst / "model.safetensors"))
    assert sorted(ours) == sorted(ref)
    for k, v in ref.items():
        assert ours[k].dtype == np.float32 and ours[k].shape == v.shape, k
        np.testing.assert_array_equal(ours[k], v, err_msg=k)


def _strip_weights(d):
    for p in list(d.iterdir()):
        if p.name.startswith(("model", "pytorch_model")):
            p.unlink()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{layout name: (hf folder, reference tensors)} for one tiny model in every layout, plus other presets."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    model, st_dir = make_hf_trocr(root, "tiny")
    ref = hf_reference(st_dir, tied=True)
    out["safetensors"] = (st_dir, ref)
    sd = {k: torch.from_numpy(v.copy()) for k, v in load_file(str(st_dir / "model.safetensors")).items()}

    def variant(name, write):
        d = root / name
        shutil.copytree(st_dir, d)
        _strip_weights(d)
        write(d)
        out[name] = (d, ref)

    variant("safetensors_sharded", lambda d: model.save_pretrained(str(d), max_shard_size="20KB"))
    variant("bin_zip", lambda d: torch.save(sd, d / "pytorch_model.bin"))
    variant("bin_legacy", lambda d: torch.save(sd, d / "pytorch_model.bin", _use_new_zipfile_serialization=False))

    def sharded_bin(d):
        names = sorted(sd)
        shards = [names[i::3] for i in range(3)]
        weight_map = {}
        for i, keys in enumerate(shards):
            fname = f"pytorch_model-{i + 1:05d}-of-00003.bin"
            torch.save({k: sd[k] for k in keys}, d / fname)
            weight_map.update({k: fname for k in keys})
        (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    variant("bin_sharded", sharded_bin)
    # transformers 5.x in-memory names, tied output projection and pooler included
    variant("bin_in_memory_names", lambda d: torch.save(model.state_dict(), d / "pytorch_model.bin"))

    for preset, tied in (("mismatch", True), ("sinusoidal", False), ("nonsquare", True)):
        _, d = make_hf_trocr(root, preset)
        out[preset] = (d, hf_reference(d, tied))
    return out


LAYOUTS = ["safetensors", "safetensors_sharded", "bin_zip", "bin_legacy", "bin_sharded", "bin_in_memory_names",
           "mismatch", "sinusoidal", "nonsquare"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_convert_without_torch_equals_hf_files(sources, tmp_path, layout):
    src, ref = sources[layout]
    if layout == "safetensors_sharded":
        assert (src / "model.safetensors.index.json").is_file()
    if layout == "bin_in_memory_names":
        assert any(".layers.0.attention.q_proj" in k for k in torch.load(src / "pytorch_model.bin"))
    dst = tmp_path / "out"
    r = run_without_torch("convert", src, dst)
    assert r.returncode == 0, r.stderr
    assert f"{len(ref)} tensors" in r.stdout
    assert_converted_equals(dst, ref)
    # config, preprocessor, generation config and tokenizer files are copied as they are
    for name in ("config.json", "preprocessor_config.json", "generation_config.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    meta = safetensors_metadata(dst / "model.safetensors")
    assert meta["dtype"] == "float32" and meta["source"] in {p.name for p in src.iterdir()}
    assert "trocr_np_version" in meta


def test_torch_really_is_blocked():
    r = run_without_torch("--import-torch")
    assert r.returncode != 0 and "blocked" in r.stderr


def test_float16_halves_and_rounds_like_numpy(sources, tmp_path):
    src, ref = sources["safetensors"]
    r = run_without_torch("convert", src, tmp_path / "f16", "--dtype", "float16")
    assert r.returncode == 0, r.stderr
    convert_trocr(src, tmp_path / "f32")
    half = load_file(str(tmp_path / "f16" / "model.safetensors"))
    assert sorted(half) == sorted(ref)
    for k, v in ref.items():
        assert half[k].dtype == np.float16, k
        np.testing.assert_array_equal(half[k], v.astype(np.float16), err_msg=k)

    def data_bytes(p):  # file size minus the JSON header
        return p.stat().st_size - 8 - struct.unpack("<Q", p.read_bytes()[:8])[0]
    assert 2 * data_bytes(tmp_path / "f16" / "model.safetensors") == data_bytes(tmp_path / "f32" / "model.safetensors")
    assert safetensors_metadata(tmp_path / "f16" / "model.safetensors")["dtype"] == "float16"


def test_tokenizer_json_is_copied(tmp_path):
    _, src = make_hf_trocr(tmp_path, "tiny", tokenizer="json")
    assert (src / "tokenizer.json").is_file()
    dst = convert_trocr(src, tmp_path / "out")
    assert (dst / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


# ---------------------------------------------------------------- errors

@pytest.fixture
def src_copy(sources, tmp_path):
    def copy(layout="safetensors"):
        d = tmp_path / f"src_{layout}"
        shutil.copytree(sources[layout][0], d)
        return d
    return copy


def test_missing_files_are_named(src_copy, tmp_path):
    for name in ("config.json", "preprocessor_config.json"):
        src = src_copy()
        (src / name).unlink()
        with pytest.raises(FileNotFoundError, match=name):
            convert_trocr(src, tmp_path / "out")
        shutil.rmtree(src)
    src = src_copy()
    (src / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found.*model.safetensors.*pytorch_model.bin"):
        convert_trocr(src, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert_trocr(tmp_path / "nowhere", tmp_path / "out")


def test_missing_shard_is_named(src_copy, tmp_path):
    src = src_copy("bin_sharded")
    (src / "pytorch_model-00002-of-00003.bin").unlink()
    with pytest.raises(FileNotFoundError, match="pytorch_model-00002-of-00003.bin"):
        convert_trocr(src, tmp_path / "out")


@pytest.mark.parametrize("layout,fname", [("safetensors", "model.safetensors"), ("bin_zip", "pytorch_model.bin"),
                                          ("bin_legacy", "pytorch_model.bin")])
def test_truncated_weights_are_named(src_copy, tmp_path, layout, fname):
    src = src_copy(layout)
    data = (src / fname).read_bytes()
    (src / fname).write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError) as e:
        convert_trocr(src, tmp_path / "out")
    assert fname in str(e.value)
    if layout != "bin_zip":  # zip loses its central directory; the others know the tensor
        assert "truncated: tensor '" in str(e.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_config_weights_mismatch_names_tensor_and_shapes(src_copy, tmp_path):
    src = src_copy()
    cfg = json.loads((src / "config.json").read_text())
    cfg["decoder"]["decoder_ffn_dim"] = 96  # the file has 64
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model.safetensors.*'decoder.model.decoder.layers.0.fc1.weight' has "
                                              r"shape \(64, 32\) but config.json implies \(96, 32\)"):
        convert_trocr(src, tmp_path / "out")


def test_missing_and_unexpected_tensors_are_named(src_copy, tmp_path):
    src = src_copy()
    tensors = load_file(str(src / "model.safetensors"))
    gone = tensors.pop("decoder.model.decoder.layers.1.fc2.bias")
    save_file(tensors, str(src / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'decoder.model.decoder.layers.1.fc2.bias' of "
                                              r"shape \(32,\)"):
        convert_trocr(src, tmp_path / "out")
    tensors["decoder.model.decoder.layers.1.fc2.bias"] = gone
    tensors["decoder.model.decoder.layers.2.fc2.bias"] = gone  # a layer the config does not have
    save_file(tensors, str(src / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected tensor 'decoder.model.decoder.layers.2.fc2.bias'"):
        convert_trocr(src, tmp_path / "out")


def test_untied_config_requires_output_projection(src_copy, tmp_path):
    src = src_copy()
    cfg = json.loads((src / "config.json").read_text())
    cfg["decoder"]["tie_word_embeddings"] = False
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing tensor 'decoder.output_projection.weight'"):
        convert_trocr(src, tmp_path / "out")


def test_tokenizer_errors(src_copy, tmp_path):
    src = src_copy()
    (src / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        convert_trocr(src, tmp_path / "out")
    (src / "vocab.json").unlink()
    (src / "sentencepiece.bpe.model").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="sentencepiece.bpe.model: not a valid SentencePiece model"):
        convert_trocr(src, tmp_path / "out")
    (src / "sentencepiece.bpe.model").unlink()
    dst = convert_trocr(src, tmp_path / "out")  # no tokenizer at all: weights still convert
    assert (dst / "model.safetensors").is_file() and not (dst / "vocab.json").exists()


def test_bad_arguments(src_copy, tmp_path):
    src = src_copy()
    with pytest.raises(ValueError, match="dtype"):
        convert_trocr(src, tmp_path / "out", dtype="bfloat16")
    with pytest.raises(ValueError, match="source folder"):
        convert_trocr(src, src)


def test_cli_reports_errors_in_one_line(src_copy, tmp_path, capsys):
    src = src_copy()
    (src / "config.json").unlink()
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trocr-np convert: error:") and "config.json" in err and "Traceback" not in err
