"""The runtime never imports torch or transformers: load a converted model and recognise in a fresh
interpreter where importing either one raises, then check neither reached sys.modules."""
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")  # only to build the reference model that gets converted
from conftest import make_hf_trocr, random_line_images  # noqa: E402

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"runtime code imported {name}")
            return None

    sys.meta_path.insert(0, Block())
    model_dir, image = sys.argv[1], sys.argv[2]

    import trocr_np, trocr_np.cli, trocr_np.convert
    from PIL import Image
    model = trocr_np.load_model(model_dir)
    for kw in ({}, {"num_beams": 3, "no_repeat_ngram_size": 2}):
        r = trocr_np.recognize(model, [Image.open(image), image], trocr_np.GenerationOptions(max_new_tokens=6, **kw))
        assert len(r) == 2 and r[0].token_ids == r[1].token_ids, r
    out = trocr_np.generate(model, trocr_np.preprocess([Image.open(image)], model.config), 
                            trocr_np.GenerationOptions(max_new_tokens=4, output_attentions=True))
    assert out.cross_attentions[0].shape[0] == len(out.sequences[0]) - 1
    assert trocr_np.cli.main(["recognize", "--model", model_dir, "--max-new-tokens", "4", image]) == 0
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
    assert not bad, bad
    print("OK")
""")


def test_runtime_imports_neither_torch_nor_transformers(tmp_path):
    from trocr_np.convert import convert_trocr

    _, hf_dir = make_hf_trocr(tmp_path, "tiny")
    model_dir = convert_trocr(hf_dir, tmp_path / "ours")
    image = tmp_path / "line.png"
    random_line_images(1, seed=2)[0].save(image)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(model_dir), str(image)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("OK")
