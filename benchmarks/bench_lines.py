"""Line finding benchmark: the line methods side by side on generated handwritten pages and photos.

    python benchmarks/bench_lines.py [--pages 12] [--split heldout] [--cache DIR] [--no-ocr]

Splits: settings are tuned on "train" pages (training hands, seeds TRAIN_SEED0 on; see
tune_lines.py) and reported on "heldout" pages (held-out hands, seeds HELDOUT_SEED0 on); the
two share neither hands nor seeds.
Generated pages (weights/pages.py, held-out hands by default) carry their line polygons and ink
mask; the photos of --photos (default english.png, french.jpg from tests/data or a folder) carry
their text in tests/data/<name>.txt, one line per row. Each page is detected once (CRAFT,
default DetectOptions; --cache keeps the detections between runs) and every method finds lines on
that one detection. Columns:

    recall, precision  true lines / found regions matched at polygon IoU >= 0.5
    regions/line       found regions per true line (each region counted for the true line that owns
                       most of the ink inside it; photos: regions / text rows)
    ink                fraction of the true lines' ink pixels inside some region
    CER                page character error rate (trocr_np.metrics.cer) of `ocr_page`'s text with the
                       bundled recogniser, rows in reading order; "before" rows recognise the crops as
                       they are, the "lines" row masks what is outside each line's polygon and normalises
                       the polarity and reads lines wider than 12 heights in pieces
                       (PageOptions.mask_outside, .polarity, .max_aspect)
    find %             line finding time as a percentage of the page's detection time
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "weights")]   # this checkout's packages, and the page generator

from detector_np.detect import DetectOptions, detect  # noqa: E402
from detector_np.lines import LineOptions, find_lines  # noqa: E402
from detector_np.weights import load_craft  # noqa: E402
from trocr_np.metrics import cer  # noqa: E402
from trocr_np.pipeline import PageOptions, ocr_page, resolve_model, trocr_recognizer  # noqa: E402

METHODS = ("easyocr", "handwriting", "lines")
MAX_ASPECT = 12.0   # PageOptions.max_aspect of the "lines" row (measured: CER 0.499 at 0, 0.452 at 12)
PHOTOS = ("english.png", "french.jpg")
TRAIN_SEED0 = 1000    # train pages (tuning: tune_lines.py) start here
HELDOUT_SEED0 = 100   # held-out pages start here: held-out seeds 0..99 were looked at while the method was built


def raster(poly, size) -> np.ndarray:
    m = Image.new("1", size)
    ImageDraw.Draw(m).polygon([tuple(p) for p in np.asarray(poly, float)], fill=1)
    return np.asarray(m)


def geometry(page, polys) -> dict:
    """recall, precision (IoU >= 0.5), regions per true line, ink inside: one generated page."""
    size = page.image.size
    G = [raster(g.polygon, size) for g in page.lines]
    P = [raster(p, size) for p in polys]
    iou = np.zeros((len(G), len(P)))
    for i, g in enumerate(G):
        for j, p in enumerate(P):
            inter = (g & p).sum()
            iou[i, j] = inter / (g | p).sum() if inter else 0.0
    per = np.zeros(len(G))
    union = np.zeros(size[::-1], bool)
    for p in P:
        owners = page.line_ink[p & (page.line_ink > 0)]
        if len(owners):
            per[np.bincount(owners).argmax() - 1] += 1
        union |= p
    return dict(recall=float((iou.max(1, initial=0) >= 0.5).mean()),
                precision=float((iou.max(0) >= 0.5).mean()) if len(P) else 0.0,
                per_line=float(per.mean()), ink=float(union[page.ink_mask].mean()))


def cached_detection(key, image, craft, cache):
    path = Path(cache) / f"{key}.pkl" if cache else None
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    t = time.perf_counter()
    det = detect(np.asarray(image), craft, DetectOptions())
    out = dict(det=det, detect_s=time.perf_counter() - t)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def run_method(method, image, det, recognizer):
    """(polygons, find seconds, page text or None) of one method on one detection."""
    o = LineOptions(method=method)
    t = time.perf_counter()
    _, polys = find_lines(det, image.size, o)
    find_s = time.perf_counter() - t
    text = None
    if recognizer is not None:
        po = PageOptions(lines=o, polarity=method == "lines", mask_outside=method == "lines",
                         max_aspect=MAX_ASPECT if method == "lines" else 0.0)
        text = ocr_page(image, options=po, recognizer=recognizer, detection=det).text
    return polys, find_s, text


def table(title, rows):
    print(f"\n{title}")
    print(f"{'method':<12} {'recall':>7} {'precision':>9} {'regions/line':>12} {'ink':>6} {'CER':>6} {'find %':>7}")
    for m in METHODS:
        r = [x for x in rows if x["method"] == m]
        if not r:
            continue

        def mean(k):
            v = [x[k] for x in r if x.get(k) is not None]
            return np.mean(v) if v else float("nan")
        print(f"{m:<12} {mean('recall'):7.3f} {mean('precision'):9.3f} {mean('per_line'):12.2f} {mean('ink'):6.3f} "
              f"{mean('cer'):6.3f} {100 * mean('find_frac'):7.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=None,
                    help=f"first page seed (default: {TRAIN_SEED0} for train, {HELDOUT_SEED0} otherwise)")
    ap.add_argument("--split", default="heldout", choices=("train", "heldout", "all"))
    ap.add_argument("--photos", nargs="*", default=None, help="photo paths (default: english.png, french.jpg)")
    ap.add_argument("--cache", default=None, help="folder keeping the detections between runs")
    ap.add_argument("--no-ocr", action="store_true", help="geometry only (no recogniser)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = ap.parse_args(argv)
    methods = args.methods
    first = args.first_seed if args.first_seed is not None else (TRAIN_SEED0 if args.split == "train" else HELDOUT_SEED0)

    from pages import find_hands, make_page
    craft = load_craft()
    recognizer = None if args.no_ocr else trocr_recognizer(resolve_model(None), PageOptions())
    rows = []
    hands = find_hands(args.split)
    for seed in range(first, first + args.pages):
        page = make_page(seed, hands)
        d = cached_detection(f"{args.split}_{seed:03d}", page.image, craft, args.cache)
        truth = "\n".join(g.text for g in page.lines)
        for m in methods:
            polys, find_s, text = run_method(m, page.image, d["det"], recognizer)
            rows.append(dict(method=m, find_frac=find_s / d["detect_s"], cer=None if text is None else cer(truth, text),
                             **geometry(page, polys)))
        print(f"page {seed}: {len(page.lines)} lines, {page.kind}, {page.hand}, {page.look}, "
              + ", ".join(f"{x['method']} {x['per_line']:.2f}/line cer {x['cer'] if x['cer'] is None else round(x['cer'], 3)}"
                          for x in rows[-len(methods):]), flush=True)
    table(f"generated pages ({args.pages}, {args.split} hands)", rows)

    photos = args.photos if args.photos is not None else [Path("/work/shared/images") / p for p in PHOTOS]
    for path in map(Path, photos):
        truth_file = ROOT / "tests" / "data" / (path.stem + ".txt")
        if not path.exists() or not truth_file.exists():
            continue
        truth = truth_file.read_text(encoding="utf-8").strip()
        image = Image.open(path).convert("RGB")
        d = cached_detection(f"photo_{path.stem}", image, craft, args.cache)
        prow = []
        for m in methods:
            polys, find_s, text = run_method(m, image, d["det"], recognizer)
            prow.append(dict(method=m, per_line=len(polys) / len(truth.splitlines()), find_frac=find_s / d["detect_s"],
                             cer=None if text is None else cer(truth, text)))
            if text is not None:
                print(f"{path.name} {m}: {text!r}")
        table(f"{path.name} ({len(truth.splitlines())} lines; recall/precision/ink need line polygons)", prow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
