"""Run a fuzz target's cases in a worker subprocess, measuring each case's time and peak memory.

    fuzz(target, cases, seed) -> Report

The worker makes case i from `np.random.default_rng([seed, i])` (so `--replay I` rebuilds it), runs
it and prints one JSON line: outcome (ok / expected / unexpected), exception type, seconds, and the
process's peak RSS (`resource.getrusage`). The parent reads the lines with a deadline: a case that
runs past `hang_s` is a hang (the worker is killed and restarted after it). A case that lifts the
peak RSS more than `memory_mb` over the warmed-up worker's is over memory; the worker then restarts,
since the peak never comes down. RLIMIT_AS (the peak + 3 GB of address space) keeps a bomb from
taking the machine, and a MemoryError it causes is reported like any unexpected exception.
"""
from __future__ import annotations

import collections
import json
import resource
import select
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Report:
    target: str
    cases: int = 0
    ok: int = 0
    expected: collections.Counter = field(default_factory=collections.Counter)
    unexpected: collections.Counter = field(default_factory=collections.Counter)
    examples: list = field(default_factory=list)      # (index, type, message) of unexpected ones
    hangs: list = field(default_factory=list)         # indices
    slow: list = field(default_factory=list)          # (index, seconds) over time_s
    over_memory: list = field(default_factory=list)   # (index, MB over the baseline)
    seconds: float = 0.0

    def failed(self, strict_time: bool = True) -> bool:
        return bool(self.unexpected or self.hangs or self.over_memory or (strict_time and self.slow))

    def summary(self) -> str:
        exp = ", ".join(f"{k} {v}" for k, v in self.expected.most_common())
        lines = [f"{self.target}: {self.cases} cases in {self.seconds:.0f} s: {self.ok} ok, expected errors: "
                 f"{exp or 'none'}; unexpected: {sum(self.unexpected.values())} "
                 f"({', '.join(self.unexpected) or 'none'}), hangs: {len(self.hangs)}, "
                 f"slow: {len(self.slow)}, over memory: {len(self.over_memory)}"]
        lines += [f"  unexpected at case {i}: {t}: {m}" for i, t, m in self.examples[:5]]
        lines += [f"  slow: case {i} took {s:.2f} s" for i, s in self.slow[:5]]
        lines += [f"  hang: case {i}" for i in self.hangs[:5]]
        lines += [f"  over memory: case {i} +{mb:.0f} MB" for i, mb in self.over_memory[:5]]
        return "\n".join(lines)


def fuzz(target: str, cases: int, seed: int = 0, start: int = 0, time_s: float = 2.0, hang_s: float = 60.0,
         memory_mb: float = 1024.0, log=None) -> Report:
    rep = Report(target)
    t0 = time.monotonic()
    i = start
    while i < start + cases:
        cmd = [sys.executable, "-m", "tests.fuzz", "--worker", target, "--seed", str(seed), "--start", str(i),
               "--cases", str(start + cases - i), "--memory-mb", str(memory_mb)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=_root(), text=True)
        last, deadline = i - 1, time.monotonic() + hang_s + 120  # the first case also imports and compiles
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:  # the case after `last` is hanging
                    rep.hangs.append(last + 1)
                    rep.cases += 1
                    last += 1
                    break
                line = proc.stdout.readline()
                if not line:  # the worker ended: done, restarting after a memory peak, or died
                    if proc.wait() not in (0, 3):
                        rep.unexpected[f"worker exit {proc.returncode}"] += 1
                        rep.examples.append((last + 1, f"worker exit {proc.returncode}", "crashed"))
                        rep.cases += 1
                        last += 1
                    break
                r = json.loads(line)
                last, deadline = r["i"], time.monotonic() + hang_s
                _record(rep, r, time_s)
                if log and rep.cases % 5_000 == 0:
                    rep.seconds = time.monotonic() - t0
                    log(rep.summary().splitlines()[0])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        i = last + 1
    rep.seconds = time.monotonic() - t0
    return rep


def _record(rep: Report, r: dict, time_s: float) -> None:
    rep.cases += 1
    if r["outcome"] == "ok":
        rep.ok += 1
    elif r["outcome"] == "expected":
        rep.expected[r["type"]] += 1
    else:
        rep.unexpected[r["type"]] += 1
        rep.examples.append((r["i"], r["type"], r["msg"]))
    if r["s"] > time_s:
        rep.slow.append((r["i"], r["s"]))
    if r.get("over_mb"):
        rep.over_memory.append((r["i"], r["over_mb"]))


def _root() -> str:
    return str(Path(__file__).resolve().parents[2])


def worker(target: str, seed: int, start: int, cases: int, memory_mb: float) -> int:
    """The subprocess side: one JSON line per case; exit 3 to be restarted after a memory peak."""
    from .targets import targets
    t = targets()[target]
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        workdir = Path(tmp)
        if t.warm is not None:
            t.warm(workdir)
        for i in [None] + list(range(start, start + cases)):  # None: a warm-up case (imports, compilation)
            t0 = time.perf_counter()
            out = dict(i=i, outcome="ok", type="", msg="")
            try:
                t.run(t.case(np.random.default_rng([seed, 2 ** 62 if i is None else i])), workdir)
            except t.allowed as e:
                out.update(outcome="expected", type=type(e).__name__)
            except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
                out.update(outcome="unexpected", type=type(e).__name__,
                           msg=f"{e}"[:300] + " | " + traceback.format_exc(limit=-2).replace("\n", " ")[-400:])
            out["s"] = round(time.perf_counter() - t0, 4)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB
            if i is None:
                baseline = rss
                _limit_address_space()
                continue
            over = rss - baseline - memory_mb
            if over > 0:
                out["over_mb"] = round(rss - baseline, 1)
            print(json.dumps(out), flush=True)
            if over > 0:
                return 3
    return 0


def _limit_address_space() -> None:
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
    limit = vm + (3 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def replay(target: str, seed: int, index: int) -> None:
    """Run one case in this process, with its traceback."""
    from .targets import targets
    t = targets()[target]
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        t.run(t.case(np.random.default_rng([seed, index])), Path(tmp))
    print(f"{target} case {index} (seed {seed}): ok")


