"""Google Fonts handwriting families from the npm registry (`@fontsource/<family>`), pinned.

`weights/fonts.json` lists each family with its package version, licence, the one file we
use (latin subset, weight 400, normal style, WOFF) and that file's sha256, plus a style tag
(print / cursive / messy) and a split (train / heldout: held-out hands never train the
recogniser and are used to evaluate it and the line finder).

    python weights/fonts.py fetch                    # all families into the cache
    python weights/fonts.py fetch --split heldout    # only the held-out hands
    python weights/fonts.py list [--split train]     # what is pinned and what is fetched

`fetch` runs `npm pack @fontsource/NAME@VERSION`, takes the pinned file (and the LICENSE)
out of the tarball and checks its sha256. The cache is ~/.cache/trocr-np/fonts or
$TROCR_NP_FONTS. Fonts are data for generators and tests: never committed, never needed at
run time. WOFF rather than WOFF2 because FreeType always reads WOFF (zlib) while WOFF2 needs
a FreeType built with Brotli.

From Python: `font_paths("heldout")` -> paths of the fetched, verified files; `hands(split)`
-> (pin, path) pairs, for callers that need the style or caps tag.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PINS = Path(__file__).with_name("fonts.json")
SPLITS = ("train", "heldout", "all")
STYLES = ("print", "cursive", "messy")


@dataclass(frozen=True)
class FontPin:
    family: str    # "Caveat"
    package: str   # "@fontsource/caveat"
    version: str   # "5.3.0"
    license: str   # SPDX id from the package's package.json
    file: str      # path inside the package: "files/caveat-latin-400-normal.woff"
    sha256: str
    style: str     # print | cursive | messy
    split: str     # train | heldout
    caps: bool     # draws every letter as a capital or small capital: labels upper-case

    @property
    def slug(self) -> str:
        return self.package.rsplit("/", 1)[-1]


def cache_dir() -> Path:
    return Path(os.environ.get("TROCR_NP_FONTS") or Path.home() / ".cache" / "trocr-np" / "fonts")


def load_pins(path: str | Path = PINS) -> tuple[FontPin, ...]:
    """The pinned families of `path`; ValueError naming the file on a malformed entry."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["fonts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a font pin list ({e})") from None
    pins = []
    for i, e in enumerate(entries):
        try:
            pin = FontPin(**e)
        except TypeError as err:
            raise ValueError(f"{path}: entry {i}: {err}") from None
        if pin.style not in STYLES or pin.split not in SPLITS[:2] or len(pin.sha256) != 64:
            raise ValueError(f"{path}: entry {i} ({pin.family}): bad style, split or sha256")
        pins.append(pin)
    if len({p.package for p in pins}) != len(pins):
        raise ValueError(f"{path}: a package is listed twice")
    return tuple(pins)


def select(pins, split: str) -> list[FontPin]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [p for p in pins if split == "all" or p.split == split]


def local_path(pin: FontPin, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"{pin.slug}-{pin.version}-{Path(pin.file).name}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_fetched(pin: FontPin, cache: Path | None = None) -> bool:
    p = local_path(pin, cache)
    return p.is_file() and _sha256(p) == pin.sha256


def fetch_one(pin: FontPin, cache: Path | None = None, npm: str = "npm") -> Path:
    """Pack the pinned version with npm, extract the pinned file and LICENSE, verify."""
    cache = cache or cache_dir()
    dest = local_path(pin, cache)
    if dest.is_file() and _sha256(dest) == pin.sha256:
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        spec = f"{pin.package}@{pin.version}"
        try:
            r = subprocess.run([npm, "pack", spec, "--pack-destination", tmp], cwd=tmp,
                               capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            raise RuntimeError(f"{npm!r} not found: install Node.js's npm to fetch fonts") from None
        if r.returncode:
            raise RuntimeError(f"npm pack {spec} failed: {r.stderr.strip()[-400:]}")
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if tgz is None:
            raise RuntimeError(f"npm pack {spec} wrote no tarball")
        with tarfile.open(tgz) as t:
            names = set(t.getnames())
            member = f"package/{pin.file}"
            if member not in names:
                raise RuntimeError(f"{spec}: the tarball has no {pin.file}")
            data = t.extractfile(member).read()
            lic = t.extractfile("package/LICENSE").read() if "package/LICENSE" in names else b""
        digest = hashlib.sha256(data).hexdigest()
        if digest != pin.sha256:
            raise RuntimeError(f"{spec}: {pin.file} has sha256 {digest}, pinned {pin.sha256}")
        part = Path(tmp) / dest.name
        part.write_bytes(data)
        os.replace(part, dest)  # atomic: a reader never sees half a font
        if lic:
            (cache / f"{pin.slug}-{pin.version}-LICENSE").write_bytes(lic)
    return dest


def fetch(split: str = "all", cache: Path | None = None, pins=None, workers: int = 4,
          log=print) -> list[Path]:
    """Fetch every pinned family of `split` not yet in the cache; paths in pin order."""
    todo = select(pins if pins is not None else load_pins(), split)
    if shutil.which("npm") is None and not all(is_fetched(p, cache) for p in todo):
        raise RuntimeError("npm not found: install Node.js's npm to fetch fonts")
    with ThreadPoolExecutor(workers) as ex:
        paths = list(ex.map(lambda p: fetch_one(p, cache), todo))
    log(f"{len(paths)} fonts ({split}) in {cache or cache_dir()}")
    return paths


def hands(split: str = "train", cache: Path | None = None, pins=None) -> list[tuple[FontPin, str]]:
    """(pin, path) for the families of `split` that are fetched and verified (no network)."""
    return [(p, str(local_path(p, cache))) for p in select(pins if pins is not None else load_pins(), split)
            if is_fetched(p, cache)]


def font_paths(split: str = "train", cache: Path | None = None) -> list[str]:
    """Paths of the fetched, verified font files of `split` ('train', 'heldout', 'all')."""
    return [path for _, path in hands(split, cache)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("fetch", "list"))
    ap.add_argument("--split", default="all", choices=SPLITS)
    ap.add_argument("--cache", type=Path, default=None, help="default $TROCR_NP_FONTS or ~/.cache/trocr-np/fonts")
    args = ap.parse_args(argv)
    if args.command == "fetch":
        fetch(args.split, args.cache)
        return 0
    for p in select(load_pins(), args.split):
        mark = "fetched" if is_fetched(p, args.cache) else "-"
        print(f"{p.family:28s} {p.style:8s} {p.split:8s} {p.license:11s} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
