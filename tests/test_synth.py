"""weights/synth.py: the synthetic handwritten-line generator (numpy + Pillow only)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
sys.path.insert(0, str(WEIGHTS))
import synth  # noqa: E402

WORDS = tuple(w for w in synth.COMMON_WORDS if w.isalpha())  # no dependency on wamerican


@pytest.fixture(scope="module")
def fonts():
    found = synth.available_fonts()
    if not found:
        pkgs = " ".join(sorted({pkg for _, pkg in synth.FONTS.values()}))
        pytest.skip(f"no handwriting fonts installed (apt-get install {pkgs})")
    return found


def test_font_groups_are_disjoint_and_known():
    assert len(synth.HELDOUT_FONTS) >= 2
    assert not set(synth.HELDOUT_FONTS) & set(synth.TRAIN_FONTS)
    assert set(synth.TRAIN_FONTS) | set(synth.HELDOUT_FONTS) == set(synth.FONTS)
    with pytest.raises(ValueError, match="unknown font 'nope'"):
        synth.resolve_fonts("dkg,nope")


def test_random_text_is_deterministic_and_line_shaped():
    a = [synth.random_text(np.random.default_rng([3, i]), WORDS) for i in range(300)]
    b = [synth.random_text(np.random.default_rng([3, i]), WORDS) for i in range(300)]
    assert a == b
    assert len(set(a)) > 290
    n_words = [len(t.split()) for t in a]
    # 1..8 tokens; a date like "13 Jan" is one token with a space
    assert min(n_words) >= 1 and max(n_words) <= 10 and 3 <= np.mean(n_words) <= 6
    assert all(t == t.strip() and "  " not in t and t.isascii() and t.isprintable() for t in a)
    joined = "".join(a)
    assert any(c.isdigit() for c in joined) and any(c in ",.?!:;" for c in joined)


def test_sample_is_a_pure_function_of_seed_and_index(fonts):
    s1 = synth.make_sample(5, 11, fonts, WORDS)
    s2 = synth.make_sample(5, 11, fonts, WORDS)
    s3 = synth.make_sample(6, 11, fonts, WORDS)
    assert s1.text == s2.text and s1.font == s2.font
    np.testing.assert_array_equal(np.asarray(s1.image), np.asarray(s2.image))
    assert (s1.text, np.asarray(s1.image).shape) != (s3.text, np.asarray(s3.image).shape)


def test_samples_look_like_text_lines(fonts):
    for i in range(12):
        s = synth.make_sample(i, 1, fonts, WORDS)
        a = np.asarray(s.image)
        assert s.image.mode == "RGB" and a.dtype == np.uint8
        h, w, _ = a.shape
        assert 12 <= h <= 200 and w >= h // 2
        assert s.text and set(s.text) <= synth.font_charset(s.font)
        if s.font in synth.CAPS_FONTS:
            assert s.text == s.text.upper()
        # ink is darker than paper: the darkest pixels are well below the median
        grey = a.mean(axis=2)
        assert np.percentile(grey, 1) < np.median(grey) - 40


def test_clean_render_is_black_on_white(fonts):
    img = synth.render_line("Hello world", fonts[0], np.random.default_rng(0), size=32, augment=False)
    a = np.asarray(img)
    assert a.max() == 255 and a.min() < 60


def test_load_words_filters_and_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="wamerican"):
        synth.load_words(str(tmp_path / "missing"))
    f = tmp_path / "words"
    f.write_text("\n".join(["apple's", "Zoë", "x", "USA"] + [f"word{'a' * (i % 9)}b" for i in range(10)]
                           + [("ab" * (1 + i % 6)) + chr(97 + i % 26) for i in range(1500)]))
    words = synth.load_words(str(f))
    assert "apple's" not in words and "Zoë" not in words and "x" not in words and "USA" not in words
    assert all(w.isalpha() and w.isascii() for w in words)


def test_cli_writes_images_and_labels(fonts, tmp_path):
    words = Path(synth.WORDS_FILE)
    if not words.is_file():
        pytest.skip(f"word list {words} missing (Debian package wamerican)")
    out = tmp_path / "lines"
    r = subprocess.run([sys.executable, str(WEIGHTS / "synth.py"), "--out", str(out), "-n", "3",
                        "--fonts", ",".join(fonts[:2]), "--seed", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = (out / "labels.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3
    for row in rows:
        name, text = row.split("\t")
        assert (out / name).is_file() and text
