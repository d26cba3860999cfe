"""hOCR 1.2 (kba/hocr-spec 1.2): XHTML with ocr_page > ocr_carea > ocr_par > ocr_line (> ocrx_word).

    hocr_document(pages) -> str         every page in one file, in order
    read_hocr(xml) -> list[PageResult]  the pages back (well-formed XHTML hOCR)

Geometry in the `title` properties. `bbox` is the integer box around the
clamped outline (an upright rectangle is written as that alone). Any other
outline (a rotated quad, a 14-point polygon) also gets `poly` (ocrp_poly),
rounded to pixels. The baseline is the quad's bottom edge (BL -> BR) as
`baseline slope offset`: image axes, y down, origin at the bbox's bottom-left
corner, offset rounded to a pixel as the spec's grammar asks. Lines tilted
by more than ROTATED_DEG get `textangle` (degrees, counter-clockwise) instead
and no baseline, as Tesseract writes rotated lines: a steep slope says nothing
useful, and OCRmyPDF would apply both. Skewed lines (|angle| <= ROTATED_DEG)
carry their skew in the baseline slope alone.

`x_wconf` is the recogniser's confidence in percent (0..100), absent where
there is none. One ocr_carea/ocr_par per page holds all lines: the pipeline
finds lines, not blocks; element order is the reading order. Without word
boxes a line's text is its content; with them (Line.words) each word is an
ocrx_word with its own bbox/poly and x_wconf, and reading back gives the
words joined by single spaces. The page's `image` is its source path,
percent-encoded where the spec's quoted string cannot hold a character
(non-ASCII, '"', ';', '%').
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote

import numpy as np

from ._common import (SOFTWARE, baseline, clamp, confidence, indent, int_bbox, int_points, num, page_numbers,
                      parse_xml, quad_or_bounds, rect, software_version, text_angle, tostring, words_of, xml_text)

XHTML = "http://www.w3.org/1999/xhtml"
DOCTYPE = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
           '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">')
# Everything this writer can produce (the spec: list what could be generated, not only what was).
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf ocrp_poly"
ROTATED_DEG = 45.0
# Printable ASCII the spec's delimited string may hold, less the separators a naive title parser splits on.
_IMAGE_SAFE = "".join(c for c in map(chr, range(0x20, 0x7f)) if c not in '"%;') 


# ---------------------------------------------------------------- writer
def hocr_document(pages, title: str | None = None) -> str:
    """PageResults -> one hOCR 1.2 document (str), pages in order (ppageno 0, 1, ...)."""
    pages = list(pages)
    html = ET.Element("html", {"xmlns": XHTML})
    head = ET.SubElement(html, "head")
    ET.SubElement(head, "title").text = xml_text(title if title is not None else
                                                 (pages[0].source if len({p.source for p in pages}) == 1 else ""))
    ET.SubElement(head, "meta", {"http-equiv": "Content-Type", "content": "text/html; charset=utf-8"})
    ET.SubElement(head, "meta", {"name": "ocr-system", "content": f"{SOFTWARE} {software_version()}"})
    ET.SubElement(head, "meta", {"name": "ocr-capabilities", "content": CAPABILITIES})
    ET.SubElement(head, "meta", {"name": "ocr-number-of-pages", "content": str(len(pages))})
    body = ET.SubElement(html, "body")
    for k, (page, number) in enumerate(zip(pages, page_numbers(pages)), 1):
        _page(body, page, k, number)
    indent(html, keep=lambda e: e.get("class") == "ocr_line")
    # An HTML parser reads <span/> as an opening tag and would nest the next lines in an empty line:
    # only void elements (meta) may be self-closing.
    return re.sub(r"(<meta [^>]*)></meta>", r"\1 />", tostring(html, DOCTYPE, short_empty_elements=False))


def _page(body, page, k, number):
    w, h = int(page.width), int(page.height)
    image = quote(xml_text(page.source).replace("\ufffd", "?"), safe=_IMAGE_SAFE)
    div = ET.SubElement(body, "div", {"class": "ocr_page", "id": f"page_{k}",
                                      "title": f'image "{image}"; bbox 0 0 {w} {h}; ppageno {number - 1}'})
    if not page.lines:
        return
    boxes = np.array([int_bbox(ln.polygon, w, h) for ln in page.lines])
    union = f"bbox {boxes[:, 0].min()} {boxes[:, 1].min()} {boxes[:, 2].max()} {boxes[:, 3].max()}"
    area = ET.SubElement(div, "div", {"class": "ocr_carea", "id": f"block_{k}_1", "title": union})
    par = ET.SubElement(area, "p", {"class": "ocr_par", "id": f"par_{k}_1", "title": union})
    for i, ln in enumerate(page.lines, 1):
        props = _shape(ln.polygon, w, h) + _baseline(ln.box, w, h) + _wconf(ln.confidence)
        span = ET.SubElement(par, "span", {"class": "ocr_line", "id": f"line_{k}_{i}", "title": "; ".join(props)})
        words = words_of(ln)
        if not words:
            span.text = xml_text(ln.text)
            continue
        for j, wd in enumerate(words, 1):
            ws = ET.SubElement(span, "span", {"class": "ocrx_word", "id": f"word_{k}_{i}_{j}",
                                              "title": "; ".join(_shape(wd["box"], w, h) +
                                                                 _wconf(wd.get("confidence")))})
            ws.text = xml_text(wd["text"])
            ws.tail = " " if j < len(words) else None


def _shape(points, w, h) -> list[str]:
    x0, y0, x1, y1 = int_bbox(points, w, h)
    out = [f"bbox {x0} {y0} {x1} {y1}"]
    c = clamp(points, w, h)
    if not np.array_equal(c, rect(*c.min(0), *c.max(0))):   # not an upright rectangle, TL TR BR BL
        out.append("poly " + " ".join(f"{x} {y}" for x, y in int_points(points, w, h)))
    return out


def _baseline(box, w, h) -> list[str]:
    angle = text_angle(box)
    if abs(angle) > ROTATED_DEG:
        return [f"textangle {num(angle)}"]
    (bx0, by0), (bx1, by1) = baseline(box, w, h)
    x0, _, _, y1 = int_bbox(box, w, h)
    slope = (by1 - by0) / (bx1 - bx0) if bx1 > bx0 else 0.0
    offset = by0 + slope * (x0 - bx0) - y1      # baseline height at the bbox's left edge, from its bottom
    return [f"baseline {num(slope, 4)} {int(round(offset))}"]


def _wconf(c) -> list[str]:
    c = confidence(c)
    return [] if c is None else [f"x_wconf {num(100 * c, 2)}"]


# ---------------------------------------------------------------- reader
_PROP = re.compile(r'\s*([A-Za-z_][\w-]*)\s*((?:"[^"]*"|[^;"])*)(?:;|$)')


def title_props(title: str) -> dict[str, str]:
    """An hOCR title attribute -> {property: value string}."""
    return {m.group(1): m.group(2).strip() for m in _PROP.finditer(title or "") if m.group(1)}


def _classes(e) -> set:
    return set((e.get("class") or "").split())


def _outline(props, where) -> list:
    if "poly" in props:
        v = [float(t) for t in props["poly"].split()]
        return [[v[k], v[k + 1]] for k in range(0, len(v) - 1, 2)]
    if "bbox" not in props:
        raise ValueError(f"{where}: no bbox")
    return rect(*[float(t) for t in props["bbox"].split()])


def _conf(props) -> float:
    return float(props["x_wconf"]) / 100 if "x_wconf" in props else float("nan")


def read_hocr(xml, name: str = "<hOCR>") -> list:
    """An hOCR document (XHTML, as written here) -> list of PageResult, lines in document order.

    polygon: `poly` where present, else the bbox corners; box: the same 4 points
    for a quad, else the bbox corners; score: NaN (not in hOCR); row: the line's
    index. Word boxes come back as `line.words` (text, box, confidence).
    """
    from ..pipeline import Line, PageResult
    root = parse_xml(xml, name)
    pages = [e for e in root.iter() if "ocr_page" in _classes(e)]
    if not pages:
        raise ValueError(f"{name}: no ocr_page element: not an hOCR document")
    out = []
    for pe in pages:
        props = title_props(pe.get("title"))
        x0, y0, x1, y1 = (int(t) for t in props.get("bbox", "0 0 0 0").split())
        image = props.get("image", '""').strip('"')
        lines = []
        for i, le in enumerate(e for e in pe.iter() if "ocr_line" in _classes(e)):
            lp = title_props(le.get("title"))
            poly = _outline(lp, f"{name}: line {le.get('id')}")
            wels = [e for e in le.iter() if "ocrx_word" in _classes(e)]
            words = [dict(text="".join(we.itertext()), box=_outline(title_props(we.get("title")), name),
                          confidence=_conf(title_props(we.get("title")))) for we in wels]
            text = " ".join(wd["text"] for wd in words) if wels else "".join(le.itertext())
            box = quad_or_bounds(poly)
            ln = Line(text=text, polygon=poly, box=box, score=float("nan"), confidence=_conf(lp), row=i)
            if words:
                ln.words = words
            lines.append(ln)
        out.append(PageResult(source=unquote(image), page=int(props.get("ppageno", 0)) + 1, width=x1 - x0,
                              height=y1 - y0, lines=lines, timings={}))
    return out
