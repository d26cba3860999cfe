"""`trocr-np ocr` end to end: real CRAFT, a tiny random TrOCR converted to a trocr-np folder.

The random recogniser's text is meaningless; these tests check the command's
plumbing: page text on stdout, headers and progress for several files, --json
and --draw outputs, one error line per bad file, and the exit status.
"""
import json

import pytest

from pipeline_pages import five_files_one_corrupt, render_page
from trocr_np.cli import main

SMALL = ["--canvas-size", "640", "--mag-ratio", "1.0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import make_hf_trocr
    from trocr_np.convert import convert_trocr
    tmp = tmp_path_factory.mktemp("ocr_cli_model")
    _, hf_dir = make_hf_trocr(tmp, "tiny")
    return str(convert_trocr(hf_dir, tmp / "trocr-np"))


def test_ocr_batch_with_one_corrupt_file(model_dir, tmp_path, capsys):
    paths = five_files_one_corrupt(tmp_path / "in")
    out_json, out_draw = tmp_path / "out.json", tmp_path / "drawn"
    rc = main(["ocr", str(tmp_path / "in"), "--model", model_dir, "--json", str(out_json),
               "--draw", str(out_draw), "--max-new-tokens", "8"] + SMALL)
    cap = capsys.readouterr()
    assert rc == 1, "non-zero exit status when any input failed"
    for i, p in enumerate(paths):
        assert f"[{i + 1}/5] {p}" in cap.err, "progress on stderr"
    assert f"trocr-np ocr: error: {paths[2]}" in cap.err and "corrupt" in cap.err
    assert "1 of 5 inputs failed" in cap.err
    for i in (0, 1, 3, 4):
        assert f"==> {paths[i]} <==" in cap.out, "a header per file when several"
    assert str(paths[2]) not in cap.out

    records = json.loads(out_json.read_text())
    assert [r["source"] for r in records] == [str(p) for p in paths]
    assert [("error" in r) for r in records] == [False, False, True, False, False]
    assert records[2]["error_type"] == "ImageError"
    for r in (records[i] for i in (0, 1, 3, 4)):
        assert len(r["lines"]) == 1 and isinstance(r["text"], str)
        assert set(r["timings"]) >= {"detect", "recognize"}
    assert sorted(f.name for f in out_draw.iterdir()) == ["0_alpha.png", "1_bravo.png", "3_delta.png", "4_echo.png"]


def test_ocr_single_good_file_no_header_exit_0(model_dir, tmp_path, capsys):
    p = tmp_path / "one.png"
    render_page([(12, 14, "hello", 0, 26)], (220, 64))[0].save(p)
    rc = main(["ocr", str(p), "--model", model_dir, "--max-new-tokens", "4"] + SMALL)
    cap = capsys.readouterr()
    assert rc == 0 and "==>" not in cap.out and "[1/1]" not in cap.err and cap.out.endswith("\n")


def test_ocr_missing_file_and_empty_folder(model_dir, tmp_path, capsys):
    rc = main(["ocr", str(tmp_path / "nope.png"), "--model", model_dir] + SMALL)
    cap = capsys.readouterr()
    assert rc == 1 and "nope.png" in cap.err and "no such file" in cap.err
    (tmp_path / "empty").mkdir()
    rc = main(["ocr", str(tmp_path / "empty"), "--model", model_dir])
    assert rc == 2 and "no image files" in capsys.readouterr().err


NO_REFERENCE_STACK = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "cv2", "scipy", "skimage", "easyocr", "torchvision"):
            raise ImportError(f"runtime code imported {name}")
        return None

sys.meta_path.insert(0, Block())
from trocr_np.cli import main
rc = main(sys.argv[1:])
bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "cv2", "scipy", "skimage")]
assert not bad, bad
sys.exit(rc)
"""


def test_ocr_runs_without_torch_opencv_or_scipy(model_dir, tmp_path):
    import subprocess
    import sys
    p = tmp_path / "page.png"
    render_page([(12, 14, "hello", 0, 26), (12, 60, "world", 1, 26)], (220, 110))[0].save(p)
    r = subprocess.run([sys.executable, "-c", NO_REFERENCE_STACK, "ocr", str(p), "--model", model_dir,
                        "--max-new-tokens", "4", "--json", str(tmp_path / "o.json")] + SMALL,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads((tmp_path / "o.json").read_text())[0]["lines"]) == 2


def test_ocr_formats_on_stdout_with_a_random_model(model_dir, tmp_path, capsys):
    """A random recogniser writes any tokens (control characters, lone spaces): jsonl and hOCR on
    stdout still parse, and agree on the lines; each line's words are its text's words."""
    from trocr_np import formats
    from trocr_np.formats._common import xml_text
    p = tmp_path / "page.png"
    render_page([(12, 14, "hello there", 0, 26), (12, 60, "world", 1, 26)], (260, 110))[0].save(p)
    base = ["ocr", str(p), "--model", model_dir, "--max-new-tokens", "6"] + SMALL
    assert main(base + ["--format", "jsonl"]) == 0
    rec, = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rec["page_count"] == 1 and len(rec["lines"]) == 2
    for ln in rec["lines"]:
        assert [w["text"] for w in ln.get("words", [])] == ln["text"].split()
        assert {w["method"] for w in ln.get("words", [])} <= {"detector", "attention"}
        assert len(ln["tokens"]) >= 1 and all(0 <= prob <= 1 for _, prob in ln["tokens"])
    assert main(base + ["--format", "hocr"]) == 0
    page, = formats.read_hocr(capsys.readouterr().out)
    assert [" ".join(ln.text.split()) for ln in page.lines] == \
        [" ".join(xml_text(ln["text"]).split()) for ln in rec["lines"]]
