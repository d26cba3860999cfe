"""Tune LineOptions on TRAIN pages only: a grid of settings, geometry of each on the same detections.

    python benchmarks/tune_lines.py --pages 24 --cache DIR join_overlap=0.4,0.5 wide_gap=0,3

Pages are generated in the training hands from seed bench_lines.TRAIN_SEED0 on (the held-out
hands and seeds of `bench_lines.py --split heldout` are never looked at here), detected once
(--cache keeps the detections), and every combination of the NAME=V1,V2 settings (LineOptions
fields, method "lines") finds lines on them. Printed per combination: mean recall, precision,
regions per true line and ink inside (bench_lines.geometry), best first by recall + precision
among those with <= 1.05 regions per line. Pick the setting here, then report it on held-out
pages with bench_lines.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lines import TRAIN_SEED0, cached_detection, geometry  # noqa: E402
from detector_np.lines import LineOptions, find_lines  # noqa: E402
from detector_np.weights import load_craft  # noqa: E402


def parse_grid(items):
    """["name=v1,v2", ...] -> {name: [values]} with each value typed like the LineOptions default."""
    fields = {f.name: f for f in dataclasses.fields(LineOptions)}
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in fields or not values:
            raise SystemExit(f"tune_lines: {item!r} is not NAME=V1,V2 with NAME a LineOptions field")
        kind = type(getattr(LineOptions(), name))
        grid[name] = [(v.lower() in ("1", "true")) if kind is bool else kind(v) for v in values.split(",")]
    return grid


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--cache", default=None, help="folder keeping the detections between runs")
    ap.add_argument("grid", nargs="*", help="NAME=V1,V2 (LineOptions fields)")
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)

    from pages import find_hands, make_page
    craft, hands = load_craft(), find_hands("train")
    pages = []
    for seed in range(TRAIN_SEED0, TRAIN_SEED0 + args.pages):
        page = make_page(seed, hands)
        pages.append((page, cached_detection(f"train_{seed:03d}", page.image, craft, args.cache)["det"]))
    results = []
    for combo in itertools.product(*grid.values()):
        o = LineOptions(**dict(zip(grid, combo)))
        rows = [geometry(page, find_lines(det, page.image.size, o)[1]) for page, det in pages]
        results.append((dict(zip(grid, combo)), {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}))
    results.sort(key=lambda r: (r[1]["per_line"] > 1.05, -(r[1]["recall"] + r[1]["precision"])))
    print(f"train pages: {len(pages)} (seeds {TRAIN_SEED0}..{TRAIN_SEED0 + len(pages) - 1})")
    print(f"{'setting':<40} {'recall':>7} {'precision':>9} {'regions/line':>12} {'ink':>6}")
    for setting, m in results:
        name = ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
        print(f"{name:<40} {m['recall']:7.3f} {m['precision']:9.3f} {m['per_line']:12.2f} {m['ink']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
