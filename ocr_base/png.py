"""What Pillow's PNG decoder does not tell us: rows missing from a cleanly ended stream, and the low
byte of 16-bit colour samples.

    check_rows(data, name)        ImageError if the IDAT stream holds fewer rows than IHDR declares
    rgb16(data, name) -> (H, W, 3|4) uint16 or None   16-bit RGB(A) samples (None for other PNGs)

Pillow fills rows a short stream never delivered with black, and reads 16-bit RGB(A) PNGs as 8-bit
by keeping the high byte (1000 -> 3, where round(1000 / 257) = 4). So we inflate the IDAT chunks
once more: counting bytes for the first, and for the second undoing the per-row filters
(`unfilter`, a Numba kernel beside `unfilter_reference`) and, for interlaced files, Adam7.

References: the PNG specification (W3C, 2nd ed.), sections 7 (scanlines), 8.2 (Adam7), 9 (filters).
"""
from __future__ import annotations

import struct
import zlib

import numba
import numpy as np

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class _Short(ValueError):
    pass


def _header(data: bytes):
    """(width, height, bit depth, colour type, interlace) from IHDR, or None when it is not readable."""
    if data[12:16] != b"IHDR" or len(data) < 29:
        return None
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, color, interlace


def _passes(w, h, bpp_bits, interlace):
    """[(x0, y0, dx, dy, pass width, pass height, bytes per row without the filter byte)] with pixels."""
    out = []
    for x0, y0, dx, dy in (ADAM7 if interlace else ((0, 0, 1, 1),)):
        pw, ph = -(-max(0, w - x0) // dx), -(-max(0, h - y0) // dy)
        if pw and ph:
            out.append((x0, y0, dx, dy, pw, ph, (pw * bpp_bits + 7) // 8))
    return out


def _inflate(data: bytes, need: int, keep: bool):
    """The first `need` bytes of the concatenated IDAT stream (or just their count when not keep)."""
    inflate, got, parts, pos = zlib.decompressobj(), 0, [], 8
    while pos + 8 <= len(data) and got < need:
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        if kind == b"IDAT":
            chunk = data[pos + 8: pos + 8 + length]
            while chunk and got < need:
                part = inflate.decompress(chunk, min(need - got, 1 << 20))
                got += len(part)
                if keep:
                    parts.append(part)
                chunk = inflate.unconsumed_tail
        elif kind == b"IEND":
            break
        pos += 12 + length
    if got < need:
        raise _Short(f"truncated PNG: its image data holds {got:,} of the {need:,} bytes of rows the header declares")
    return b"".join(parts) if keep else None


def check_rows(data: bytes, name: str, error=ValueError) -> None:
    """Raise `error` naming `name` when the IDAT stream ends before the last row."""
    hdr = _header(data)
    if hdr is None:
        return  # Pillow read it: leave odd headers to Pillow
    w, h, depth, color, interlace = hdr
    need = sum(ph * (1 + rb) for *_, ph, rb in _passes(w, h, depth * CHANNELS.get(color, 1), interlace))
    try:
        _inflate(data, need, keep=False)
    except (_Short, zlib.error) as e:
        raise error(f"{name}: {e}") from None


def rgb16(data: bytes, name: str, error=ValueError):
    """(H, W, 3 or 4) uint16 samples of a 16-bit RGB / RGBA PNG, else None."""
    hdr = _header(data)
    if hdr is None or hdr[2] != 16 or hdr[3] not in (2, 6):
        return None
    w, h, _, color, interlace = hdr
    c = CHANNELS[color]
    passes = _passes(w, h, 16 * c, interlace)
    try:
        raw = np.frombuffer(_inflate(data, sum(ph * (1 + rb) for *_, ph, rb in passes), keep=True), np.uint8)
    except (_Short, zlib.error) as e:
        raise error(f"{name}: {e}") from None
    out = np.empty((h, w, c), np.uint16)
    pos = 0
    for x0, y0, dx, dy, pw, ph, rb in passes:
        rows = np.empty((ph, rb), np.uint8)
        if not unfilter(raw[pos: pos + ph * (1 + rb)], rows, 2 * c):
            raise error(f"{name}: corrupt PNG: unknown row filter type")
        out[y0::dy, x0::dx] = rows.view(">u2").reshape(ph, pw, c)
        pos += ph * (1 + rb)
    return out


@numba.njit(cache=True, nogil=True)
def unfilter(raw, out, bpp):  # pragma: no cover - compiled
    """Numba twin of `unfilter_reference`: raw (ph * (1 + rb),) -> out (ph, rb); False on a bad filter."""
    ph, rb = out.shape
    for y in range(ph):
        f = raw[y * (rb + 1)]
        if f > 4:
            return False
        for x in range(rb):
            a = np.int32(out[y, x - bpp]) if x >= bpp else 0
            b = np.int32(out[y - 1, x]) if y > 0 else 0
            c = np.int32(out[y - 1, x - bpp]) if x >= bpp and y > 0 else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[y, x] = (np.int32(raw[y * (rb + 1) + 1 + x]) + pred) & 255
    return True


def unfilter_reference(raw: np.ndarray, out: np.ndarray, bpp: int) -> bool:
    """PNG's five row filters undone, row by row: None, Sub (+left), Up (+above), Average, Paeth.

    raw: each row is a filter byte then rb filtered bytes; `left` is the byte bpp before (0 at the
    start), `above` the same byte of the previous row (0 on the first).
    """
    ph, rb = out.shape
    prev = np.zeros(rb, np.int64)
    for y in range(ph):
        f, line = int(raw[y * (rb + 1)]), raw[y * (rb + 1) + 1: (y + 1) * (rb + 1)].astype(np.int64)
        if f > 4:
            return False
        row = np.zeros(rb, np.int64)
        for x in range(rb):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c
            pred = [0, a, b, (a + b) // 2,
                    a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c)
                                                                                      else c)][f]
            row[x] = (line[x] + pred) & 255
        out[y], prev = row, row
    return True
