"""Line finding that keeps handwritten lines whole (detector_np.linefind, method "lines") and the
crop polarity normaliser (trocr_np.crop.upright_polarity).

Geometry runs the real CRAFT weights on small rendered canvases (~1 s each); the flood is held
equal to its readable reference; the polarity rule is checked on synthetic and photographed crops.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline_pages import font, polygon_iou
from detector_np import DetectOptions, LineOptions, detect, find_lines
from detector_np.linefind import LEVELS, chain_words, flood, flood_ref
from trocr_np.crop import otsu_threshold, upright_polarity

SMALL = DetectOptions(canvas_size=640, mag_ratio=1.0)
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def craft():
    from detector_np.weights import load_craft
    return load_craft()


def ink_inside(image, polys, dark=128):
    """Fraction of the dark pixels of `image` inside some polygon."""
    ink = np.asarray(image.convert("L")) < dark
    cover = Image.new("1", image.size)
    for p in polys:
        ImageDraw.Draw(cover).polygon([tuple(x) for x in np.asarray(p, float)], fill=1)
    return float(np.asarray(cover)[ink].mean())


def render(lines, size, fk=1, fs=34, pitch=None):
    """Lines of text at (x, y); returns the image and each line's ink box as a quad."""
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    quads = []
    for x, y, text in lines:
        d.text((x, y), text, font=font(fk, fs), fill="black")
        l, t, r, b = d.textbbox((x, y), text, font=font(fk, fs))
        quads.append([[l, t], [r, t], [r, b], [l, b]])
    return im, np.asarray(quads, float)


# ---------------------------------------------------------------- the flood
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flood_equals_reference(seed):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, LEVELS + 1, (23, 31))
    mask = rng.random((23, 31)) < 0.7
    seeds = np.zeros((23, 31), np.int32)
    for k in range(1, 5):
        seeds[rng.integers(23), rng.integers(31)] = k
    ref = flood_ref(levels, seeds, mask)
    np.testing.assert_array_equal(flood(levels, seeds, mask), ref)
    assert (ref[~mask & (seeds == 0)] == 0).all() and (ref[seeds > 0] == seeds[seeds > 0]).all()


def test_flood_splits_at_the_lowest_score_between_seeds():
    # two peaks (rows 2 and 12) joined by a valley at row 9: the boundary falls at the valley
    rows = np.array([3, 6, 9, 6, 5, 4, 3, 2, 1, 0, 2, 5, 9, 5, 3], float)
    levels = np.repeat((rows * 20)[:, None], 4, 1).astype(int)
    seeds = np.zeros(levels.shape, np.int32)
    seeds[2, 1], seeds[12, 1] = 1, 2
    owner = flood(levels, seeds, np.ones(levels.shape, bool))
    assert (owner[:9] == 1).all() and (owner[10:] == 2).all()


# ---------------------------------------------------------------- chaining (boxes only)
def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_chain_words_joins_gaps_and_keeps_rows_and_columns_apart():
    o = LineOptions()
    # row 1: gaps of 0.3 and 2 heights; row 2 touches row 1 (overlap 20%); a far column on row 1
    words = np.array([box(10, 10, 80, 40), box(89, 12, 150, 41), box(210, 9, 260, 40),
                      box(12, 34, 90, 64), box(100, 36, 170, 66), box(600, 10, 660, 40)], float)
    lines, marks, angle = chain_words(words, o, center=(350, 40))
    assert sorted(lines) == [[0, 1, 2], [3, 4], [5]] and marks == []


def test_chain_band_joins_a_comma_ended_word_to_a_capital():
    # "Squares, Pentagons": the comma drags the last box down, the capital P sits high; the boxes
    # overlap by 8 / 26 heights only, the chain's band (rows 100..130) by 16 / 26
    words = np.array([box(0, 100, 60, 130), box(70, 100, 130, 130), box(140, 100, 200, 130),
                      box(210, 108, 250, 136), box(290, 90, 320, 116), box(322, 100, 380, 130),
                      box(390, 100, 450, 130)], float)
    lines, marks, _ = chain_words(words, LineOptions(), center=(225, 115))
    assert lines == [[0, 1, 2, 3, 4, 5, 6]] and marks == []


def test_far_round_joins_widely_spaced_words_not_columns():
    # a writer who leaves 3-3.5 heights between words (rows 1, 2; each row's words where the other
    # row has its gaps, as in writing); row 3 has two columns 9 heights apart
    words = np.array([box(0, 100, 60, 130), box(165, 100, 260, 130), box(365, 101, 470, 131),
                      box(0, 150, 160, 180), box(250, 149, 355, 179), box(460, 150, 520, 180),
                      box(0, 300, 60, 330), box(330, 300, 390, 330)], float)
    lines, _, _ = chain_words(words, LineOptions(), center=(200, 215))
    assert sorted(lines) == [[0, 1, 2], [3, 4, 5], [6], [7]]
    lines, _, _ = chain_words(words, LineOptions(far_gap=0), center=(200, 215))
    assert len(lines) == 8                                # the first round alone keeps them apart


def test_far_round_keeps_a_column_gutter():
    # two columns 4 heights apart (inside far_gap): nothing on the rows beside the gap reaches
    # into it, so no far link crosses it; each column's lines stay apart
    left = [box(0, 100 + 45 * r, 150 + 20 * (r % 2), 130 + 45 * r) for r in range(4)]
    right = [box(290, 100 + 45 * r, 420, 130 + 45 * r) for r in range(4)]
    lines, _, _ = chain_words(np.array(left + right, float), LineOptions(), center=(200, 200))
    assert sorted(lines) == [[0], [1], [2], [3], [4], [5], [6], [7]]


def test_lone_piece_of_a_word_is_a_mark_and_a_lone_word_a_line():
    # a descender boxed apart under word 1 (narrow, overlapping it) is left to the flood; a whole
    # word on the row below stays a line of its own
    words = np.array([box(0, 100, 60, 130), box(70, 100, 130, 130), box(140, 100, 200, 130),
                      box(126, 124, 138, 146), box(60, 150, 130, 180)], float)
    lines, marks, _ = chain_words(words, LineOptions(), center=(100, 140))
    assert sorted(lines) == [[0, 1, 2], [4]] and marks == [3]


def test_letters_chained_beside_their_line_join_it():
    # a slanted handwritten line (word boxes of a scanned page, rounded): CRAFT boxed the letters
    # of "nothing" and "they can" apart, and they chained among themselves beside the line
    words = np.array([box(45, 375, 87, 421), box(91, 380, 204, 430), box(238, 384, 275, 417),
                      box(313, 383, 369, 417), box(401, 382, 458, 417), box(504, 384, 525, 417),
                      box(559, 394, 589, 416), box(593, 386, 612, 408), box(613, 391, 622, 408),
                      box(622, 401, 639, 444), box(681, 376, 745, 419), box(772, 380, 798, 411),
                      box(796, 399, 815, 437), box(849, 393, 889, 415), box(903, 379, 938, 415)], float)
    lines, marks, _ = chain_words(words, LineOptions(), center=(490, 410), angle=0.0)
    assert len(lines) == 1 and sorted(lines[0] + marks) == list(range(len(words)))


# ---------------------------------------------------------------- real CRAFT on rendered lines
def test_punctuation_and_dots_join_their_line(craft):
    im, quads = render([(14, 24, "Yes, it is. Oh; fine, go!")], (520, 100), fk=3)
    det = detect(im, craft, SMALL)
    _, polys = find_lines(det, im.size, LineOptions())
    assert len(polys) == 1
    assert polygon_iou(polys[0], quads[0], im.size) >= 0.5
    assert ink_inside(im, polys) >= 0.99                  # commas, full stop, i-dots, semicolon inside


def test_touching_lines_stay_apart_and_cover_their_ink(craft):
    # descenders of line 1 (g, y, p, j) reach the ascenders of line 2 (h, l, d, b, k)
    im, quads = render([(14, 10, "gypsy jumping quickly"), (14, 54, "hold the black kite")], (480, 120), fs=36)
    det = detect(im, craft, SMALL)
    _, polys = find_lines(det, im.size, LineOptions())
    assert len(polys) == 2
    ious = np.array([[polygon_iou(p, g, im.size) for g in quads] for p in polys])
    assert (ious.max(0) >= 0.5).all() and sorted(ious.argmax(1)) == [0, 1]
    assert ink_inside(im, polys) >= 0.98


def test_wide_word_gaps_stay_one_line_and_columns_two(craft):
    im, quads = render([(14, 20, "one       wide      gap"), (14, 90, "left"), (420, 90, "right")], (600, 160),
                       fk=3, fs=30)
    det = detect(im, craft, SMALL)
    _, polys = find_lines(det, im.size, LineOptions())
    assert len(polys) == 3
    for g in quads:
        assert max(polygon_iou(p, g, im.size) for p in polys) >= 0.5


def test_generated_page_lines_whole(craft):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "weights"))
    from pages import find_hands, make_page
    page = make_page(3, find_hands("heldout"), kind="note", look="scan", paper="plain")
    scale = 640 / max(page.image.size)
    im = page.image.resize((round(page.image.width * scale), round(page.image.height * scale)))
    det = detect(im, craft, SMALL)
    _, polys = find_lines(det, im.size, LineOptions())
    truth = [g.polygon * scale for g in page.lines]
    best = [max(polygon_iou(p, g, im.size) for p in polys) for g in truth]
    assert np.mean(np.array(best) >= 0.5) >= 0.8
    assert len(polys) <= 1.25 * len(truth)


# ---------------------------------------------------------------- polarity
def test_otsu_splits_two_levels():
    g = np.r_[np.full(50, 30), np.full(70, 200)].astype(np.uint8)
    t = otsu_threshold(g)
    assert 30 <= t < 200


@pytest.mark.parametrize("bg,ink", [((20, 140, 210), (255, 255, 255)),     # white on blue (WHO poster)
                                    ((25, 30, 60), (240, 240, 240)),       # white on dark (street sign)
                                    ((200, 60, 40), (250, 230, 120))])     # yellow on red
def test_light_on_dark_crops_become_dark_on_light(bg, ink):
    im, _ = render([(6, 4, "Hello world")], (220, 50))
    mask = np.asarray(im.convert("L")) < 128
    crop = np.where(mask[..., None], np.array(ink, np.uint8), np.array(bg, np.uint8)).astype(np.uint8)
    out = upright_polarity(crop)
    assert out.shape == crop.shape and out.dtype == np.uint8
    g = out.mean(2)
    assert np.median(g[~mask]) > 200 and np.median(g[mask]) < 60


@pytest.mark.parametrize("bg,ink", [((255, 255, 255), (0, 0, 0)), ((230, 220, 190), (30, 40, 120))])
def test_dark_on_light_crops_are_unchanged(bg, ink):
    im, _ = render([(6, 4, "Hello world")], (220, 50))
    mask = np.asarray(im.convert("L")) < 128
    crop = np.where(mask[..., None], np.array(ink, np.uint8), np.array(bg, np.uint8)).astype(np.uint8)
    assert upright_polarity(crop) is crop or np.array_equal(upright_polarity(crop), crop)
    flat = np.full((10, 30, 3), 90, np.uint8)
    assert np.array_equal(upright_polarity(flat), flat)
    with pytest.raises(ValueError):
        upright_polarity(np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize("name", ["english_title.png",     # english.png's title, white on blue
                                  "french_palais.png"])    # french.jpg's "Palais du LOUVRE", white on dark
def test_photo_crops(name):
    crop = np.asarray(Image.open(DATA / name).convert("RGB"))
    out = upright_polarity(crop)
    assert not np.array_equal(out, crop)
    g = out.mean(2)
    assert np.median(g) > 180 and np.percentile(g, 3) < 80     # light background, dark lettering
    assert np.array_equal(upright_polarity(out), out)           # dark-on-light stays as it is


def test_split_wide_cuts_at_word_gaps():
    from trocr_np.crop import split_wide
    im, _ = render([(6, 4, "alpha   beta   gamma   delta   epsilon   zeta")], (760, 50), fk=3, fs=28)
    crop = np.asarray(im)
    pieces = split_wide(crop, 6.0)
    assert len(pieces) >= 2 and sum(p.shape[1] for p in pieces) == crop.shape[1]
    for p in pieces:   # every cut falls in a gap: no ink in the cut columns
        assert (p[:, 0].mean(1) > 200).all()
    assert len(split_wide(crop, 0)) == 1 and len(split_wide(crop, 100)) == 1
