"""Synthetic handwritten text lines: English-like text rendered in handwriting fonts,
then warped and degraded so it looks written on paper and photographed.

Usable on its own (numpy + Pillow only, no torch):

    python weights/synth.py --out /tmp/lines -n 100 --seed 0                 # training fonts
    python weights/synth.py --out /tmp/lines -n 100 --fonts heldout --seed 1 # evaluation fonts

writes `DIR/000000.png ...` and `DIR/labels.tsv` (`file<TAB>text` per line).

Every sample is a pure function of (seed, index, font list, word list): sample i draws
from its own `np.random.default_rng([seed, i])`, so data-loader workers can generate
disjoint, reproducible streams without sharing state.

Fonts come from Debian packages (see FONTS); two families are never used for training
(HELDOUT_FONTS) so we can measure how the recogniser copes with an unseen hand.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# name -> (file name, Debian package). Files are looked up by name under FONT_DIRS.
FONTS = {
    "dkg": ("dkg.ttf", "fonts-dkg-handwriting"),
    "dkg-bold": ("dkgBd.ttf", "fonts-dkg-handwriting"),
    "dkg-italic": ("dkgIt.ttf", "fonts-dkg-handwriting"),
    "dkg-bold-italic": ("dkgBI.ttf", "fonts-dkg-handwriting"),
    "breip": ("Breip.ttf", "fonts-breip"),
    "bwht-build": ("BecauseWeBuild-Regular.otf", "fonts-bwht"),
    "bwht-connect": ("BecauseWeConnect-Regular.otf", "fonts-bwht"),
    "bwht-create": ("BecauseWeCreate-Regular.otf", "fonts-bwht"),
    "bwht-learn": ("BecauseWeLearn-Regular.otf", "fonts-bwht"),
    "bwht-mentor": ("BecauseWeMentor-Regular.otf", "fonts-bwht"),
    "bwht-organize": ("BecauseWeOrganize-Regular.otf", "fonts-bwht"),
    "dancingscript": ("DancingScript-Regular.otf", "fonts-dancingscript"),
    "dancingscript-bold": ("DancingScript-Bold.otf", "fonts-dancingscript"),
    "ecolier-court": ("Ecolier-court.ttf", "fonts-ecolier-court"),
    "femkeklaver": ("femkeklaver.ttf", "fonts-femkeklaver"),
    "humor-sans": ("Humor-Sans.ttf", "fonts-humor-sans"),
    "kaushanscript": ("KaushanScript-Regular.otf", "fonts-kaushanscript"),
    "comic-neue": ("ComicNeue-Regular.otf", "fonts-comic-neue"),
    "comic-neue-bold": ("ComicNeue-Bold.otf", "fonts-comic-neue"),
    "comic-neue-italic": ("ComicNeue-Italic.otf", "fonts-comic-neue"),
    "comic-neue-light": ("ComicNeue-Light.otf", "fonts-comic-neue"),
    "rufscript": ("Rufscript010.ttf", "fonts-rufscript"),
    "sj-delphine": ("Delphine.ttf", "fonts-sjfonts"),
    "sj-stevehand": ("SteveHand.ttf", "fonts-sjfonts"),
    "leckerli-one": ("LeckerliOne-Regular.ttf", "fonts-leckerli-one"),
    "yusei-magic": ("YuseiMagic-Regular.ttf", "fonts-yusei-magic"),
    "klee": ("KleeOne-Regular.ttf", "fonts-klee"),
    "klee-semibold": ("KleeOne-SemiBold.ttf", "fonts-klee"),
}
# Whole hands kept out of training: Breip and one of the six "Because We Had To"
# writers (neither shares a writer with any training font).
HELDOUT_FONTS = ("breip", "bwht-learn")
# Fonts that draw every letter as a capital (or small capital): their labels are
# upper-cased, since the ink cannot tell "a" from "A".
CAPS_FONTS = frozenset({"bwht-build", "bwht-connect", "bwht-create", "bwht-learn", "bwht-mentor",
                        "bwht-organize", "humor-sans"})
TRAIN_FONTS = tuple(n for n in FONTS if n not in HELDOUT_FONTS)

FONT_DIRS = [os.environ.get("TROCR_NP_FONT_DIR", ""), "/usr/share/fonts", "/usr/local/share/fonts",
             str(Path.home() / ".local/share/fonts")]
WORDS_FILE = os.environ.get("TROCR_NP_WORDS", "/usr/share/dict/words")

# Frequent English words (including contractions), mixed with dictionary words so lines
# read like text rather than a shuffled dictionary.
COMMON_WORDS = """the of and to a in is it you that he was for on are with as I his they be at
one have this from or had by not word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write would like
so these her long make thing see him two has look more day could go come did number sound no most
people my over know water than call first who may down side been now find any new work part take
get place made live where after back little only round man year came show every good me give our
under name very through just form great think say help low line before turn cause same mean
differ move right boy old too does tell sentence set three want air well also play small end put
home read hand port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother world near build
self earth father head stand own page should country found answer school grow study still learn
plant cover food sun four thought let keep eye never last door between city tree cross since
hard start might story saw far sea draw left late run don't while press close night real life
few stop open seem together next white children begin got walk example ease paper often always
music those both mark book letter until mile river car feet care second group carry took rain
eat room friend began idea fish mountain north once base hear horse cut sure watch color face
wood main enough plain girl usual young ready above ever red list though feel talk bird soon body
dog family direct pose leave song measure state product black short numeral class wind question
happen complete ship area half rock order fire south problem piece told knew pass farm top whole
king size heard best hour better true during hundred am remember step early hold west ground
interest reach fast five sing listen six table travel less morning ten simple several vowel
toward war lay against pattern slow center love person money serve appear road map science rule
govern pull cold notice voice fall power town fine certain fly unit lead cry dark machine note
wait plan figure star box noun field rest correct able pound done beauty drive stood contain
front teach week final gave green oh quick develop sleep warm free minute strong special mind
behind clear tail produce fact street inch lot nothing course stay wheel full force blue object
decide surface deep moon island foot yet busy test record boat common gold possible plane age
dry wonder laugh thousand ago ran check game shape yes hot miss brought heat snow bed bring sit
perhaps fill east weight language among I'm it's can't won't isn't didn't we'll you're
Monday Tuesday Friday Sunday January March June October London Paris Anna John Mary Peter
""".split()

PUNCT_AFTER = [(",", 0.09), (".", 0.05), (";", 0.01), (":", 0.015), ("!", 0.01), ("?", 0.01)]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


# --------------------------------------------------------------------------- text

@lru_cache(maxsize=4)
def load_words(path: str = WORDS_FILE) -> tuple[str, ...]:
    """Dictionary words that look like running text: lowercase or Capitalised ASCII,
    2..14 letters, no possessives. (N,) tuple."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").split()
    except FileNotFoundError:
        raise FileNotFoundError(f"word list {path} not found (Debian package wamerican, "
                                "or set TROCR_NP_WORDS)") from None
    ok = re.compile(r"^(?:[a-z]{2,14}|[A-Z][a-z]{1,13})$")
    words = tuple(w for w in lines if ok.match(w))
    if len(words) < 1000:
        raise ValueError(f"word list {path} has only {len(words)} usable words")
    return words


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(8)
    if kind == 0:
        return str(int(rng.integers(0, 100)))
    if kind == 1:
        return str(int(rng.integers(100, 100000)))
    if kind == 2:
        return f"{rng.integers(1, 29)}/{rng.integers(1, 13):02d}/{rng.integers(1950, 2031)}"
    if kind == 3:
        return f"{rng.integers(0, 24)}:{rng.integers(0, 60):02d}"
    if kind == 4:
        return f"${rng.integers(1, 500)}.{rng.integers(0, 100):02d}"
    if kind == 5:
        return f"{rng.integers(1, 100)}%"
    if kind == 6:
        return f"{rng.integers(1, 29)} {MONTHS[rng.integers(12)]}"
    return f"{rng.integers(0, 1000)}.{rng.integers(0, 10)}"


def random_text(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    """One line of English-like text: 1..8 tokens (words, numbers, dates, prices) with
    realistic capitalisation and punctuation."""
    n = int(rng.choice(np.arange(1, 9), p=[.08, .12, .15, .16, .16, .14, .10, .09]))
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.10:
            w = _number(rng)
        elif r < 0.55:
            w = COMMON_WORDS[rng.integers(len(COMMON_WORDS))]
        else:
            w = words[rng.integers(len(words))]
        if w[0].isalpha():
            c = rng.random()
            if (i == 0 and c < 0.5) or c < 0.06:
                w = w[0].upper() + w[1:]
            elif c > 0.985:
                w = w.upper()
        q = rng.random()
        if q < 0.02:
            w = f'"{w}"'
        elif q < 0.035:
            w = f"({w})"
        elif q < 0.05 and i + 1 < n:
            w = w + "-"  # hyphenated compound: no space before the next word
        for p, pr in PUNCT_AFTER:
            if rng.random() < pr and not w.endswith("-"):
                w += p
                break
        out.append(w)
    text = " ".join(out).replace("- ", "-")
    if n >= 3 and rng.random() < 0.35 and text[-1].isalnum():
        text += "." if rng.random() < 0.8 else rng.choice(["?", "!"])
    return text


# --------------------------------------------------------------------------- fonts

@lru_cache(maxsize=1)
def _font_index() -> dict[str, str]:
    """file name -> path for every font file under FONT_DIRS (first hit wins)."""
    index = {}
    for d in FONT_DIRS:
        if d and os.path.isdir(d):
            for root, _, files in os.walk(d):
                for f in files:
                    index.setdefault(f, os.path.join(root, f))
    return index


def font_path(name: str) -> str:
    """Path of the font called `name` in FONTS; FileNotFoundError naming the package."""
    if name not in FONTS:
        raise ValueError(f"unknown font {name!r}; known: {', '.join(FONTS)}")
    fname, pkg = FONTS[name]
    path = _font_index().get(fname)
    if path is None:
        raise FileNotFoundError(f"font {name!r} ({fname}) not found under {FONT_DIRS}; "
                                f"install the Debian package {pkg} or set TROCR_NP_FONT_DIR")
    return path


def available_fonts(names=None) -> list[str]:
    """The subset of `names` (default: all FONTS) whose files are installed."""
    out = []
    for n in (names if names is not None else FONTS):
        try:
            font_path(n)
            out.append(n)
        except FileNotFoundError:
            pass
    return out


def resolve_fonts(spec: str | list[str]) -> list[str]:
    """'train' | 'heldout' | 'all' | comma-separated names -> installed font names."""
    if isinstance(spec, str):
        groups = {"train": TRAIN_FONTS, "heldout": HELDOUT_FONTS, "all": tuple(FONTS)}
        names = list(groups[spec]) if spec in groups else [s for s in spec.split(",") if s]
    else:
        names = list(spec)
    for n in names:
        if n not in FONTS:
            raise ValueError(f"unknown font {n!r}; known: {', '.join(FONTS)}")
    found = available_fonts(names)
    if not found:
        raise FileNotFoundError(f"none of the fonts {names} is installed; install "
                                + " ".join(sorted({FONTS[n][1] for n in names})))
    return found


@lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(name), size)


@lru_cache(maxsize=64)
def font_charset(name: str) -> frozenset[str]:
    """Printable ASCII characters the font really has: a missing glyph renders as the
    font's .notdef shape, the same as a code point no font has."""
    return charset_of(_font(name, 32))


def charset_of(f: ImageFont.FreeTypeFont) -> frozenset[str]:
    """Printable ASCII characters (and space) that the loaded font `f` draws."""
    def sig(ch):
        m = f.getmask(ch)
        return m.size, bytes(m)
    notdef = sig("\U0010fffd")
    return frozenset(c for c in map(chr, range(33, 127)) if sig(c) != notdef) | {" "}


# --------------------------------------------------------------------------- rendering

def _smooth_noise(rng, shape, cell) -> np.ndarray:
    """Random field, smooth on the scale of `cell` pixels, ~unit std. (H, W) float32."""
    h, w = shape
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32), mode="F")
    return np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.float32)


def render_ink(text: str, font: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Ink coverage of `text` written in `font`: word by word with jittered spacing and
    baseline, optionally thicker or thinner strokes. (H, W) float32 in [0, 1]."""
    f = _font(font, size)
    words = text.split(" ")
    space = f.getlength(" ") or size * 0.3
    asc, desc = f.getmetrics()
    pad = size
    widths = [f.getlength(w) for w in words]
    total = sum(widths) + space * 1.6 * len(words) + 2 * pad
    canvas = Image.new("L", (int(total) + 1, asc + desc + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.random() < 0.25) * max(1, round(size / 40))
    x, y = float(pad), float(pad)
    for w, wd in zip(words, widths):
        dy = rng.normal(0, 0.03 * size)
        draw.text((x, y + dy), w, font=f, fill=255, stroke_width=stroke, stroke_fill=255)
        x += wd + space * rng.uniform(0.75, 1.5)
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    # keep a margin that survives the warp: rotation moves line ends by ~|sin a|*W/2
    rows = np.flatnonzero(ink.max(axis=1) > 0)
    cols = np.flatnonzero(ink.max(axis=0) > 0)
    if rows.size:
        my = int(0.4 * size + 0.04 * (cols[-1] - cols[0]))
        mx = int(0.4 * size)
        ink = np.pad(ink, max(my, mx))[rows[0] + max(my, mx) - my: rows[-1] + max(my, mx) + my + 1,
                                       cols[0] + max(my, mx) - mx: cols[-1] + max(my, mx) + mx + 1]
    return ink


def warp(ink: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Slant, small rotation, baseline wobble and elastic distortion as one piecewise-
    bilinear mesh warp (PIL MESH: each output cell samples a displaced source quad).
    (H, W) -> (H, W)."""
    h, w = ink.shape
    step = max(8, int(size * rng.uniform(0.5, 0.9)))    # mesh cell: about a letter
    xs = np.arange(0, w + step, step, dtype=np.float32)
    ys = np.arange(0, h + step, step, dtype=np.float32)
    X, Y = np.meshgrid(xs, ys)                          # (ny, nx) output node positions
    cy, cx = h / 2, w / 2
    ang = np.deg2rad(rng.normal(0, 1.2))
    shear = float(np.clip(rng.normal(0, 0.15), -0.4, 0.4))
    ca, sa = np.cos(ang), np.sin(ang)
    dy, dx = Y - cy, X - cx
    sx = cx + ca * dx - sa * dy + shear * dy
    sy = cy + sa * dx + ca * dy
    # baseline wobble: two slow vertical waves along the line
    for _ in range(2):
        lam = rng.uniform(3, 9) * size
        sy = sy + rng.uniform(0, 0.035) * size * np.sin(2 * np.pi * X / lam + rng.uniform(0, 2 * np.pi))
    # elastic: independent node jitter, interpolated bilinearly inside each cell
    amp = rng.uniform(0, 0.05) * size
    sx = sx + rng.normal(0, amp, sx.shape)
    sy = sy + rng.normal(0, amp, sy.shape)
    mesh = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            box = (int(xs[i]), int(ys[j]), int(xs[i + 1]), int(ys[j + 1]))
            quad = (sx[j, i], sy[j, i], sx[j + 1, i], sy[j + 1, i],
                    sx[j + 1, i + 1], sy[j + 1, i + 1], sx[j, i + 1], sy[j, i + 1])
            mesh.append((box, tuple(float(q) for q in quad)))
    img = Image.fromarray((np.clip(ink, 0, 1) * 255).astype(np.uint8))
    out = img.transform((w, h), Image.MESH, mesh, resample=Image.BILINEAR, fillcolor=0)
    return np.asarray(out, dtype=np.float32) / 255.0


def _crop_to_ink(ink: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Crop around the ink with random margins, like a detector's line box."""
    rows = np.flatnonzero(ink.max(axis=1) > 0.2)
    cols = np.flatnonzero(ink.max(axis=0) > 0.2)
    if rows.size == 0:
        return ink[: size, : size]
    th = rows[-1] - rows[0] + 1
    mt, mb = (rng.uniform(0.03, 0.35, 2) * th).astype(int)
    ml, mr = (rng.uniform(0.0, 0.5, 2) * th).astype(int)
    pad = max(mt, mb, ml, mr) + 1
    ink = np.pad(ink, pad)
    return ink[rows[0] + pad - mt: rows[-1] + pad + 1 + mb, cols[0] + pad - ml: cols[-1] + pad + 1 + mr]


def paper_and_ink(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Compose ink coverage onto textured paper, then camera-like degradations. -> RGB."""
    h, w = ink.shape
    # mostly white-ish paper; sometimes cream, grey or a faint tint
    paper = rng.uniform(200, 255) - rng.uniform(0, 8, 3) * np.array([0, 1, 3], np.float32)
    if rng.random() < 0.2:
        paper = paper - rng.uniform(0, 25, 3)
    paper = paper.astype(np.float32)
    light = 1 + _smooth_noise(rng, (h, w), cell=rng.uniform(40, 200)) * rng.uniform(0, 0.06)
    fibre = _smooth_noise(rng, (h, w), cell=rng.uniform(1.5, 4)) * rng.uniform(0, 6)
    bg = paper[None, None, :] * light[..., None] + fibre[..., None]
    if rng.random() < 0.12:  # a faint ruled line
        r = int(rng.uniform(0.6, 0.95) * h)
        bg[r: r + 1 + int(rng.random() < 0.3)] *= np.array([0.8, 0.85, 0.95], np.float32) ** rng.uniform(0.3, 1)
    inks = [(20, 20, 25), (15, 30, 110), (30, 45, 140), (60, 60, 65), (10, 10, 10), (110, 25, 30)]
    col = np.array(inks[rng.choice(len(inks), p=[.35, .2, .15, .12, .13, .05])], np.float32)
    col = np.clip(col + rng.normal(0, 12, 3), 0, 255)
    opacity = rng.uniform(0.75, 1.0) * (1 - np.clip(_smooth_noise(rng, (h, w), 3) * rng.uniform(0, 0.15), 0, 0.5))
    a = (np.clip(ink, 0, 1) * opacity)[..., None]
    img = bg * (1 - a) + col[None, None, :] * a
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 6)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.1)))
    if rng.random() < 0.25:  # lower resolution, scaled back (a far-away camera)
        s = rng.uniform(0.45, 0.85)
        out = out.resize((max(8, int(w * s)), max(8, int(h * s))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(30, 95)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out


def render_line(text: str, font: str, rng: np.random.Generator, size: int | None = None,
                augment: bool = True) -> Image.Image:
    """Render one handwritten-looking line. augment=False gives clean black-on-white."""
    size = size or int(rng.integers(24, 48))  # line heights ~40..80 px, like detector crops
    ink = render_ink(text, font, rng, size)
    if augment:
        ink = warp(ink, rng, size)
        ink = _crop_to_ink(ink, rng, size)
        return paper_and_ink(ink, rng)
    ink = _crop_to_ink(ink, rng, size)
    return Image.fromarray((255 - np.clip(ink, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def render_page(lines: list[str], font: str, rng: np.random.Generator, size: int = 40,
                margin: int = 60, spacing: float = 1.9) -> Image.Image:
    """A handwritten note: each line rendered and warped like a training line, placed
    on one sheet with a slightly uneven left margin and line pitch, then the whole
    sheet gets the paper, ink and camera treatment. -> RGB page."""
    inks = [_crop_to_ink(warp(render_ink(t, font, rng, size), rng, size), rng, size) for t in lines]
    pitch = int(spacing * size)
    w = max(i.shape[1] for i in inks) + 2 * margin
    h = pitch * len(lines) + 2 * margin
    page = np.zeros((h, w), np.float32)
    for k, ink in enumerate(inks):
        y = margin + k * pitch + int(rng.integers(-size // 10, size // 10 + 1))
        x = margin + int(rng.integers(0, size // 3 + 1))
        hh, ww = min(ink.shape[0], h - y), min(ink.shape[1], w - x)
        page[y: y + hh, x: x + ww] = np.maximum(page[y: y + hh, x: x + ww], ink[:hh, :ww])
    return paper_and_ink(page, rng)


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    text: str
    font: str


def make_sample(index: int, seed: int, fonts: list[str], words: tuple[str, ...] | None = None,
                augment: bool = True) -> Sample:
    """Sample `index` of the stream `seed`: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    words = words if words is not None else load_words()
    font = fonts[int(rng.integers(len(fonts)))]
    cs = font_charset(font)
    text = ""
    while not text.strip():
        text = random_text(rng, words)
        # drop characters this font cannot draw, so the label always matches the ink
        text = " ".join("".join(c for c in text if c in cs).split())
    if font in CAPS_FONTS:
        text = text.upper()
    return Sample(render_line(text, font, rng, augment=augment), text, font)


def write_dataset(out: str | Path, n: int, fonts: list[str], seed: int, augment: bool = True) -> Path:
    """Write n samples as out/NNNNNN.png plus out/labels.tsv (`file<TAB>text`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = load_words()
    lines = []
    for i in range(n):
        s = make_sample(i, seed, fonts, words, augment)
        name = f"{i:06d}.png"
        s.image.save(out / name)
        lines.append(f"{name}\t{s.text}\n")
    (out / "labels.tsv").write_text("".join(lines), encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-n", type=int, default=100, help="number of lines")
    p.add_argument("--fonts", default="train",
                   help="'train', 'heldout', 'all' or comma-separated names from FONTS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean", action="store_true", help="no augmentation: black ink on white")
    args = p.parse_args(argv)
    fonts = resolve_fonts(args.fonts)
    out = write_dataset(args.out, args.n, fonts, args.seed, augment=not args.clean)
    print(f"wrote {args.n} lines in {len(fonts)} fonts to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
