"""CRAFT forward at canvas 1280 on a ~1000x630 photo: ours vs the reference (EasyOCR's CRAFT in torch).

Run: python benchmarks/bench_craft.py [--image PATH] [--canvas-size 1280] [--repeat 3] [--no-memory] [--refiner]

Prints the min and median time of each forward (runs interleaved in this process) and the ratios;
then the peak RSS of each forward measured in a fresh subprocess (fair: each process holds only
its own stack and weights), and the post-processing time against craft_utils.getDetBoxes
(OpenCV) when `detector_np.postprocess` is present. The default image is ../shared/images/idcard2.jpg
(1000x630) when present, else a generated 1000x630 page of rendered text.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DEFAULT_IMAGE = ROOT.parent / "shared" / "images" / "idcard2.jpg"


def load_rgb(path):
    from PIL import Image, ImageDraw, ImageFont

    if path is not None and Path(path).is_file():
        return np.array(Image.open(path).convert("RGB"))
    # generated stand-in: 1000x630 with a few lines of text
    img = Image.new("RGB", (1000, 630), (235, 232, 225))
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 34)
    except OSError:
        font = ImageFont.load_default()
    for i, line in enumerate(["SPECIMEN IDENTITY CARD", "Surname: EXAMPLE", "Given names: Jane Quinn",
                              "Date of birth: 01.02.1990", "Nationality: Nowhere", "No. 123456789"]):
        d.text((40, 40 + 95 * i), line, fill=(20, 20, 40), font=font)
    return np.array(img)


def prepare(img, canvas_size):
    from detector_np.preprocess import normalize_mean_variance, resize_aspect_ratio

    canvas, ratio, _ = resize_aspect_ratio(img, canvas_size, 1.5)
    return normalize_mean_variance(canvas)


def reference_net():
    import torch
    from _reference import reference

    from detector_np.weights import default_craft_path

    net = reference().CRAFT()
    sd = torch.load(default_craft_path(), map_location="cpu", weights_only=True)
    net.load_state_dict({k[len("module."):]: v for k, v in sd.items()})
    return net.eval()


def run_ours(params, x):
    from detector_np.craft import craft_forward

    return craft_forward(params, x)


def run_reference(net, x):
    import torch

    with torch.no_grad():
        y, feature = net(torch.from_numpy(x).permute(2, 0, 1)[None])
    return y[0].numpy(), feature[0].permute(1, 2, 0).numpy()


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _status_mb(field):
    """VmHWM (peak RSS) / VmRSS of this process in MB. Unlike ru_maxrss, VmHWM starts afresh at exec,
    so a child started from this big benchmark process does not inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(which, image, canvas_size):
    """One forward in this (fresh) process; print the peak RSS in MB as JSON."""
    img = load_rgb(image)
    x = prepare(img, canvas_size)
    if which == "ours":
        from detector_np.weights import load_craft
        params = load_craft()
        base = _status_mb("VmRSS")
        run_ours(params, x)
    else:
        net = reference_net()
        base = _status_mb("VmRSS")
        run_reference(net, x)
    print(json.dumps({"peak_mb": _status_mb("VmHWM"), "before_forward_mb": base}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--canvas-size", type=int, default=1280)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--refiner", action="store_true", help="also time the LinkRefiner (random weights: the real ones are not bundled)")
    ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.image, args.canvas_size)

    import torch

    from detector_np.weights import load_craft

    img = load_rgb(args.image)
    x = prepare(img, args.canvas_size)
    src = args.image if Path(args.image).is_file() else "generated 1000x630 text image"
    print(f"image {src} {img.shape[1]}x{img.shape[0]} -> canvas {x.shape[1]}x{x.shape[0]}; "
          f"torch {torch.__version__} threads {torch.get_num_threads()}, numpy {np.__version__}")
    params = load_craft()
    net = reference_net()
    run_ours(params, x[:64, :64])                       # warm-up: BLAS threads, page cache
    run_reference(net, x[:64, :64])
    t_refs, t_ourss = [], []
    for _ in range(args.repeat):       # interleaved, so that load changes on a shared machine hit both alike
        t, (ry, rf) = timed(lambda: run_reference(net, x), 1)
        t_refs.append(t)
        t, (y, f) = timed(lambda: run_ours(params, x), 1)
        t_ourss.append(t)
    print("runs (s): reference " + " ".join(f"{t:.2f}" for t in t_refs) + "   ours " + " ".join(f"{t:.2f}" for t in t_ourss))
    for stat in (np.min, np.median):   # min: least disturbed by other load; median: typical
        t_ref, t_ours = float(stat(t_refs)), float(stat(t_ourss))
        print(f"forward {stat.__name__:6}  reference {t_ref:7.3f} s   ours {t_ours:7.3f} s   ratio ours/ref {t_ours / t_ref:.2f}")
    print(f"parity   max|dy| {np.abs(y - ry).max():.2e}  max|dfeature| {np.abs(f - rf).max():.2e}")

    if args.refiner:
        from _reference import reference

        from detector_np.refiner import refiner_forward
        from detector_np.weights import REFINER_CONVS, convert_state_dict

        torch.manual_seed(0)
        rnet = reference().RefineNet().eval()
        rparams = convert_state_dict({k: v.numpy() for k, v in rnet.state_dict().items()}, REFINER_CONVS)
        ty, tf = torch.from_numpy(ry)[None], torch.from_numpy(rf).permute(2, 0, 1)[None]

        def ref_refine():
            with torch.no_grad():
                return rnet(ty, tf)[0].numpy()
        t_r, rr = timed(ref_refine, args.repeat)
        t_o, ro = timed(lambda: refiner_forward(rparams, ry, rf), args.repeat)
        print(f"refiner   reference {t_r:7.3f} s   ours {t_o:7.3f} s   ratio {t_o / t_r:.2f}   max|d| {np.abs(ro - rr).max():.2e}")

    try:
        from detector_np.postprocess import get_det_boxes
    except ImportError:
        get_det_boxes = None
    if get_det_boxes is not None:
        from _reference import reference

        cu = reference().craft_utils
        st, sl = np.ascontiguousarray(ry[:, :, 0]), np.ascontiguousarray(ry[:, :, 1])
        get_det_boxes(st, sl, 0.7, 0.4, 0.4, poly=False)
        for poly in (False, True):
            t_r, (rb, *_) = timed(lambda: cu.getDetBoxes(st, sl, 0.7, 0.4, 0.4, poly), 5)
            t_o, out = timed(lambda: get_det_boxes(st, sl, 0.7, 0.4, 0.4, poly=poly), 5)
            print(f"postproc  poly={poly!s:5}  reference {t_r * 1e3:7.1f} ms   ours {t_o * 1e3:7.1f} ms   "
                  f"ratio {t_o / t_r:.2f}   boxes {len(out[0])} vs {len(rb)}")

    if not args.no_memory:
        peaks = {}
        for which in ("reference", "ours"):
            r = subprocess.run([sys.executable, __file__, "--child", which, "--image", args.image,
                                "--canvas-size", str(args.canvas_size)], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
            peaks[which] = json.loads(r.stdout.strip().splitlines()[-1])
        pr, po = peaks["reference"], peaks["ours"]
        print(f"peak RSS  reference {pr['peak_mb']:7.0f} MB (before forward {pr['before_forward_mb']:.0f})   "
              f"ours {po['peak_mb']:7.0f} MB (before forward {po['before_forward_mb']:.0f})   "
              f"ratio {po['peak_mb'] / pr['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
