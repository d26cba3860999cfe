"""CRAFT / LinkRefiner weight conversion: the real craft_mlt_25k.pth, caching, and clear errors."""
import numpy as np
import pytest

from detector_np import weights
from detector_np.weights import (CRAFT_CONVS, CRAFT_MD5, REFINER_CONVS, convert_checkpoint, convert_state_dict,
                                 load_craft, load_refiner)
from ocr_base.checkpoint import CheckpointError, safetensors_metadata

torch = pytest.importorskip("torch")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TROCR_NP_CACHE", str(d))
    return d


def refiner_state(seed=0, prefix="module."):
    """A random LinkRefiner state_dict with the original's keys, as torch tensors (BN stats included)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, cout, cin, k, bn in REFINER_CONVS:
        sd[name + ".weight"] = rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)
        sd[name + ".bias"] = rng.standard_normal(cout) * 0.1
        if bn:
            head, idx = name.rsplit(".", 1)
            bn_name = f"{head}.{int(idx) + 1}"
            sd[bn_name + ".weight"] = 0.5 + rng.random(cout)
            sd[bn_name + ".bias"] = 0.2 * rng.standard_normal(cout)
            sd[bn_name + ".running_mean"] = 0.2 * rng.standard_normal(cout)
            sd[bn_name + ".running_var"] = 0.5 + rng.random(cout)
    return {prefix + k: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items()}


def test_default_craft_converted_once_and_cached(cache, monkeypatch):
    path = weights.default_craft_path()
    assert weights.file_md5(path) == CRAFT_MD5
    params = load_craft()
    assert set(params) == set(weights.param_shapes(CRAFT_CONVS))          # BN folded away, `module.` stripped
    assert all(v.dtype == np.float32 for v in params.values())
    cached = cache / "craft_mlt_25k.safetensors"
    meta = safetensors_metadata(cached)
    assert meta["source_md5"] == CRAFT_MD5 and meta["format"] == weights.FORMAT
    assert not list(cache.glob("*.tmp"))                                   # atomic write left nothing behind

    # the reference's own loading path, folded by hand for one conv+BN pair
    sd = torch.load(path, map_location="cpu", weights_only=True)
    s = 1 / np.sqrt(sd["module.basenet.slice1.1.running_var"].double().numpy() + 1e-5) * sd["module.basenet.slice1.1.weight"].double().numpy()
    np.testing.assert_allclose(params["basenet.slice1.0.weight"], sd["module.basenet.slice1.0.weight"].numpy() * s[:, None, None, None], rtol=1e-6)
    np.testing.assert_array_equal(params["conv_cls.8.weight"], sd["module.conv_cls.8.weight"].numpy())

    def boom(*a, **k):
        raise AssertionError("should have used the cache")
    monkeypatch.setattr(weights, "load_torch", boom)
    again = load_craft()
    for k in params:
        np.testing.assert_array_equal(again[k], params[k])


def test_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("TROCR_NP_CACHE", str(blocker / "cache"))           # mkdir fails: parent is a file
    params = load_refiner_from(tmp_path, refiner_state())
    assert set(params) == set(weights.param_shapes(REFINER_CONVS))


def load_refiner_from(tmp_path, state, name="craft_refiner_CTW1500.pth", legacy=True):
    path = tmp_path / name
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return load_refiner(path)


@pytest.mark.parametrize("legacy,prefix", [(True, "module."), (False, ""), (True, "")])
def test_refiner_formats(cache, tmp_path, legacy, prefix):
    state = refiner_state(1, prefix)
    params = load_refiner_from(tmp_path, state, legacy=legacy)
    expected = convert_state_dict({k: v.numpy() for k, v in state.items()}, REFINER_CONVS)
    assert params.keys() == expected.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])
    assert len(list(cache.glob("refiner-*.safetensors"))) == 1


def test_convert_to_explicit_safetensors_and_load_it(cache, tmp_path):
    src = tmp_path / "refiner.pth"
    torch.save(refiner_state(2), src)
    params, written = convert_checkpoint(src, tmp_path / "out" / "refiner.safetensors", refiner=True)
    assert written == tmp_path / "out" / "refiner.safetensors"
    loaded = load_refiner(written)
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])


def test_cli_convert_detector(cache, tmp_path, capsys):
    from trocr_np.cli import main

    src = tmp_path / "refiner.pth"
    torch.save(refiner_state(3), src)
    dst = tmp_path / "r.safetensors"
    assert main(["convert-detector", str(src), str(dst), "--refiner"]) == 0
    assert str(dst) in capsys.readouterr().out and dst.is_file()
    assert main(["convert-detector", "--refiner"]) == 2
    assert main(["convert-detector", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_wrong_md5_is_refused(cache, tmp_path, monkeypatch):
    fake = tmp_path / "craft_mlt_25k.pth"
    torch.save(refiner_state(4), fake)
    monkeypatch.setattr(weights, "default_craft_path", lambda: fake)
    with pytest.raises(CheckpointError, match=r"craft_mlt_25k\.pth.*md5"):
        load_craft()


def test_truncated_file_names_the_file(cache, tmp_path):
    src = tmp_path / "refiner.pth"
    torch.save(refiner_state(5), src, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_refiner(cut)


def test_missing_unexpected_and_misshaped_tensors(cache, tmp_path):
    state = refiner_state(6)
    missing = dict(state)
    del missing["module.aspp3.1.running_var"]
    with pytest.raises(CheckpointError, match=r"m\.pth.*'aspp3\.1\.running_var'"):
        load_refiner_from(tmp_path, missing, name="m.pth")
    bad = dict(state)
    bad["module.last_conv.0.weight"] = torch.zeros(64, 35, 3, 3)
    with pytest.raises(CheckpointError, match=r"'last_conv\.0\.weight' has shape \(64, 35, 3, 3\)"):
        load_refiner_from(tmp_path, bad, name="b.pth")
    extra = dict(state)
    extra["module.head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected tensor 'head.weight'"):
        load_refiner_from(tmp_path, extra, name="e.pth")
    nan = dict(state)
    nan["module.aspp1.6.bias"] = torch.tensor([float("nan")])
    with pytest.raises(CheckpointError, match="NaN"):
        load_refiner_from(tmp_path, nan, name="n.pth")
    # a CRAFT checkpoint given as a refiner: a clear error, not a crash
    with pytest.raises(CheckpointError, match="missing tensor"):
        load_refiner(weights.default_craft_path())
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_refiner(tmp_path / "nothing.pth")


def test_stale_cache_is_rebuilt(cache, tmp_path):
    import os

    src = tmp_path / "r.pth"
    torch.save(refiner_state(7), src)
    first = load_refiner(src)
    entry = next(cache.glob("refiner-*.safetensors"))
    entry.write_bytes(b"garbage")                                   # damaged cache entry: rebuilt, not trusted
    second = load_refiner(src)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))     # source changed: cache ignored
    assert load_refiner(src).keys() == first.keys()
