"""`python -m tests.fuzz --cases N`: every fuzz target (or --targets a,b) with N cases each, one at a time.

Prints per target: cases, ok, expected errors by type, unexpected exceptions, hangs, cases over the
time limit (2 s) and over the memory limit (1 GB over the warmed-up worker). Exit status 1 if any
target had an unexpected exception, a hang, a case over memory, or (without --no-time) a slow case.

  python -m tests.fuzz --cases 100000 --targets images
  python -m tests.fuzz --replay 1234 --targets crop       # one case again, in this process, with its traceback
"""
from __future__ import annotations

import argparse
import sys

from .runner import fuzz, replay, worker

TARGET_NAMES = ("checkpoint_zip", "checkpoint_legacy", "pickle_ops", "safetensors", "images", "postprocess", "crop")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--targets", default=",".join(TARGET_NAMES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--time-s", type=float, default=2.0, help="time limit per case")
    p.add_argument("--hang-s", type=float, default=60.0, help="a case running longer is a hang")
    p.add_argument("--memory-mb", type=float, default=1024.0)
    p.add_argument("--no-time", action="store_true", help="report slow cases without failing")
    p.add_argument("--replay", type=int, default=None, metavar="I")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.seed, a.start, a.cases, a.memory_mb)
    names = [n for n in a.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown:
        p.error(f"unknown targets {unknown}; known: {', '.join(TARGET_NAMES)}")
    if a.replay is not None:
        for n in names:
            replay(n, a.seed, a.replay)
        return 0
    failed = False
    for n in names:
        rep = fuzz(n, a.cases, a.seed, a.start, a.time_s, a.hang_s, a.memory_mb,
                   log=lambda m: print(m, file=sys.stderr, flush=True))
        print(rep.summary(), flush=True)
        failed |= rep.failed(strict_time=not a.no_time)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
