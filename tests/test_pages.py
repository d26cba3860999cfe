"""weights/pages.py (handwritten pages with line ground truth), weights/pagetext.py and
weights/fonts.py (the pinned @fontsource handwriting families)."""
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
sys.path.insert(0, str(WEIGHTS))
import fonts  # noqa: E402
import pages  # noqa: E402
import pagetext  # noqa: E402


@pytest.fixture(scope="module")
def hands():
    found = pages.find_hands("all")
    if not found:
        pytest.skip("no handwriting fonts: python weights/fonts.py fetch, or the Debian fonts of .ci/run")
    return found


def _polygon_mask(poly, size):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon([tuple(map(float, v)) for v in poly], fill=1)
    return np.asarray(m, bool)


# --------------------------------------------------------------------------- fonts.json

def test_pinned_fonts_are_many_hands_with_a_balanced_heldout_set():
    pins = fonts.load_pins()
    assert len(pins) >= 100
    held = fonts.select(pins, "heldout")
    assert len(held) >= 12 and {p.style for p in held} == set(fonts.STYLES)
    assert len(fonts.select(pins, "train")) + len(held) == len(pins)
    for p in pins:
        assert p.package == "@fontsource/" + p.slug and p.file == f"files/{p.slug}-latin-400-normal.woff"
        assert p.license in ("OFL-1.1", "Apache-2.0") and int(p.sha256, 16) >= 0
    # no family that weights/synth.py already brings from Debian
    assert not {"dancing-script", "kaushan-script", "klee-one", "yusei-magic"} & {p.slug for p in pins}


def test_load_pins_names_the_bad_file(tmp_path):
    bad = tmp_path / "fonts.json"
    bad.write_text('{"fonts": [{"family": "X"}]}')
    with pytest.raises(ValueError, match="fonts.json"):
        fonts.load_pins(bad)
    with pytest.raises(ValueError, match="split must be one of"):
        fonts.select((), "test")


def _fake_npm(tmp_path, payload: bytes) -> str:
    """An `npm` whose `pack SPEC --pack-destination DIR` writes a tarball holding `payload`
    as the latin 400 file, like the registry's @fontsource packages."""
    tgz = tmp_path / "src.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        for name, data in (("package/files/fake-latin-400-normal.woff", payload), ("package/LICENSE", b"OFL")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    npm = tmp_path / "npm"
    npm.write_text(f"#!{sys.executable}\nimport shutil, sys\n"
                   f"shutil.copy({str(tgz)!r}, sys.argv[sys.argv.index('--pack-destination') + 1] + '/f.tgz')\n")
    npm.chmod(0o755)
    return str(npm)


def test_fetch_extracts_and_verifies_the_pinned_file(tmp_path):
    payload = b"wOFF not really a font"
    pin = fonts.FontPin("Fake", "@fontsource/fake", "1.0.0", "OFL-1.1", "files/fake-latin-400-normal.woff",
                        hashlib.sha256(payload).hexdigest(), "print", "heldout", False)
    cache = tmp_path / "cache"
    npm = _fake_npm(tmp_path, payload)
    path = fonts.fetch_one(pin, cache, npm=npm)
    assert path.read_bytes() == payload and fonts.is_fetched(pin, cache)
    assert (cache / "fake-1.0.0-LICENSE").read_bytes() == b"OFL"
    assert fonts.hands("heldout", cache, pins=(pin,)) == [(pin, str(path))]
    assert fonts.hands("train", cache, pins=(pin,)) == []
    path.write_bytes(b"tampered")                    # a corrupt cache entry is not used ...
    assert not fonts.is_fetched(pin, cache)
    assert fonts.fetch_one(pin, cache, npm=npm).read_bytes() == payload   # ... and is fetched again
    wrong = fonts.FontPin(*[getattr(pin, f) for f in ("family", "package", "version", "license", "file")],
                          "0" * 64, "print", "heldout", False)
    with pytest.raises(RuntimeError, match="sha256"):
        fonts.fetch_one(wrong, tmp_path / "other", npm=npm)


# --------------------------------------------------------------------------- text

def test_documents_are_deterministic_and_shaped_like_their_kind():
    for kind in pagetext.KINDS:
        a = pagetext.document(np.random.default_rng([5, 1]), kind)
        b = pagetext.document(np.random.default_rng([5, 1]), kind)
        assert a == b and len(a) >= 2
        assert all((blk.text or blk.label).isascii() for blk in a)
    letter = pagetext.document(np.random.default_rng(2), "letter")
    assert any(blk.wrap for blk in letter) and letter[-1].text in pagetext.FIRST
    assert all(blk.label.endswith(":") for blk in pagetext.document(np.random.default_rng(3), "form")[1:])
    with pytest.raises(ValueError, match="unknown page kind"):
        pagetext.document(np.random.default_rng(0), "poem")


def test_sentences_fall_back_to_the_builtin_list(tmp_path):
    assert pagetext.load_sentences((str(tmp_path / "missing"),)) == tuple(pagetext.EVERYDAY)
    f = tmp_path / "cookies"
    f.write_text("The cat sat on the mat. It was warm!\n\t\t-- Somebody\n%\nQ: Why?\nA: Because.\n%\n"
                 "Ünïcode is dropped.\n%\nshort\n")
    got = pagetext.load_sentences((str(f),))
    assert got[:2] == ("The cat sat on the mat.", "It was warm!")
    assert not any("Somebody" in s or "Why" in s or "short" == s for s in got)


# --------------------------------------------------------------------------- pages

@pytest.mark.parametrize("kind", pages.KINDS)
def test_page_ground_truth_covers_the_ink(hands, kind):
    p = pages.make_page(11, hands, kind)
    w, h = p.image.size
    assert p.image.mode == "RGB" and 880 <= w <= 1320 and 880 <= h <= 1320
    assert p.ink_mask.shape == p.line_ink.shape == (h, w) and p.ink_mask.any()
    assert 3 <= len(p.lines) <= 25
    np.testing.assert_array_equal(p.line_ink > 0, p.ink_mask)
    grey = np.asarray(p.image.convert("L"), np.float32)
    assert grey[p.ink_mask].mean() < np.median(grey[~p.ink_mask]) - 30   # the mask is where the ink is
    for k, line in enumerate(p.lines):
        assert line.text and line.text == line.text.strip()
        poly = line.polygon
        assert poly.ndim == 2 and poly.shape[1] == 2 and len(poly) >= 4
        assert (poly >= 0).all() and (poly[:, 0] <= w - 1).all() and (poly[:, 1] <= h - 1).all()
        own = p.line_ink == k + 1
        assert own.any(), f"line {k} has no ink"
        inside = _polygon_mask(poly, (w, h))
        assert (own & inside).sum() >= 0.98 * own.sum(), f"line {k}: polygon misses ink"
        # the baseline runs through the line's polygon, left to right
        b = line.baseline
        xm = (b[0, 0] + b[-1, 0]) / 2
        assert b[-1, 0] > b[0, 0] and inside[int(np.interp(xm, b[:, 0], b[:, 1])) - 2, int(xm)]


def test_page_is_a_pure_function_of_seed(hands):
    a, b, c = (pages.make_page(s, hands) for s in (7, 7, 8))
    np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
    for la, lb in zip(a.lines, b.lines):
        np.testing.assert_array_equal(la.polygon, lb.polygon)
    assert [ln.text for ln in a.lines] != [ln.text for ln in c.lines]


def test_neighbouring_lines_are_tight_and_pages_vary(hands):
    """Descenders of one line reach the ascenders of the next: some pages have line
    polygons that overlap their neighbour's vertically; and the pages vary."""
    overlaps, looks, papers = 0, set(), set()
    for seed in range(6):
        p = pages.make_page(seed, hands, "letter", look=("scan", "phone")[seed % 2],
                            paper=("plain", "ruled", "squared")[seed % 3])
        looks.add(p.look)
        papers.add(p.paper)
        for a, b in zip(p.lines, p.lines[1:]):
            overlaps += a.polygon[:, 1].max() > b.polygon[:, 1].min()
    assert overlaps >= 3 and looks == {"scan", "phone"} and papers == {"plain", "ruled", "squared"}


def test_line_ends_are_hyphenated(hands):
    """A long word at a full line's end is cut after a vowel, with a hyphen, to fit the room left.
    (Tested on the rule itself: how often six pages hyphenate depends on the fonts' metrics, which
    moved with Pillow 13: 1 page in 12 here.)"""
    path = hands[0].path
    seed = next(s for s in range(100) if np.random.default_rng(s).random() >= 0.4)  # one that hyphenates
    rng = lambda: np.random.default_rng(seed)  # noqa: E731
    word = pages._Tok("understanding", path, 40, 5.0)
    room = pages._font(path, 40).getlength("underst-") + 1
    head = pages._hyphen(rng(), word, room)
    assert head is not None and head.text.endswith("-") and "understanding".startswith(head.text[:-1])
    assert pages._font(path, 40).getlength(head.text) <= room and head.text[-2] in "aeiouy"
    assert pages._hyphen(rng(), pages._Tok("short", path, 40, 0.0), 1e6) is None          # too short to cut
    assert pages._hyphen(rng(), pages._Tok("understanding", path, 40, 0.0), 1.0) is None  # no room


def test_debian_fonts_are_used_when_nothing_is_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("TROCR_NP_FONTS", str(tmp_path))
    assert fonts.font_paths("all") == []
    found = pages.find_hands("heldout")
    if not found:
        pytest.skip("Debian handwriting fonts not installed (see .ci/run)")
    assert {h.name for h in found} <= set(pages.synth.HELDOUT_FONTS)
    p = pages.make_page(1, found, "note")
    assert p.hand in pages.synth.HELDOUT_FONTS and len(p.lines) >= 3


def test_font_paths_and_line_crops(hands):
    p = pages.make_page(3, [hands[0].path], "list")     # a plain font path is a hand too
    assert p.hand == Path(hands[0].path).stem
    for k, line in enumerate(p.lines):
        crop = pages.line_crop(p, k)
        (x0, y0), (x1, y1) = line.polygon.min(0), line.polygon.max(0)
        assert crop.size[0] >= x1 - x0 and crop.size[1] >= y1 - y0
        assert crop.size[1] <= 1.3 * (y1 - y0) + 3


def test_bad_arguments_are_clear_errors(hands):
    with pytest.raises(ValueError, match="no hands"):
        pages.make_page(0, [])
    with pytest.raises(ValueError, match="unknown page kind"):
        pages.make_page(0, hands, "poem")


def test_cli_writes_pages_and_labels(tmp_path, hands):
    assert pages.main(["--out", str(tmp_path), "-n", "1", "--split", "all", "--kind", "list"]) == 0
    labels = json.loads((tmp_path / "labels.json").read_text())
    (name, page), = labels.items()
    assert Image.open(tmp_path / name).size[0] >= 880 and page["kind"] == "list" and len(page["lines"]) >= 3
