"""Pipeline benchmark: per-stage times of `ocr_page`, and our perspective crop vs OpenCV's.

    python benchmarks/bench_pipeline.py [--model DIR] [--image PATH ...] [--canvas-size 1280]

1. Crops: `crop_quad` (NumPy homography + bilinear) vs cv2.getPerspectiveTransform +
   cv2.warpPerspective(INTER_LINEAR) on the same 200 rotated line quads, same process,
   with the max pixel difference.
2. Pages: load / detect / group / crop / recognize seconds per page. Without --model the
   recogniser is a no-op stand-in (so the numbers isolate detection and the geometry);
   with --model (or the bundled model, if installed) it is TrOCR.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_crops(n=200):
    from trocr_np.crop import crop_quad, quad_size
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1000, 1400, 3), dtype=np.uint8)
    quads = []
    for _ in range(n):
        c, w, h, a = rng.uniform([200, 100], [1200, 900]), rng.uniform(150, 600), rng.uniform(20, 60), rng.uniform(-0.2, 0.2)
        d, nn = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        quads.append(np.array([c - w / 2 * d - h / 2 * nn, c + w / 2 * d - h / 2 * nn,
                               c + w / 2 * d + h / 2 * nn, c - w / 2 * d + h / 2 * nn]))
    ours = best_of(lambda: [crop_quad(img, q) for q in quads])
    print(f"crop_quad: {n} line crops {ours * 1e3:.1f} ms ({ours / n * 1e6:.0f} us/crop)")
    try:
        import cv2
    except ImportError:
        print("  (opencv not installed: no reference timing)")
        return

    def ref_one(q):
        h, w = quad_size(q)
        rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        M = cv2.getPerspectiveTransform((q - 0.5).astype(np.float32), (rect - 0.5).astype(np.float32))
        return cv2.warpPerspective(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    ref = best_of(lambda: [ref_one(q) for q in quads])
    diff = max(int(np.abs(crop_quad(img, q).astype(int) - ref_one(q)).max()) for q in quads)
    print(f"cv2 warpPerspective: {ref * 1e3:.1f} ms; ours/cv2 = {ours / ref:.1f}x; max |diff| = {diff} levels")


def bench_pages(images, model, canvas_size):
    from detector_np.weights import load_craft
    from pipeline_pages import two_column_page
    from detector_np import DetectOptions
    from trocr_np.pipeline import PageOptions, ocr_page, resolve_model
    craft = load_craft()
    options = PageOptions(detect=DetectOptions(canvas_size=canvas_size))
    kw = {}
    if model is not None:
        kw["model"] = resolve_model(model)
        label = f"TrOCR {model}"
    else:
        kw["recognizer"] = lambda crops: [("", 1.0) for _ in crops]
        label = "no-op recogniser"
    pages = [("rendered two-column page 600x250", two_column_page(-1.5)[0])]
    pages += [(str(p), p) for p in images if Path(p).exists()]
    print(f"\npages ({label}, canvas_size={canvas_size}); seconds per stage")
    for name, page in pages:
        r = ocr_page(page, detector_params=craft, options=options, **kw)
        t = r.timings
        print(f"{name}: {len(r.lines)} lines; " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--image", nargs="*", default=["/work/shared/images/english.png"])
    ap.add_argument("--canvas-size", type=int, default=1280)
    args = ap.parse_args()
    bench_crops()
    bench_pages(args.image, args.model, args.canvas_size)


if __name__ == "__main__":
    main()
