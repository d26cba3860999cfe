"""Progress of a batch on stderr: a bar on a terminal, `[i/n] path` lines elsewhere, or nothing.

    p = Progress(n_files, stream=sys.stderr, mode=None)   # mode: "bar", "lines", "off"; None: bar on a TTY
    p.start_file(i, path); p.page_done(page_count); p.message("..."); p.close()

The bar counts pages: every input counts as one page until it is opened and says how many it has
(a multi-page TIFF or PDF), so the total grows as PDFs are met. It shows pages done / total, pages per
second and the estimated time left, and is redrawn in place (carriage return) after each page.
Messages (error lines) are written on a line of their own, the bar redrawn below them. Standard
library only.
"""
from __future__ import annotations

import sys
import time

MODES = ("bar", "lines", "off")
WIDTH = 24      # characters of the bar itself


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def bar_text(done: int, total: int, elapsed: float) -> str:
    """'[#######.........] 3/8 pages  1.50 pages/s  ETA 0:03' (the ETA once a page is done)."""
    total = max(total, done, 1)
    filled = int(WIDTH * done / total)
    rate = done / elapsed if elapsed > 0 and done else 0.0
    eta = f"ETA {_clock((total - done) / rate)}" if rate > 0 else "ETA --:--"
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total} pages  {rate:.2f} pages/s  {eta}"


class Progress:
    """A batch's progress report (see the module docstring)."""

    def __init__(self, n_files: int, stream=None, mode: str | None = None):
        self.stream = sys.stderr if stream is None else stream
        if mode is None:
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode, self.n_files = mode, n_files
        self.done, self.total, self.t0 = 0, n_files, time.perf_counter()
        self._pages_seen = {}       # file index -> page count once known
        self._file = -1
        self._drawn = False

    def start_file(self, i: int, path) -> None:
        self._file = i
        if self.mode == "lines" and self.n_files > 1:
            self._write(f"[{i + 1}/{self.n_files}] {path}\n")
        self._draw()

    def page_done(self, page_count: int | None = 1) -> None:
        """One page (or a whole unreadable input) finished; page_count: pages in the current input."""
        if page_count and self._file not in self._pages_seen:
            self._pages_seen[self._file] = page_count
            self.total += page_count - 1
        self.done += 1
        self._draw()

    def message(self, text: str) -> None:
        """A line of its own (an error), above the bar."""
        self._clear()
        self.stream.write(text.rstrip("\n") + "\n")
        self._draw()

    def close(self) -> None:
        if self.mode == "bar" and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False

    def _write(self, s: str) -> None:
        self.stream.write(s)
        self.stream.flush()

    def _clear(self) -> None:
        if self.mode == "bar" and self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = False

    def _draw(self) -> None:
        if self.mode != "bar":
            return
        self._write("\r\x1b[2K" + bar_text(self.done, self.total, time.perf_counter() - self.t0))
        self._drawn = True
