"""Geometry, numbers and XML plumbing shared by the hOCR, ALTO and PAGE XML writers and readers.

Coordinates. Every point is clamped to the page, x to [0, width] and y to
[0, height]: CRAFT's polygons and the crop margin can reach a little past the
image edge, and PAGE XML and hOCR only allow non-negative integers. ALTO keeps
two decimals (`Line.polygon` has two), hOCR and PAGE XML round to integers.

Baseline. A line's baseline is the bottom edge of its cropped quad, BL -> BR
(`Line.box` is TL TR BR BL): the crop is warped upright along that quad, so the
text the recogniser read stands on that edge.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import numpy as np

COORD_DECIMALS = 2      # ALTO coordinates: Line.polygon is rounded to 2 decimals
CONF_DECIMALS = 4       # confidences: Line.confidence is rounded to 4 decimals
SOFTWARE = "trocr-np"

# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF; ElementTree would write them as they are
# and produce a file no parser reads back.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("trocr-np")
    except PackageNotFoundError:
        return "unknown"


def now_iso() -> str:
    """The current UTC time as an xsd:dateTime, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def xml_text(s) -> str:
    """s as text XML 1.0 can hold: characters it forbids become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(s))


def clamp(points, width, height) -> np.ndarray:
    """(N, 2) points clamped to the page [0, width] x [0, height] -> float64 (N, 2)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return np.clip(p, 0.0, [float(width), float(height)])


def int_points(points, width, height) -> np.ndarray:
    """Clamped points rounded to whole pixels (hOCR poly, PAGE Coords) -> int64 (N, 2)."""
    return np.rint(clamp(points, width, height)).astype(np.int64)


def int_bbox(points, width, height) -> tuple[int, int, int, int]:
    """The integer box x0 y0 x1 y1 that encloses the clamped points (hOCR bbox)."""
    p = clamp(points, width, height)
    x0, y0 = np.floor(p.min(0)).astype(int)
    x1, y1 = np.ceil(p.max(0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def rect(x0, y0, x1, y1) -> list:
    """An axis-aligned box as 4 corners TL TR BR BL."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def num(v, decimals=COORD_DECIMALS) -> str:
    """A float with at most `decimals` decimals and no trailing zeros: 12.5, 12, 0.0731."""
    s = f"{round(float(v), decimals) + 0.0:.{decimals}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def points_attr(points, decimals=None, sep=",") -> str:
    """(N, 2) points -> 'x,y x,y ...' (the form ALTO recommends and PAGE XML requires)."""
    if decimals is None:
        return " ".join(f"{int(x)}{sep}{int(y)}" for x, y in points)
    return " ".join(f"{num(x, decimals)}{sep}{num(y, decimals)}" for x, y in points)


def parse_points(s: str) -> list:
    """'x,y x,y ...' or 'x y x y ...' -> [[x, y], ...] floats."""
    v = [float(t) for t in re.split(r"[\s,]+", s.strip()) if t]
    if len(v) % 2:
        raise ValueError(f"odd number of coordinates in points {s!r}")
    return [[v[k], v[k + 1]] for k in range(0, len(v), 2)]


def baseline(box, width, height) -> np.ndarray:
    """The line's baseline: its quad's bottom edge BL -> BR, clamped -> (2, 2)."""
    b = np.asarray(box, np.float64).reshape(4, 2)
    return clamp(b[[3, 2]], width, height)


def text_angle(box) -> float:
    """Counter-clockwise angle of the text in degrees (-180, 180]: the bottom edge BL -> BR against +x.

    Image y points down, so a line rising to the right has a positive angle.
    """
    b = np.asarray(box, np.float64).reshape(4, 2)
    dx, dy = b[2] - b[3]
    a = float(np.degrees(np.arctan2(-dy, dx))) + 0.0
    return a + 360.0 if a <= -180.0 else a     # arctan2(-0.0, -1) is -180: upside down is 180


def confidence(c) -> float | None:
    """A 0..1 confidence rounded to CONF_DECIMALS, or None where the recogniser gave none (NaN)."""
    if c is None or not math.isfinite(float(c)):
        return None
    return round(min(max(float(c), 0.0), 1.0), CONF_DECIMALS)


def words_of(line) -> list[dict] | None:
    """The line's word boxes, if known: Line.words, a list of {text, box, confidence, method} (or None).

    A word's box is 4 corners TL TR BR BL like Line.box; an upright [x0, y0, x1, y1] is taken too.
    """
    words = getattr(line, "words", None)
    if not words:
        return None
    out = []
    for w in words:
        box = np.asarray(w["box"], np.float64)
        out.append({**w, "box": rect(*box.tolist()) if box.shape == (4,) else box.reshape(-1, 2).tolist()})
    return out


def estimated_words(line) -> list[dict]:
    """Whitespace-separated words of the line text, each given a slice of the line quad.

    The quad is cut along its length in proportion to character offsets, so a
    word's slice covers its characters if the writing is evenly spaced; each
    word gets the line's confidence. Used by ALTO, whose String is a word, when
    the line has no real word boxes (method 'proportional').
    """
    b = np.asarray(line.box, np.float64).reshape(4, 2)
    text = line.text or ""
    n = max(len(text), 1)
    out = []
    for m in re.finditer(r"\S+", text):
        t0, t1 = m.start() / n, m.end() / n
        top = b[0] + np.outer([t0, t1], b[1] - b[0])
        bot = b[3] + np.outer([t1, t0], b[2] - b[3])
        out.append(dict(text=m.group(), box=np.vstack([top, bot]).tolist(), confidence=line.confidence,
                        method="proportional"))
    return out


def indent(root: ET.Element, keep=lambda e: False) -> None:
    """Pretty-print the tree in place, leaving the inside of elements where keep(e) untouched.

    Whitespace between a line's word elements is content (it separates the
    words), so those elements get their own single spaces from the writer.
    """
    saved = {}
    for e in root.iter():
        if keep(e):
            saved[e] = (e.text, [c.tail for c in e])
    ET.indent(root, space=" ")
    for e, (text, tails) in saved.items():
        e.text = text
        for c, t in zip(e, tails):
            c.tail = t


def tostring(root: ET.Element, doctype: str = "", short_empty_elements: bool = True) -> str:
    """The document with an XML declaration (and doctype), UTF-8, newline-terminated."""
    body = ET.tostring(root, encoding="unicode", short_empty_elements=short_empty_elements)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + (doctype + "\n" if doctype else "") + body + "\n"


def parse_xml(xml, name: str) -> ET.Element:
    """str or bytes -> root element; malformed input -> ValueError naming the file."""
    try:
        return ET.fromstring(xml)
    except ET.ParseError as e:
        raise ValueError(f"{name}: not well-formed XML: {e}") from None


def page_numbers(pages) -> list[int]:
    """Physical page numbers (1-based) for a document: each page's own number when all come from one source
    and the numbers are distinct, else the position in the document."""
    own = [int(p.page) for p in pages]
    if len({p.source for p in pages}) <= 1 and len(set(own)) == len(own):
        return own
    return list(range(1, len(pages) + 1))


def local(tag) -> str:
    """An element's tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def quad_or_bounds(poly) -> list:
    """A Line.box for a read-back outline: the outline itself if a quad, else its upright bounds."""
    if len(poly) == 4:
        return poly
    p = np.asarray(poly, np.float64)
    return rect(*p.min(0).tolist(), *p.max(0).tolist())
