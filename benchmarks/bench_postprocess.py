"""CRAFT post-processing: detector_np.postprocess vs EasyOCR's craft_utils (OpenCV), same process.

    python benchmarks/bench_postprocess.py [--repeat N] [--image PATH] [--synthetic-only]

Score maps: (1) a real photo's CRAFT output at canvas 1280 (default ../shared/images/idcard2.jpg,
1000x630 -> 640x416 maps), computed with our CRAFT network when its weights are available; (2) a
synthetic 640x416 map pair with ~40 word-like components (always). Times are the median of
--repeat runs after a JIT warm-up; the ratio is ours / reference (lower is better).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import cv2  # noqa: E402  (reference only)

import _easyocr_ref  # noqa: E402
from detector_np.postprocess import get_det_boxes  # noqa: E402

DEFAULT_IMAGE = os.path.join(HERE, "..", "..", "shared", "images", "idcard2.jpg")


def synthetic_maps(seed=0, h=416, w=640, n_words=40):
    """Word-like blobs on a few lines: region map = blurred word boxes with character peaks,
    affinity map = blurred bars joining neighbouring characters."""
    rng = np.random.default_rng(seed)
    text = np.zeros((h, w), np.float32)
    link = np.zeros((h, w), np.float32)
    for _ in range(n_words):
        x0, y0 = rng.uniform(5, w - 120), rng.uniform(5, h - 25)
        ch_h = rng.uniform(6, 18)
        n_ch = rng.integers(2, 9)
        angle = rng.uniform(-8, 8)
        for c in range(n_ch):
            cx = x0 + c * ch_h * 0.8
            cv2.ellipse(text, (int(cx), int(y0)), (int(ch_h * 0.35), int(ch_h * 0.5)), angle, 0, 360,
                        float(rng.uniform(0.75, 1.0)), -1)
            if c:
                cv2.line(link, (int(cx - ch_h * 0.8), int(y0)), (int(cx), int(y0)), 0.9, max(1, int(ch_h / 4)))
    text = cv2.GaussianBlur(text, (0, 0), 1.5)
    link = cv2.GaussianBlur(link, (0, 0), 1.5)
    return text, link


def real_maps(path):
    """CRAFT score maps of a photo at canvas 1280, mag 1.5, from our network; None if unavailable."""
    if not os.path.exists(path):
        print(f"(no {path}: real-photo maps skipped)")
        return None
    try:
        from PIL import Image
        from detector_np import DetectOptions, detect
        t = time.perf_counter()
        det = detect(np.asarray(Image.open(path).convert("RGB")), None, DetectOptions(canvas_size=1280, mag_ratio=1.5))
        print(f"(real maps from our CRAFT forward: {time.perf_counter() - t:.1f} s)")
        return det.score_text, det.score_link
    except Exception as e:  # weights missing, detector not built yet, ...
        print(f"(real-photo maps skipped: {type(e).__name__}: {e})")
        return None


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name, text, link, cu, repeat):
    for poly in (False, True):
        ref = lambda: cu.getDetBoxes(text, link, 0.7, 0.4, 0.4, poly=poly)  # noqa: E731
        ours = lambda: get_det_boxes(text, link, 0.7, 0.4, 0.4, poly=poly)  # noqa: E731
        n_boxes = len(ours()[0])  # also the JIT warm-up
        ref()
        (rb, rp, _), (ob, op, _) = ref(), ours()
        n_polys = sum(p is not None for p in op)
        same = len(rb) == len(ob) and [p is None for p in rp] == [p is None for p in op]
        diff = max([float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(rb, ob)] +
                   [float(np.abs(a - b).max()) for a, b in zip(rp, op) if a is not None] + [0.0])
        t_ref, t_ours = timed(ref, repeat), timed(ours, repeat)
        print(f"{name:<28} poly={poly!s:<5} {text.shape[1]}x{text.shape[0]}  {n_boxes:3d} boxes "
              f"{n_polys:2d} polys | reference (OpenCV) {t_ref * 1e3:7.2f} ms | ours {t_ours * 1e3:7.2f} ms"
              f" | ratio {t_ours / t_ref:.2f} | parity {'ok' if same else 'MISMATCH'}, max |d| {diff:.1e} px")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--synthetic-only", action="store_true")
    args = ap.parse_args()
    cu = _easyocr_ref.load("craft_utils")
    if cu is None:
        sys.exit("easyocr (pip install --no-deps easyocr) is needed for the reference")
    print(f"cv2 {cv2.__version__}, numpy {np.__version__}, OpenCV threads {cv2.getNumThreads()}")
    maps = None if args.synthetic_only else real_maps(args.image)
    if maps is not None:
        bench(os.path.basename(args.image) + " CRAFT maps", *maps, cu, args.repeat)
    bench("synthetic ~40 words", *synthetic_maps(), cu, args.repeat)


if __name__ == "__main__":
    main()
