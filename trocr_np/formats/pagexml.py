"""PAGE XML 2019 (PRImA pagecontent 2019-07-15): PcGts/Page/TextRegion/TextLine(/Word) with TextEquiv.

    page_xml(page) -> str                  one page: PAGE describes one image per file
    page_xml_documents(pages) -> list[str] one document per page
    read_page_xml(xml) -> PageResult       the page back

Coordinates are whole pixels (the schema's PointsType allows only
non-negative integers), clamped to the page. A line's Coords are its outline,
its Baseline the two points of its quad's bottom edge (BL -> BR); its
TextEquiv holds the text and the recogniser's confidence (`conf`, absent where
there is none). All lines sit in one TextRegion whose Coords are their bounds
(the pipeline finds lines, not blocks) and whose TextEquiv is the line texts
joined by newlines; the ReadingOrder lists that region, the lines follow in
reading order inside it, each also numbered with Transkribus' `custom`
"readingOrder {index:N;}". Words are written where the line has word boxes
(Line.words), with their own Coords and TextEquiv, and `custom` "method
{name:...;}" saying how each was placed. The page's number within its source
(a multi-page TIFF) is kept in the Page's `custom` "page {number:N;}".
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from ._common import (CONF_DECIMALS, SOFTWARE, baseline, confidence, indent, int_points, local, now_iso, num,
                      parse_points, parse_xml, points_attr, quad_or_bounds, rect, software_version, tostring,
                      words_of, xml_text)

NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
SCHEMA = NS + "/pagecontent.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


# ---------------------------------------------------------------- writer
def page_xml_documents(pages) -> list[str]:
    """PageResults -> one PAGE XML document per page (PAGE has no multi-page form)."""
    return [page_xml(p) for p in pages]


def page_xml(page) -> str:
    """One PageResult -> a PAGE XML 2019 document (str)."""
    w, h = int(page.width), int(page.height)
    root = ET.Element("PcGts", {"xmlns": NS, "xmlns:xsi": XSI, "xsi:schemaLocation": f"{NS} {SCHEMA}"})
    meta = ET.SubElement(root, "Metadata")
    ET.SubElement(meta, "Creator").text = f"{SOFTWARE} {software_version()}"
    stamp = now_iso()
    ET.SubElement(meta, "Created").text = stamp
    ET.SubElement(meta, "LastChange").text = stamp
    pe = ET.SubElement(root, "Page", {"imageFilename": xml_text(page.source), "imageWidth": str(w),
                                      "imageHeight": str(h), "custom": f"page {{number:{int(page.page)};}}"})
    if page.lines:
        group = ET.SubElement(ET.SubElement(pe, "ReadingOrder"), "OrderedGroup", {"id": "ro_1"})
        ET.SubElement(group, "RegionRefIndexed", {"index": "0", "regionRef": "r1"})
        polys = [int_points(ln.polygon, w, h) for ln in page.lines]
        allp = np.vstack(polys)
        region = ET.SubElement(pe, "TextRegion", {"id": "r1"})
        _coords(region, rect(*allp.min(0), *allp.max(0)))
        for i, (ln, poly) in enumerate(zip(page.lines, polys), 1):
            tl = ET.SubElement(region, "TextLine", {"id": f"r1_l{i}", "custom": f"readingOrder {{index:{i - 1};}}"})
            _coords(tl, poly)
            ET.SubElement(tl, "Baseline", {"points": points_attr(np.rint(baseline(ln.box, w, h)).astype(int))})
            for j, wd in enumerate(words_of(ln) or [], 1):
                we = ET.SubElement(tl, "Word", {"id": f"r1_l{i}_w{j}",
                                                "custom": f"method {{name:{_css(wd.get('method'))};}}"})
                _coords(we, int_points(wd["box"], w, h))
                _text_equiv(we, wd["text"], wd.get("confidence"))
            _text_equiv(tl, ln.text, ln.confidence)
        _text_equiv(region, "\n".join(ln.text for ln in page.lines), None)
    indent(root)
    return tostring(root)


def _css(v) -> str:
    # `custom` uses a CSS-like "key {name:value;}" syntax: keep the value free of its delimiters
    return re.sub(r"[\s{};:]", "_", str(v or "unknown"))


def _coords(parent, points):
    ET.SubElement(parent, "Coords", {"points": points_attr(points)})


def _text_equiv(parent, text, conf):
    c = confidence(conf)
    te = ET.SubElement(parent, "TextEquiv", {} if c is None else {"conf": num(c, CONF_DECIMALS)})
    ET.SubElement(te, "Unicode").text = xml_text(text)


# ---------------------------------------------------------------- reader
def _child(e, name):
    return next((c for c in e if local(c.tag) == name), None)


def _points(e, name):
    c = _child(e, "Coords")
    if c is None:
        raise ValueError(f"{name}: {local(e.tag)} {e.get('id')!r} has no Coords")
    return parse_points(c.get("points", ""))


def _equiv(e) -> tuple[str, float]:
    te = _child(e, "TextEquiv")
    if te is None:
        return "", float("nan")
    u = _child(te, "Unicode")
    return (u.text or "") if u is not None else "", float(te.get("conf", "nan"))


def read_page_xml(xml, name: str = "<PAGE>"):
    """A PAGE XML document -> PageResult: regions in ReadingOrder (else document order), lines in element
    order. polygon: Coords; box: the polygon if a quad, else its bounds; score: NaN; row: the line's index.
    Words come back as `line.words` (text, box, confidence, method)."""
    from ..pipeline import Line, PageResult
    root = parse_xml(xml, name)
    pe = next((e for e in root.iter() if local(e.tag) == "Page"), None)
    if local(root.tag) != "PcGts" or pe is None:
        raise ValueError(f"{name}: not a PAGE XML document (no PcGts/Page)")
    rank = {e.get("regionRef"): int(e.get("index", 0)) for e in pe.iter() if local(e.tag) == "RegionRefIndexed"}
    regions = sorted((e for e in pe.iter() if local(e.tag) == "TextRegion"),
                     key=lambda e: rank.get(e.get("id"), len(rank)))
    lines = []
    for tl in (c for r in regions for c in r if local(c.tag) == "TextLine"):
        poly = _points(tl, name)
        text, conf = _equiv(tl)
        box = quad_or_bounds(poly)
        ln = Line(text=text, polygon=poly, box=box, score=float("nan"), confidence=conf, row=len(lines))
        words = [c for c in tl if local(c.tag) == "Word"]
        if words:
            ln.words = [dict(text=_equiv(we)[0], box=_points(we, name), confidence=_equiv(we)[1],
                             method=(re.search(r"method\s*\{\s*name\s*:\s*([^;}]*)", we.get("custom", "")) or
                                     [None, None])[1]) for we in words]
        lines.append(ln)
    number = re.search(r"page\s*\{\s*number\s*:\s*(\d+)", pe.get("custom", ""))
    return PageResult(source=pe.get("imageFilename", ""), page=int(number[1]) if number else 1,
                      width=int(pe.get("imageWidth", 0)), height=int(pe.get("imageHeight", 0)), lines=lines,
                      timings={})
