"""hOCR 1.2, ALTO 4.4 and PAGE XML 2019 output (trocr_np.formats).

Every written document is checked by the format's own tools: ALTO and PAGE
against the official XSDs (tests/data/schemas, README.md there) with lxml,
hOCR with hocr-tools' `hocr-check` (which exits 0 whatever it finds, so its
`not ok` lines are read) plus structural checks of what hocr-check leaves
out (title grammar, capabilities, containment). Then each file is read back
and must give the same lines in the same order: texts, outlines (clamped to
the page, to the written precision: two decimals in ALTO, whole pixels in hOCR
and PAGE), confidences and word boxes. Expected values are computed here
from the PageResult, not by the module's helpers.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from trocr_np import formats
from trocr_np.pipeline import Line, PageResult

SCHEMAS = Path(__file__).parent / "data" / "schemas"
W, H = 1000, 800
NAN = float("nan")


# ---------------------------------------------------------------- pages built here
def quad(cx, cy, w, h, deg):
    """A w x h box centred at (cx, cy) whose text runs `deg` degrees counter-clockwise: TL TR BR BL."""
    a = math.radians(deg)
    d = np.array([math.cos(a), -math.sin(a)])       # along the text; image y points down
    n = np.array([math.sin(a), math.cos(a)])        # from the top edge to the bottom edge
    c = np.array([cx, cy], float)
    return np.round([c - d * w / 2 - n * h / 2, c + d * w / 2 - n * h / 2,
                     c + d * w / 2 + n * h / 2, c - d * w / 2 + n * h / 2], 2).tolist()


def band(x0, x1, y, h, bow, k=7):
    """A 2k-point outline of a line bowed by `bow` pixels (a curved handwritten line) and its enclosing quad."""
    xs = np.linspace(x0, x1, k)
    ys = y + bow * np.sin(np.linspace(0, np.pi, k))
    poly = np.round(np.concatenate([np.stack([xs, ys], 1), np.stack([xs, ys + h], 1)[::-1]]), 2).tolist()
    box = [[x0, y], [x1, y], [x1, y + bow + h], [x0, y + bow + h]]
    return poly, box


def line(text, box, conf, polygon=None, words=None, row=0):
    ln = Line(text=text, polygon=polygon or box, box=box, score=0.5, confidence=conf, row=row)
    if words is not None:
        ln.words = words    # Line.words is optional (word boxes); the writers read it with getattr
    return ln


def words_along(box, texts, confs, methods):
    """Word boxes cut from a line quad at equal widths."""
    b = np.asarray(box, float)
    out = []
    for k, (t, c, m) in enumerate(zip(texts, confs, methods)):
        t0, t1 = k / len(texts), (k + 0.8) / len(texts)
        top, bot = b[0] + np.outer([t0, t1], b[1] - b[0]), b[3] + np.outer([t1, t0], b[2] - b[3])
        out.append(dict(text=t, box=np.round(np.vstack([top, bot]), 2).tolist(), confidence=c, method=m))
    return out


SPECIAL = "Fish & <chips> \"now\" 'ok'"
UNICODE = "Grüße aus 東京 😀 — naïve"


def sample_lines():
    straight = [[20.25, 20], [400, 20], [400, 60.5], [20.25, 60.5]]
    skew = quad(700, 60, 300, 40, 10)
    curved, curved_box = band(100, 600, 450, 40, 25)
    return [
        line(SPECIAL, straight, 0.9312, row=0,
             words=words_along(straight, SPECIAL.split(), [0.91, 0.5, 0.77, 0.6543, 0.99],
                               ["craft", "craft", "attention", "craft", "attention"])),
        line("skewed line", skew, 0.8765, row=0,
             words=words_along(skew, ["skewed", "line"], [0.7, 0.8], ["attention", "attention"])),
        line("steep", quad(150, 300, 200, 40, 60), 0.5, row=1),
        line("upside down", quad(500, 300, 250, 40, 180), 0.25, row=1),
        line("", quad(820, 300, 100, 30, 0), 0.1, row=1),
        line("a curved line", curved_box, 0.6667, polygon=curved, row=2),
        line(UNICODE, [[20, 600], [500, 600], [500, 640], [20, 640]], 1.0, row=3),
        line("off the page", [[-5, 760], [1010, 760], [1010, 812], [-5, 812]], 0.0, row=4),
        line("bell\x07ring", quad(800, 450, 150, 30, 0), NAN, row=2),
    ]


def sample_page(source="scans/page 1;\"é\".png", page=1, lines=None):
    return PageResult(source=source, page=page, width=W, height=H,
                      lines=sample_lines() if lines is None else lines, timings={})


def expected_text(t):
    return t.replace("\x07", "\ufffd")   # XML 1.0 cannot hold U+0007


def clamped(points, size=(W, H)):
    return np.clip(np.asarray(points, float).reshape(-1, 2), 0, size)


def alto_pts(p, size=(W, H)):
    return np.round(clamped(p, size), 2)


def pixel_pts(p, size=(W, H)):
    return np.rint(clamped(p, size))


def hocr_pts(p, size=(W, H)):
    c = clamped(p, size)
    (x0, y0), (x1, y1) = c.min(0), c.max(0)
    if c.shape == (4, 2) and np.array_equal(c, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]):
        x0, y0, x1, y1 = np.floor([x0, y0]).tolist() + np.ceil([x1, y1]).tolist()
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])   # an upright rectangle: its bbox alone
    return np.rint(c)


def assert_same_lines(got, want, points, line_conf=lambda ln: ln.confidence, has_method=True):
    assert [ln.text for ln in got] == [expected_text(ln.text) for ln in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g.polygon, float), points(w.polygon), err_msg=w.text)
        np.testing.assert_allclose(g.confidence, line_conf(w), rtol=0, atol=1e-12, err_msg=w.text)
        ww = getattr(w, "words", None)
        assert (getattr(g, "words", None) is not None) == (ww is not None), w.text
        for gw, wd in zip(getattr(g, "words", None) or [], ww or []):
            assert gw["text"] == wd["text"]
            np.testing.assert_array_equal(np.asarray(gw["box"], float), points(wd["box"]))
            np.testing.assert_allclose(gw["confidence"], wd["confidence"], rtol=0, atol=1e-12)
            if has_method:
                assert gw["method"] == wd["method"]


# ---------------------------------------------------------------- validators
@pytest.fixture(scope="module")
def alto_schema():
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "alto-4-4.xsd")))


@pytest.fixture(scope="module")
def page_schema():
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "pagecontent-2019-07-15.xsd")))


def assert_valid(schema, xml: str):
    doc = etree.fromstring(xml.encode("utf-8"))
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)


def hocr_tool(tmp_path, name: str, xml: str, *args) -> str:
    """Run one of hocr-tools' scripts on the document -> its stdout + stderr."""
    script = Path(sys.executable).with_name(name)
    script = str(script) if script.exists() else shutil.which(name)
    assert script, f"{name} not found: pip install hocr-tools (test extra)"
    f = tmp_path / "doc.hocr"
    f.write_text(xml, encoding="utf-8")
    r = subprocess.run([sys.executable, script, *args, str(f)], capture_output=True, text=True, timeout=120,
                       encoding="utf-8")
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def hocr_check(tmp_path, xml: str, overlap=True) -> list[str]:
    """hocr-tools' checker on the document -> its result lines ('ok N - ...' / 'not ok N - ...')."""
    out = hocr_tool(tmp_path, "hocr-check", xml, *([] if overlap else ["-o"]))
    return [s for s in out.splitlines() if re.match(r"(not )?ok \d+", s)]


def assert_hocr_check_ok(tmp_path, xml, n_lines, overlap=True):
    out = hocr_check(tmp_path, xml, overlap)
    assert not [s for s in out if s.startswith("not ok")], out
    assert len(out) >= 3 + n_lines, out   # its meta, page and per-line tests all ran


_TITLE_GRAMMAR = {
    "bbox": r"\d+ \d+ \d+ \d+", "baseline": r"-?\d+(\.\d+)? -?\d+", "textangle": r"-?\d+(\.\d+)?",
    "x_wconf": r"\d+(\.\d+)?", "poly": r"\d+ \d+ -?\d+ -?\d+( -?\d+ -?\d+)*", "ppageno": r"\d+",
    "image": r'"[\x20-\x7e]*"',
}


def hocr_structure_errors(xml: str) -> list[str]:
    """What hocr-check does not look at: the title grammar of the spec's properties, meta fields, capabilities
    versus the classes and properties used, unique ids, and element boxes inside their page."""
    root = etree.fromstring(xml.encode("utf-8"))
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    err = []
    for name in ("ocr-system", "ocr-capabilities"):
        if len(root.xpath(f"//h:meta[@name='{name}']", namespaces=ns)) != 1:
            err.append(f"need exactly one {name} meta")
    caps = set(root.xpath("string(//h:meta[@name='ocr-capabilities']/@content)", namespaces=ns).split())
    ids = root.xpath("//@id")
    if len(ids) != len(set(ids)):
        err.append("duplicate ids")
    for e in root.xpath("//*[@class]"):
        cls = e.get("class")
        if cls.startswith("ocr") and cls not in caps:
            err.append(f"class {cls} not in ocr-capabilities")
        props = dict(p.strip().split(None, 1) for p in (e.get("title") or "").split(";") if p.strip())
        for k, v in props.items():
            if k in _TITLE_GRAMMAR and not re.fullmatch(_TITLE_GRAMMAR[k], v):
                err.append(f"{e.get('id')}: bad {k} {v!r}")
        if "poly" in props and "ocrp_poly" not in caps or "x_wconf" in props and "ocrp_wconf" not in caps:
            err.append(f"{e.get('id')}: property without its capability")
        if "x_wconf" in props and not 0 <= float(props["x_wconf"]) <= 100:
            err.append(f"{e.get('id')}: x_wconf outside 0..100")
        if cls != "ocr_page" and "bbox" in props:
            page = e.xpath("ancestor::h:div[@class='ocr_page']", namespaces=ns)
            px0, py0, px1, py1 = map(int, page[0].get("title").split("bbox ")[1].split(";")[0].split())
            x0, y0, x1, y1 = map(int, props["bbox"].split())
            if not (px0 <= x0 <= x1 <= px1 and py0 <= y0 <= y1 <= py1):
                err.append(f"{e.get('id')}: bbox outside its page")
    # an HTML5 parser (a browser) reads <span/> as an opening tag, which would swallow the lines after it
    for tag in re.findall(r"<(\w+)\b[^>]*/>", xml):
        if tag not in ("meta", "br", "img", "hr", "link"):
            err.append(f"self-closing <{tag}/>")
    return err


def hocr_props(xml: str, cls: str) -> list[dict]:
    root = etree.fromstring(xml.encode("utf-8"))
    return [dict(p.strip().split(None, 1) for p in e.get("title").split(";"))
            for e in root.iter() if e.get("class") == cls]


# ---------------------------------------------------------------- the checkers catch bad documents
def test_the_validators_reject_broken_documents(tmp_path, alto_schema, page_schema):
    page = sample_page()
    bad_alto, n = re.subn(r'WC="[0-9.]+"', 'WC="1.5"', page.to_alto(), count=1)
    assert n == 1
    assert not alto_schema.validate(etree.fromstring(bad_alto.encode()))
    bad_page, n = re.subn(r'<Coords points="\d+', '<Coords points="-3', page.to_page_xml(), count=1)
    assert n == 1
    assert not page_schema.validate(etree.fromstring(bad_page.encode()))
    no_caps = re.sub(r'<meta name="ocr-capabilities"[^>]*>', "", page.to_hocr())
    assert [s for s in hocr_check(tmp_path, no_caps) if s.startswith("not ok")]
    assert hocr_structure_errors(no_caps)
    assert hocr_structure_errors(page.to_hocr().replace("bbox 0 0 1000 800", "bbox 0 0 10 8"))
    self_closing = re.sub(r'(<span class="ocr_line" id="line_1_5" [^>]*)></span>', r"\1 />", page.to_hocr())
    assert self_closing != page.to_hocr() and hocr_structure_errors(self_closing)


# ---------------------------------------------------------------- hOCR
def test_hocr_passes_hocr_check_and_the_spec_grammar(tmp_path):
    xml = sample_page().to_hocr()
    assert_hocr_check_ok(tmp_path, xml, n_lines=len(sample_lines()))
    assert hocr_structure_errors(xml) == []
    # hocr-tools' own reader, hocr-lines, gets every line's text, in order
    assert hocr_tool(tmp_path, "hocr-lines", xml).splitlines() == [expected_text(ln.text) for ln in sample_lines()]


def test_hocr_round_trip():
    page = sample_page()
    got, = formats.read_hocr(page.to_hocr())
    assert (got.source, got.page, got.width, got.height) == (page.source, 1, W, H)
    assert_same_lines(got.lines, page.lines, hocr_pts, has_method=False)


def test_hocr_geometry_bbox_baseline_textangle():
    lines = sample_lines()
    props = hocr_props(sample_page(lines=lines).to_hocr(), "ocr_line")
    for p, ln in zip(props, lines):
        c = clamped(ln.polygon)
        assert p["bbox"] == " ".join(map(str, [*np.floor(c.min(0)).astype(int), *np.ceil(c.max(0)).astype(int)]))
        bl, br = clamped(ln.box)[3], clamped(ln.box)[2]
        angle = math.degrees(math.atan2(-(br[1] - bl[1]), br[0] - bl[0]))
        if abs(angle) > 45:   # steep: textangle, counter-clockwise, and no baseline
            assert "baseline" not in p and abs((float(p["textangle"]) - angle + 180) % 360 - 180) <= 0.005, ln.text
            continue
        assert "textangle" not in p, ln.text
        slope, offset = map(float, p["baseline"].split())
        x0, _, _, y1 = map(int, p["bbox"].split())
        for x, y in (bl, br):   # the baseline passes through the quad's bottom corners (offset is whole pixels)
            assert abs(y1 + offset + slope * (x - x0) - y) <= 0.5 + 1e-4 * W, ln.text
    steep = [p for p, ln in zip(props, lines) if ln.text in ("steep", "upside down")]
    assert [float(p["textangle"]) for p in steep] == [60.0, 180.0]
    assert float(props[1]["baseline"].split()[0]) == pytest.approx(-math.tan(math.radians(10)), abs=1e-3)
    assert "poly" not in props[0] and "poly" not in props[6]   # upright rectangles are their bbox
    assert "poly" in props[5] and len(props[5]["poly"].split()) == 28


def test_hocr_words_and_confidences():
    lines = sample_lines()
    xml = sample_page(lines=lines).to_hocr()
    words = hocr_props(xml, "ocrx_word")
    want = [w for ln in lines for w in getattr(ln, "words", None) or []]
    assert [float(p["x_wconf"]) for p in words] == [round(100 * w["confidence"], 2) for w in want]
    line_props = hocr_props(xml, "ocr_line")
    assert "x_wconf" not in line_props[-1]          # no confidence (NaN): no x_wconf
    assert float(line_props[0]["x_wconf"]) == 93.12
    # words are separated by a space inside their line, nothing else
    root = etree.fromstring(xml.encode())
    first = next(e for e in root.iter() if e.get("class") == "ocr_line")
    assert "".join(first.itertext()) == SPECIAL


def test_hocr_multi_page_document(tmp_path):
    pages = [sample_page(page=1), sample_page(page=2, lines=[]), sample_page(page=3, lines=sample_lines()[:3])]
    xml = formats.hocr_document(pages)
    # hocr-check's overlap test compares the lines of all pages as one page (its xpath starts at the root),
    # so it is left out here; the single-page test runs it.
    assert_hocr_check_ok(tmp_path, xml, n_lines=len(sample_lines()) + 3, overlap=False)
    assert hocr_structure_errors(xml) == []
    assert [p["ppageno"] for p in hocr_props(xml, "ocr_page")] == ["0", "1", "2"]
    got = formats.read_hocr(xml)
    assert [(g.source, g.page, len(g.lines)) for g in got] == [(p.source, p.page, len(p.lines)) for p in pages]
    for g, p in zip(got, pages):
        assert_same_lines(g.lines, p.lines, hocr_pts, has_method=False)
    # pages of different sources are numbered by their position in the document
    mixed = formats.read_hocr(formats.hocr_document([sample_page("a.png", 1, []), sample_page("b.png", 1, [])]))
    assert [(g.source, g.page) for g in mixed] == [("a.png", 1), ("b.png", 2)]


def test_hocr_empty_page(tmp_path):
    xml = sample_page(lines=[]).to_hocr()
    assert_hocr_check_ok(tmp_path, xml, n_lines=0)
    got, = formats.read_hocr(xml)
    assert got.lines == [] and (got.width, got.height) == (W, H)


# ---------------------------------------------------------------- ALTO
def dangling_refs(xml: str) -> list[str]:
    """IDREF(S) attributes of an ALTO document that name no ID (the schema validator does not check them)."""
    root = etree.fromstring(xml.encode("utf-8"))
    ids = set(root.xpath("//@ID"))
    return [r for a in ("PROCESSINGREFS", "PROCESSING", "REF") for v in root.xpath(f"//@{a}") for r in v.split()
            if r not in ids]


def test_alto_valid_against_the_4_4_schema(alto_schema):
    only_empty = sample_page(lines=[line("", quad(820, 300, 100, 30, 0), 0.1)])
    for xml in (sample_page().to_alto(), sample_page(lines=[]).to_alto(), only_empty.to_alto(),
                formats.alto_document([sample_page(page=k) for k in (1, 2, 3)])):
        assert_valid(alto_schema, xml)
        assert dangling_refs(xml) == []
    assert dangling_refs(sample_page().to_alto().replace('ID="words_craft"', 'ID="other"')) == ["words_craft"] * 3


def _alto_line_conf(ln):
    ws = getattr(ln, "words", None)
    return round(float(np.mean([w["confidence"] for w in ws])), 4) if ws else ln.confidence


def test_alto_round_trip():
    page = sample_page()
    got, = formats.read_alto(page.to_alto())
    assert (got.source, got.page, got.width, got.height) == (page.source, 1, W, H)
    # ALTO has no line confidence: a line with word boxes reads back as the mean of its words' WC
    assert_same_lines(got.lines, page.lines, alto_pts, line_conf=_alto_line_conf)


def test_alto_baseline_shape_reading_order_and_estimated_words():
    lines = sample_lines()
    root = etree.fromstring(sample_page(lines=lines).to_alto().encode())
    ns = {"a": "http://www.loc.gov/standards/alto/ns-v4#"}
    tls = root.xpath("//a:TextLine", namespaces=ns)
    assert [e.get("REF") for e in root.xpath("//a:ReadingOrder//a:ElementRef", namespaces=ns)] == \
        [e.get("ID") for e in tls]
    assert root.xpath("string(//a:MeasurementUnit)", namespaces=ns) == "pixel"
    for tl, ln in zip(tls, lines):
        base = np.array([[float(v) for v in p.split(",")] for p in tl.get("BASELINE").split()])
        np.testing.assert_array_equal(base, np.round(clamped(ln.box)[[3, 2]], 2))
        strings = tl.xpath("a:String", namespaces=ns)
        if getattr(ln, "words", None):
            assert all(s.xpath("a:Shape/a:Polygon", namespaces=ns) for s in strings)
            continue
        # no word boxes: the text's words, each a slice of the line quad in proportion to its characters
        assert [s.get("CONTENT") for s in strings] == (expected_text(ln.text).split() or [""])
        assert {s.get("PROCESSINGREFS") for s in strings} == {"words_proportional"}
        x0, y0 = float(tl.get("HPOS")), float(tl.get("VPOS"))
        for s in strings:
            assert x0 - 0.01 <= float(s.get("HPOS")) and float(s.get("HPOS")) + float(s.get("WIDTH")) <= \
                x0 + float(tl.get("WIDTH")) + 0.02
            assert y0 - 0.01 <= float(s.get("VPOS"))
    unicode_line = tls[6].xpath("a:String", namespaces=ns)
    hpos = [float(s.get("HPOS")) for s in unicode_line]
    n = len(UNICODE)
    starts = [m.start() for m in re.finditer(r"\S+", UNICODE)]
    np.testing.assert_allclose(hpos, [round(20 + 480 * s / n, 2) for s in starts], rtol=0, atol=0.011)


def test_alto_multi_page_document_and_empty_page(alto_schema):
    pages = [sample_page(page=1), sample_page(page=2, lines=[]), sample_page(page=3, lines=sample_lines()[2:5])]
    xml = formats.alto_document(pages)
    assert_valid(alto_schema, xml)   # the schema also checks that every ID is unique in the file
    got = formats.read_alto(xml)
    assert [(g.source, g.page, g.width, g.height) for g in got] == [(p.source, p.page, W, H) for p in pages]
    for g, p in zip(got, pages):
        assert_same_lines(g.lines, p.lines, alto_pts, line_conf=_alto_line_conf)
    empty, = formats.read_alto(sample_page(lines=[]).to_alto())
    assert empty.lines == []


# ---------------------------------------------------------------- PAGE XML
def test_page_xml_valid_against_the_2019_schema(page_schema):
    assert_valid(page_schema, sample_page().to_page_xml())
    assert_valid(page_schema, sample_page(lines=[]).to_page_xml())


def test_page_xml_round_trip():
    page = sample_page(page=4)
    got = formats.read_page_xml(page.to_page_xml())
    assert (got.source, got.page, got.width, got.height) == (page.source, 4, W, H)
    assert_same_lines(got.lines, page.lines, pixel_pts)


def test_page_xml_baseline_region_and_reading_order():
    lines = sample_lines()
    root = etree.fromstring(sample_page(lines=lines).to_page_xml().encode())
    ns = {"p": "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"}
    region, = root.xpath("//p:TextRegion", namespaces=ns)
    assert root.xpath("//p:ReadingOrder//p:RegionRefIndexed/@regionRef", namespaces=ns) == [region.get("id")]
    assert region.xpath("string(p:TextEquiv/p:Unicode)", namespaces=ns) == \
        "\n".join(expected_text(ln.text) for ln in lines)
    for tl, ln in zip(region.xpath("p:TextLine", namespaces=ns), lines):
        base = np.array([[float(v) for v in p.split(",")] for p in
                         tl.xpath("string(p:Baseline/@points)", namespaces=ns).split()])
        np.testing.assert_array_equal(base, np.rint(clamped(ln.box)[[3, 2]]))
    empty = etree.fromstring(sample_page(lines=[]).to_page_xml().encode())
    assert not empty.xpath("//p:ReadingOrder | //p:TextRegion", namespaces=ns)


def test_page_xml_one_document_per_page(page_schema):
    pages = [sample_page(page=1), sample_page(page=2, lines=[]), sample_page("b.png", 1, sample_lines()[:2])]
    docs = formats.page_xml_documents(pages)
    assert len(docs) == 3
    for doc, p in zip(docs, pages):
        assert_valid(page_schema, doc)
        got = formats.read_page_xml(doc)
        assert (got.source, got.page) == (p.source, p.page)
        assert_same_lines(got.lines, p.lines, pixel_pts)


def test_word_boxes_given_as_x0_y0_x1_y1(page_schema, alto_schema):
    box = [[10, 10], [110, 10], [110, 40], [10, 40]]
    ln = line("two words", box, 0.5, words=[dict(text="two", box=[10, 10, 50, 40], confidence=0.4, method="craft"),
                                            dict(text="words", box=[60, 10, 110, 40], confidence=0.6, method="craft")])
    page = sample_page(lines=[ln])
    assert_valid(page_schema, page.to_page_xml())
    assert_valid(alto_schema, page.to_alto())
    corners = [[[10, 10], [50, 10], [50, 40], [10, 40]], [[60, 10], [110, 10], [110, 40], [60, 40]]]
    for got in (formats.read_page_xml(page.to_page_xml()), formats.read_alto(page.to_alto())[0],
                formats.read_hocr(page.to_hocr())[0]):
        assert [w["box"] for w in got.lines[0].words] == corners


# ---------------------------------------------------------------- readers refuse what is not theirs
def test_readers_name_the_file_on_bad_input():
    with pytest.raises(ValueError, match="scan.xml: not well-formed"):
        formats.read_alto("<alto><Layout>", name="scan.xml")
    with pytest.raises(ValueError, match="x.hocr: no ocr_page"):
        formats.read_hocr("<html><body/></html>", name="x.hocr")
    with pytest.raises(ValueError, match="p.xml: not a PAGE XML"):
        formats.read_page_xml(sample_page().to_alto(), name="p.xml")


# ---------------------------------------------------------------- the real pipeline
@pytest.fixture(scope="module")
def real_page():
    from trocr_np import ocr_page
    path = Path(__file__).parents[1] / "examples" / "handwritten_note.png"
    return ocr_page(path, source=str(path))


def test_real_page_in_all_three_formats(tmp_path, real_page, alto_schema, page_schema):
    page = real_page
    assert page.lines, "no lines found on the example page"
    size = (page.width, page.height)
    xml = page.to_hocr()
    assert_hocr_check_ok(tmp_path, xml, n_lines=len(page.lines))
    assert hocr_structure_errors(xml) == []
    assert_same_lines(formats.read_hocr(xml)[0].lines, page.lines, partial(hocr_pts, size=size), has_method=False)
    xml = page.to_alto()
    assert_valid(alto_schema, xml)
    assert_same_lines(formats.read_alto(xml)[0].lines, page.lines, partial(alto_pts, size=size),
                      line_conf=_alto_line_conf)
    xml = page.to_page_xml()
    assert_valid(page_schema, xml)
    got = formats.read_page_xml(xml)
    assert (got.source, got.width, got.height) == (page.source, page.width, page.height)
    assert_same_lines(got.lines, page.lines, partial(pixel_pts, size=size))
