"""ALTO 4.4 (altoxml/schema v4/alto-4-4.xsd): Layout/Page/PrintSpace/TextBlock/TextLine/String.

    alto_document(pages) -> str         every page in one file (one Page element each)
    read_alto(xml) -> list[PageResult]  the pages back

Units are pixels (MeasurementUnit), coordinates keep two decimals. A line's
outline is its Shape/Polygon, HPOS/VPOS/WIDTH/HEIGHT its bounds, BASELINE the
two points of its quad's bottom edge (BL -> BR). Reading order is both the
element order and an explicit ReadingOrder: one OrderedGroup per page of
ElementRefs to its TextLines.

Strings. ALTO's String is a word and TextLine has no confidence, so every
line is written as words with WC (0..1): the real word boxes where the line
has them (Line.words, each String with its Shape/Polygon), otherwise the text
split at whitespace and the line quad cut in proportion to character offsets
(see _common.estimated_words), each with the line's confidence. Each String
names the way it was placed in PROCESSINGREFS, a Processing step
`words_<method>` in the Description (`words_proportional` for the estimate),
so a reader can tell estimated boxes from measured ones. Reading back, a
line's text is its Strings joined by single spaces, and its confidence the
mean WC of its Strings (the line's own confidence where they were estimated).

The Description's sourceImageInformation/fileName is the pages' source when
they share one; ALTO has one per file, so pages from several sources lose
theirs. 'Processing' is used, not OCRProcessing, which ALTO 4 deprecates.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from ._common import (CONF_DECIMALS, SOFTWARE, baseline, clamp, confidence, estimated_words, indent, local, now_iso,
                      num, page_numbers, parse_points, parse_xml, points_attr, quad_or_bounds, rect,
                      software_version, tostring, words_of, xml_text)

NS = "http://www.loc.gov/standards/alto/ns-v4#"
SCHEMA = "http://www.loc.gov/alto/v4/alto-4-4.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OCR_ID = "ocr"
WORD_METHODS = {
    "proportional": "word boxes estimated: the line quad cut in proportion to character offsets",
    "craft": "word boxes from CRAFT's word detections inside the line",
    "attention": "word boxes from the cross-attention of the word's tokens over the line image",
}


def _method_id(method) -> str:
    return "words_" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(method or "unknown"))


# ---------------------------------------------------------------- writer
def alto_document(pages) -> str:
    """PageResults -> one ALTO 4.4 document (str), one Page per result, in order."""
    pages = list(pages)
    words = {id(ln): _words(ln) for p in pages for ln in p.lines}
    methods = sorted({w.get("method") or "unknown" for ws in words.values() for w in ws})
    root = ET.Element("alto", {"xmlns": NS, "xmlns:xsi": XSI, "xsi:schemaLocation": f"{NS} {SCHEMA}",
                               "SCHEMAVERSION": "4.4"})
    desc = ET.SubElement(root, "Description")
    ET.SubElement(desc, "MeasurementUnit").text = "pixel"
    if len({p.source for p in pages}) == 1 and pages[0].source:
        ET.SubElement(ET.SubElement(desc, "sourceImageInformation"), "fileName").text = xml_text(pages[0].source)
    _processing(desc, OCR_ID, "contentGeneration", "text line detection (CRAFT) and recognition (TrOCR)")
    for m in methods:
        _processing(desc, _method_id(m), "other", WORD_METHODS.get(m, f"word boxes placed by method {m!r}"))
    groups = [(k, p) for k, p in enumerate(pages, 1) if p.lines]
    if groups:
        order = ET.SubElement(root, "ReadingOrder")
        for k, p in groups:
            g = ET.SubElement(order, "OrderedGroup", {"ID": f"order_{k}"})
            for i in range(1, len(p.lines) + 1):
                ET.SubElement(g, "ElementRef", {"ID": f"order_{k}_{i}", "REF": f"line_{k}_{i}"})
    layout = ET.SubElement(root, "Layout")
    for k, (page, number) in enumerate(zip(pages, page_numbers(pages)), 1):
        _page(layout, page, k, number, words)
    indent(root)
    return tostring(root)


def _words(line) -> list[dict]:
    """The Strings of a line: its word boxes, else estimated ones; a TextLine needs one, so an empty line gets
    one empty String over the whole line."""
    return (words_of(line) or estimated_words(line) or
            [dict(text="", box=line.polygon, confidence=line.confidence, method="proportional")])


def _processing(desc, pid, category, description):
    pr = ET.SubElement(desc, "Processing", {"ID": pid})
    ET.SubElement(pr, "processingCategory").text = category
    ET.SubElement(pr, "processingDateTime").text = now_iso()
    ET.SubElement(pr, "processingStepDescription").text = description
    sw = ET.SubElement(pr, "processingSoftware")
    ET.SubElement(sw, "softwareName").text = SOFTWARE
    ET.SubElement(sw, "softwareVersion").text = software_version()


def _bounds(points) -> dict:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    return {"HPOS": num(x0), "VPOS": num(y0), "WIDTH": num(x1 - x0), "HEIGHT": num(y1 - y0)}


def _page(layout, page, k, number, words):
    w, h = int(page.width), int(page.height)
    pe = ET.SubElement(layout, "Page", {"ID": f"page_{k}", "PHYSICAL_IMG_NR": str(number), "WIDTH": str(w),
                                        "HEIGHT": str(h), "PROCESSING": OCR_ID})
    space = ET.SubElement(pe, "PrintSpace", {"HPOS": "0", "VPOS": "0", "WIDTH": str(w), "HEIGHT": str(h)})
    if not page.lines:
        return
    polys = [clamp(ln.polygon, w, h) for ln in page.lines]
    block = ET.SubElement(space, "TextBlock", {"ID": f"block_{k}_1", **_bounds(np.vstack(polys))})
    for i, (ln, poly) in enumerate(zip(page.lines, polys), 1):
        tl = ET.SubElement(block, "TextLine", {"ID": f"line_{k}_{i}", **_bounds(poly),
                                               "BASELINE": points_attr(baseline(ln.box, w, h), 2)})
        ET.SubElement(ET.SubElement(tl, "Shape"), "Polygon", {"POINTS": points_attr(poly, 2)})
        ws = words[id(ln)]
        for j, wd in enumerate(ws, 1):
            wbox = clamp(wd["box"], w, h)
            method = wd.get("method") or "unknown"
            attrs = {"ID": f"string_{k}_{i}_{j}", "CONTENT": xml_text(wd["text"]), **_bounds(wbox),
                     "PROCESSINGREFS": _method_id(method)}
            c = confidence(wd.get("confidence"))
            if c is not None:
                attrs["WC"] = num(c, CONF_DECIMALS)
            s = ET.SubElement(tl, "String", attrs)
            if method != "proportional":
                ET.SubElement(ET.SubElement(s, "Shape"), "Polygon", {"POINTS": points_attr(wbox, 2)})
            if j < len(ws):
                ET.SubElement(tl, "SP")


# ---------------------------------------------------------------- reader
def _find(e, name):
    return [c for c in e if local(c.tag) == name]


def _shape(e):
    for shape in _find(e, "Shape"):
        for poly in _find(shape, "Polygon"):
            return parse_points(poly.get("POINTS", ""))
    x, y = float(e.get("HPOS", 0)), float(e.get("VPOS", 0))
    return rect(x, y, x + float(e.get("WIDTH", 0)), y + float(e.get("HEIGHT", 0)))


def read_alto(xml, name: str = "<ALTO>") -> list:
    """An ALTO document -> list of PageResult, lines in reading order (ReadingOrder if present, else element
    order). polygon: Shape/Polygon (else the bounds); box: the polygon if a quad, else its bounds; score:
    NaN; row: the line's index. Words not placed 'proportional' come back as `line.words`."""
    from ..pipeline import Line, PageResult
    root = parse_xml(xml, name)
    if local(root.tag) != "alto":
        raise ValueError(f"{name}: root element is {local(root.tag)!r}, not 'alto'")
    files = [e.text or "" for e in root.iter() if local(e.tag) == "fileName"]
    rank = {ref: r for r, e in enumerate(e for e in root.iter() if local(e.tag) == "ElementRef")
            for ref in e.get("REF", "").split()}
    out = []
    for pe in (e for e in root.iter() if local(e.tag) == "Page"):
        tls = [e for e in pe.iter() if local(e.tag) == "TextLine"]
        tls.sort(key=lambda e: rank.get(e.get("ID"), len(rank)))  # stable: unreferenced lines keep their order
        lines = []
        for i, tl in enumerate(tls):
            poly = _shape(tl)
            strings = _find(tl, "String")
            measured = [s for s in strings if s.get("PROCESSINGREFS") != _method_id("proportional")]
            wcs = [float(s.get("WC", "nan")) for s in strings]
            conf = float(np.mean(wcs)) if wcs else float("nan")
            box = quad_or_bounds(poly)
            ln = Line(text=" ".join(s.get("CONTENT", "") for s in strings), polygon=poly, box=box,
                      score=float("nan"), confidence=round(conf, CONF_DECIMALS) if conf == conf else conf, row=i)
            if measured:
                ln.words = [dict(text=s.get("CONTENT", ""), box=_shape(s), confidence=float(s.get("WC", "nan")),
                                 method=(s.get("PROCESSINGREFS") or "").removeprefix("words_")) for s in strings]
            lines.append(ln)
        out.append(PageResult(source=files[0] if files else "", page=int(float(pe.get("PHYSICAL_IMG_NR", 1))),
                              width=int(float(pe.get("WIDTH", 0))), height=int(float(pe.get("HEIGHT", 0))),
                              lines=lines, timings={}))
    if not out:
        raise ValueError(f"{name}: no Page element in the ALTO Layout")
    return out
