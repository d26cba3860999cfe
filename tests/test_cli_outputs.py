"""`trocr-np ocr` outputs: every --format written and read back, PDF input, word boxes, outputs that
survive a killed run, --resume, output paths checked first, the progress bar, the review page.

Real CRAFT and the bundled recogniser on small rendered pages (two PNGs and a two-page PDF written
with Pillow's PDF writer); the expected values are the pipeline's own records, compared with what
the format readers (trocr_np.formats) give back from the written files.
"""
from __future__ import annotations

import html
import html.parser
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxml import etree
from pipeline_pages import render_page
from test_formats import SCHEMAS, assert_hocr_check_ok, assert_valid
from trocr_np import formats
from trocr_np.cli import main
from trocr_np.outputs import Output, OutputOptions
from trocr_np.pipeline import PageOptions, ocr_files
from detector_np import DetectOptions

SMALL = ["--canvas-size", "640", "--mag-ratio", "1.0"]
OPTIONS = PageOptions(detect=DetectOptions(canvas_size=640, mag_ratio=1.0))
ROOT = Path(__file__).resolve().parents[1]
XSD = {"alto": "alto-4-4.xsd", "page": "pagecontent-2019-07-15.xsd"}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def write_inputs(folder: Path) -> list[Path]:
    """a.png (two lines), b.png (one line), doc.pdf (the same two pages), in that (sorted) order."""
    folder.mkdir(parents=True, exist_ok=True)
    a = render_page([(12, 14, "hello world", 0, 30), (12, 70, "see you soon", 1, 30)], (300, 120))[0]
    b = render_page([(12, 14, "good night", 2, 30)], (300, 70))[0]
    a.save(folder / "a.png")
    b.save(folder / "b.png")
    a.save(folder / "doc.pdf", save_all=True, append_images=[b], resolution=72)   # one point per pixel: rendered back at 72 dpi
    return [folder / "a.png", folder / "b.png", folder / "doc.pdf"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("cli_outputs_in"))


@pytest.fixture(scope="module")
def records(inputs):
    """The pipeline's records for the inputs (PDF at 72 dpi), page images kept."""
    return list(ocr_files(inputs, None, None, PageOptions(detect=OPTIONS.detect, pdf_dpi=72)))


def run_cli(*args):
    # A shell without job control starts background commands with SIGINT ignored, and an ignored
    # signal stays ignored across fork and exec (a handled one is reset to the default): a suite
    # started that way (`nohup ... &`) saw the CLI ignore the Ctrl-C sent below and run to the end.
    # So SIGINT is handled here while the child starts, and the child gets the default.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, "-m", "trocr_np", "ocr", *map(str, args), *SMALL, "--dpi", "72"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------- the records themselves
def test_records_pdf_pages_words_and_tokens(records, inputs):
    assert [(r.source, r.page, r.page_count) for r in records] == \
        [(str(inputs[0]), 1, 1), (str(inputs[1]), 1, 1), (str(inputs[2]), 1, 2), (str(inputs[2]), 2, 2)]
    assert all(r.ok for r in records)
    # the PDF's pages are the PNGs rendered back at the same resolution (Pillow stores them as JPEG)
    for png, pdf in ((records[0], records[2]), (records[1], records[3])):
        assert (pdf.width, pdf.height) == (png.width, png.height)
        diff = np.abs(np.asarray(pdf.image, float) - np.asarray(png.image, float))
        assert diff.mean() < 2 and pdf.lines
    methods = set()
    for r in records:
        for ln in r.lines:
            words = ln.words or []
            assert [w["text"] for w in words] == ln.text.split()
            probs = [p for _, p in ln.tokens]
            assert ln.confidence == pytest.approx(np.mean(probs), abs=2e-4), "line confidence: mean token probability"
            box = np.asarray(ln.box)
            for w in words:
                methods.add(w["method"])
                wb = np.asarray(w["box"])
                # inside the line's quad (its upright bounds, a pixel of slack for the detector's boxes)
                assert (wb.min(0) >= box.min(0) - 4).all() and (wb.max(0) <= box.max(0) + 4).all()
            # each word's confidence: the mean probability of the tokens that wrote its characters
            pos, owner = 0, []
            for t, _ in ln.tokens:
                # a token of spaces only writes no character of a word (words.py::_word_tokens)
                at = ln.text.find(t, pos) if t.strip() and t not in ("<s>", "</s>") else -1
                owner.append(len(ln.text[:at + len(t)].split()) - 1 if at >= 0 else None)
                pos = at + len(t) if at >= 0 else pos
            for k, w in enumerate(words):
                mine = [p for p, o in zip(probs, owner) if o == k]
                assert w["confidence"] == pytest.approx(np.mean(mine), abs=2e-4)
    assert "detector" in methods, "rendered words with clear gaps: CRAFT's word boxes match"


# ---------------------------------------------------------------- every format, read back
def same_lines(got, want, places, alto=False):
    assert [ln.text for ln in got.lines] == [ln.text for ln in want.lines]
    for g, w in zip(got.lines, want.lines):
        np.testing.assert_allclose(np.asarray(g.polygon, float), np.asarray(w.polygon, float), atol=places)
        # ALTO has no line confidence: the reader gives the mean of the line's words' WC
        conf = round(float(np.mean([x["confidence"] for x in w.words])), 4) if alto and w.words else w.confidence
        assert g.confidence == pytest.approx(conf, abs=1e-4)
        if w.words:
            assert [x["text"] for x in g.words] == [x["text"] for x in w.words]


def read_back(fmt, path):
    text = Path(path).read_text(encoding="utf-8")
    if fmt == "hocr":
        return formats.read_hocr(text)
    if fmt == "alto":
        return formats.read_alto(text)
    return [formats.read_page_xml(text)]


@pytest.mark.parametrize("fmt", ["hocr", "alto", "page"])
def test_xml_formats_in_a_folder_read_back(fmt, records, inputs, tmp_path):
    out = Output(OutputOptions(fmt, str(tmp_path / "out") + "/"), inputs)
    out.start()
    for r in records:
        out.add(r)
    out.close()
    ext = {"hocr": ".hocr", "alto": ".alto.xml", "page": ".page.xml"}[fmt]
    names = ["a", "b", "doc"] if fmt != "page" else ["a", "b", "doc_p1", "doc_p2"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(n + ext for n in names)
    for n in names:         # each file valid: the official XSDs, hocr-tools' checker
        xml = (tmp_path / "out" / (n + ext)).read_text(encoding="utf-8")
        if fmt == "hocr":
            mine = [r for r in records if Path(r.source).stem == n]
            # hocr-check's overlap test takes all pages of a document as one page: single pages only
            assert_hocr_check_ok(tmp_path, xml, sum(len(r.lines) for r in mine), overlap=len(mine) == 1)
        else:
            assert_valid(etree.XMLSchema(etree.parse(str(SCHEMAS / XSD[fmt]))), xml)
    got = [pg for n in names for pg in read_back(fmt, tmp_path / "out" / (n + ext))]
    assert len(got) == len(records), "a multi-page input is one multi-page hOCR/ALTO document"
    for g, w in zip(got, records):
        assert (g.width, g.height) == (w.width, w.height)
        same_lines(g, w, 0.51 if fmt != "alto" else 0.006, alto=fmt == "alto")


@pytest.mark.parametrize("fmt", ["json", "hocr", "alto", "txt"])
def test_one_file_for_all_inputs(fmt, records, inputs, tmp_path):
    path = tmp_path / f"all.{fmt}"
    out = Output(OutputOptions(fmt, str(path)), inputs)
    for r in records:
        out.add(r)
    assert not path.exists(), "a file target is written whole at the end"
    out.close()
    text = path.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text) == json.loads(json.dumps([r.to_dict() for r in records]))
    elif fmt == "txt":
        for r in records:
            assert f"==> {r.source} <==" in text and r.text in text
    else:
        got = read_back(fmt, path)
        assert len(got) == len(records)
        for g, w in zip(got, records):
            same_lines(g, w, 0.51 if fmt == "hocr" else 0.006, alto=fmt == "alto")


def test_cli_format_jsonl_and_page_file(inputs, records, tmp_path, capsys):
    rc = main(["ocr", str(inputs[0]), str(inputs[1]), "--format", "jsonl", "-o", str(tmp_path / "r.jsonl"), "-q"]
              + SMALL)
    cap = capsys.readouterr()
    assert rc == 0 and cap.out == "" and cap.err == "", "-o: nothing on stdout; --quiet: no progress"
    got = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    want = json.loads(json.dumps([r.to_dict() for r in records[:2]]))
    for d in got + want:
        del d["timings"]
    assert got == want
    rc = main(["ocr", str(inputs[1]), "--format", "page", "-o", str(tmp_path / "b.xml")] + SMALL)
    assert rc == 0
    same_lines(formats.read_page_xml((tmp_path / "b.xml").read_text()), records[1], 0.51)


def test_cli_writes_folder_json_alias_and_html(inputs, records, tmp_path, capsys):
    folder = inputs[0].parent
    rc = main(["ocr", str(folder), "--format", "alto", "-o", str(tmp_path / "alto"), "--json", str(tmp_path / "x.json"),
               "--html", str(tmp_path / "html"), "--dpi", "72"] + SMALL)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert sorted(p.name for p in (tmp_path / "alto").iterdir()) == ["a.alto.xml", "b.alto.xml", "doc.alto.xml"]
    assert len(formats.read_alto((tmp_path / "alto" / "doc.alto.xml").read_text())) == 2
    assert [(d["source"], d["page"]) for d in json.loads((tmp_path / "x.json").read_text())] == \
        [(r.source, r.page) for r in records]
    assert sorted(p.name for p in (tmp_path / "html").iterdir()) == ["a.html", "b.html", "doc.html"]
    assert "[1/3]" in cap.err and cap.out == ""


# ---------------------------------------------------------------- PDFs that cannot be read
def bad_pdfs(folder: Path) -> dict[str, Path]:
    import pikepdf
    good = io.BytesIO()
    render_page([(12, 14, "secret", 0, 30)], (200, 60))[0].save(good, "PDF", resolution=100)
    enc = folder / "locked.pdf"
    with pikepdf.open(io.BytesIO(good.getvalue())) as pdf:
        pdf.save(enc, encryption=pikepdf.Encryption(owner="owner", user="user"))
    corrupt = folder / "corrupt.pdf"
    corrupt.write_bytes(good.getvalue()[:200])
    empty = folder / "empty.pdf"
    with pikepdf.new() as pdf:
        pdf.save(empty)
    return {"encrypted": enc, "corrupt": corrupt, "empty": empty}


def test_encrypted_corrupt_and_empty_pdfs_are_error_records(inputs, tmp_path, capsys):
    bad = bad_pdfs(tmp_path)
    args = [bad["encrypted"], inputs[1], bad["corrupt"], bad["empty"]]
    rc = main(["ocr", *map(str, args), "--format", "jsonl", "-o", str(tmp_path / "r.jsonl")] + SMALL)
    err = capsys.readouterr().err
    assert rc == 1
    got = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [g["source"] for g in got] == list(map(str, args)), "the batch goes on"
    assert "error" not in got[1] and got[1]["text"]
    for g, word in zip((got[0], got[2], got[3]), ("encrypted", "corrupt", "")):
        assert g["error_type"] == "ImageError" and word in g["error"] and g["source"] in g["error"]
    assert "password" in got[0]["error"]
    assert f"trocr-np ocr: error: {bad['encrypted']}" in err and "3 of 4 inputs failed" in err


def test_pdf_pages_rendered_at_the_dpi_one_at_a_time(inputs):
    from ocr_base.image_io import ImageError, iter_pages, load_image, load_pages
    pdf = inputs[2]
    n, pages = iter_pages(pdf, dpi=144)
    assert n == 2
    first = next(pages)
    assert first.size == (600, 240), "300 x 120 points at 144 dpi"
    assert next(pages).size == (600, 140) and next(pages, None) is None
    assert [p.size for p in load_pages(pdf.read_bytes(), dpi=72)] == [(300, 120), (300, 70)]
    w, h = load_image(pdf).size      # 300 dpi by default; PDFium rounds 120 pt * 300 / 72 = 500.000.. up
    assert w == 1250 and h in (500, 501)
    with pytest.raises(ImageError, match=r"doc.pdf \(page 1\): page too large at 2400 dpi"):
        next(iter_pages(pdf, max_pixels=10_000_000, dpi=2400)[1])


def test_pdf_without_pypdfium2_says_what_to_install(tmp_path):
    p = tmp_path / "x.pdf"
    Image.new("RGB", (50, 20), "white").save(p, resolution=72)
    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, n, *a):\n"
            "        if n.split('.')[0] == 'pypdfium2': raise ImportError(n)\n"
            "sys.meta_path.insert(0, B())\n"
            "from ocr_base.image_io import load_pages, ImageError\n"
            f"try: load_pages({str(p)!r})\n"
            "except ImageError as e: print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert str(p) in r.stdout and "pip install" in r.stdout and "pypdfium2" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- outputs that survive
def wait_for_records(path: Path, proc, n=1, timeout=300):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before {n} records: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no record in time")


def test_killed_run_leaves_whole_files_and_resume_finishes_it(inputs, records, tmp_path):
    folder, out, html_dir = inputs[0].parent, tmp_path / "r.jsonl", tmp_path / "html"
    # one page per recognition batch (ocr_files holds pages back until batch_size crops): records
    # stream out page by page, so there is a run to kill between them
    one = ("--batch-size", 1)
    p = run_cli(folder, "--format", "jsonl", "-o", out, "--html", html_dir, *one)
    wait_for_records(out, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = [json.loads(x) for x in out.read_text().splitlines()]          # every line a whole record
    assert 1 <= len(done) < len(records)
    for f in html_dir.iterdir():
        assert f.name.startswith(".") or f.read_text().endswith("</html>\n"), "no half-written review page"

    # resume, interrupted with Ctrl-C after its first record: one line, then death by SIGINT (shells say 130)
    p = run_cli(folder, "--format", "jsonl", "-o", out, "--html", html_dir, "--resume", *one)
    wait_for_records(out, p, len(done) + 1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGINT and err.strip().splitlines()[-1] == "trocr-np ocr: interrupted", err
    assert "Traceback" not in err

    p = run_cli(folder, "--format", "jsonl", "-o", out, "--html", html_dir, "--resume")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "already done" in err
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted((g["source"], g["page"]) for g in got) == sorted((r.source, r.page) for r in records), \
        "each page once: inputs held in part are done again, not duplicated"
    assert sorted(f.name for f in html_dir.iterdir()) == ["a.html", "b.html", "doc.html"], "no temporary files"
    for g in got:
        want = next(r for r in records if (r.source, r.page) == (g["source"], g["page"]))
        assert g["text"] == want.text


def test_output_paths_are_checked_before_the_first_page(inputs, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = [
        (["-o", str(tmp_path / "nope" / "x.json"), "--format", "json"], "does not exist"),
        (["--draw", str(tmp_path / "file")], "not a folder"),
        (["--html", str(tmp_path / "file" / "sub")], "cannot create"),
        (["--format", "page", "-o", str(tmp_path / "p.xml")], "one page per file"),
        (["--resume"], "--resume needs an output"),
        (["--format", "hocr", "-o", str(tmp_path / "x.hocr"), "--resume"], "--resume needs a folder"),
    ]
    for extra, msg in cases:
        rc = main(["ocr", str(inputs[0]), str(inputs[1]), "--model", str(tmp_path / "no-model")] + extra + SMALL)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert "[1/2]" not in err, "refused before any page"


def test_a_drawing_that_cannot_be_written_is_an_error_record(inputs, tmp_path, capsys):
    draw = tmp_path / "drawn"
    (draw / "a.png").mkdir(parents=True)         # a folder where the drawing of a.png should go
    rc = main(["ocr", str(inputs[0]), str(inputs[1]), "--draw", str(draw), "--format", "jsonl",
               "-o", str(tmp_path / "r.jsonl")] + SMALL)
    err = capsys.readouterr().err
    assert rc == 1 and "cannot write drawing" in err
    got = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(g["source"], "error" in g) for g in got] == [(str(inputs[0]), False), (str(inputs[0]), True),
                                                          (str(inputs[1]), False)]
    assert (draw / "b.png").is_file() and Image.open(draw / "b.png").size == (300, 70)


# ---------------------------------------------------------------- progress
def test_progress_bar_on_a_terminal(inputs):
    master, slave = pty.openpty()
    # --batch-size 1: each page recognised on its own (ocr_files holds pages until batch_size crops),
    # so the bar moves page by page
    p = subprocess.Popen([sys.executable, "-m", "trocr_np", "ocr", str(inputs[1]), str(inputs[2]), *SMALL,
                          "--dpi", "72", "--batch-size", "1"], stdout=subprocess.PIPE, stderr=slave, env=ENV,
                         cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], 300)
        if not r:
            break
        try:
            data = os.read(master, 4096)
        except OSError:      # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=300)
    os.close(master)
    err = b"".join(chunks).decode()
    assert p.returncode == 0, err
    frames = [f for f in err.replace("\x1b[2K", "").split("\r") if f.strip()]
    assert "[1/2]" not in err, "a bar, not lines, on a terminal"
    assert any("0/2 pages" in f for f in frames), "two inputs: two pages until the PDF is opened"
    assert "3/3 pages" in frames[-1] and "pages/s" in frames[-1] and "ETA 0:00" in frames[-1]
    assert any("1/3 pages" in f or "2/3 pages" in f for f in frames)


# ---------------------------------------------------------------- the review page
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def chromium_exe() -> str:
    exe = next((shutil.which(e) for e in ("chromium", "chromium-browser", "google-chrome") if shutil.which(e)), None)
    assert exe, "headless Chromium not installed (.ci/run installs Debian's chromium)"
    return exe


def chromium(*args, tmp):
    return subprocess.run([chromium_exe(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp}", *args], capture_output=True,
                          text=True, timeout=120)


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (fds 3 and 4), one page attached."""

    def __init__(self, url, profile):
        self._cmd_r, self._cmd_w = os.pipe()
        self._ans_r, self._ans_w = os.pipe()

        def child():   # dup2 onto the same number would keep close-on-exec: go through a copy
            a, b = os.dup(self._cmd_r), os.dup(self._ans_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen([chromium_exe(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "--remote-debugging-pipe", "--window-size=1200,800", url],
                                     preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(self._cmd_r)
        os.close(self._ans_w)
        self._buf, self._id, self.session = b"", 0, None
        t0 = time.monotonic()
        while self.session is None and time.monotonic() - t0 < 60:
            pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages:
                self.session = self.call("Target.attachToTarget", targetId=pages[0]["targetId"],
                                         flatten=True)["sessionId"]
            time.sleep(0.05)
        # the target may still show its first blank document: wait for ours, loaded
        loaded = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        while not self.eval(loaded):
            assert time.monotonic() - t0 < 60, "the page did not load"
            time.sleep(0.05)

    def call(self, method, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._ans_r, 1 << 16)
                assert chunk, "chromium closed the DevTools pipe"
                self._buf += chunk
            line, self._buf = self._buf.split(b"\0", 1)
            m = json.loads(line)
            if m.get("id") == self._id:
                assert "error" not in m, m["error"]
                return m["result"]

    def eval(self, js):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True)
        assert "exceptionDetails" not in r, (js, r["exceptionDetails"])
        return r["result"].get("value")

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._ans_r)


class _Lines(html.parser.HTMLParser):
    """li id -> [class, text] and polygon id -> class from a DOM dump."""

    def __init__(self):
        super().__init__()
        self.items, self.regions, self._li = {}, {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "li":
            self._li = a["id"]
            self.items[self._li] = [a.get("class") or "", ""]
        if tag == "polygon" and a.get("id", "").startswith("region-"):
            self.regions[a["id"]] = a.get("class") or ""

    def handle_endtag(self, tag):
        if tag == "li":
            self._li = None

    def handle_data(self, data):
        if self._li:
            self.items[self._li][1] += data


def selected(dom):
    return ([i for i, (c, _) in dom.items.items() if "selected" in c.split()],
            [i for i, c in dom.regions.items() if "selected" in c.split()])


def test_review_page_in_headless_chromium(records, inputs, tmp_path):
    out = Output(OutputOptions("html", str(tmp_path / "html")), inputs)
    for r in records:
        out.add(r)
    out.close()
    page = tmp_path / "html" / "doc.html"
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, \
        "self-contained: nothing to fetch"
    lines = [ln for r in records[2:] for ln in r.lines]
    for ln in lines:        # each token with its probability, to show on hover
        for t, prob in ln.tokens:
            if t in ln.text:
                assert f'data-p="{prob:.4f}">{html.escape(t)}</span>' in text

    shot = tmp_path / "shot.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1200,800", page.as_uri(), tmp=tmp_path / "profile")
    assert shot.is_file(), r.stderr
    px = np.asarray(Image.open(shot).convert("RGB"), float)
    assert px.std() > 10, "the screenshot shows something"

    r = chromium("--dump-dom", page.as_uri(), tmp=tmp_path / "profile")
    dom = _Lines()
    dom.feed(r.stdout)
    assert len(dom.items) == len(lines) == len(dom.regions)
    for k, ln in enumerate(lines, 1):
        assert ln.text in dom.items[f"line-{k}"][1], "every line's text is on the page"
    assert selected(dom) == ([], [])
    r = chromium("--dump-dom", page.as_uri() + "#line-2", tmp=tmp_path / "profile")
    dom = _Lines()
    dom.feed(r.stdout)
    assert selected(dom) == (["line-2"], ["region-2"]), "#line-N selects line N"

    # a mouse click on the last line's outline, at its centre on the screen, marks it and its text
    k = len(lines)
    browser = DevTools(page.as_uri(), tmp_path / "profile2")
    try:
        x, y = browser.eval(f"(() => {{const e = document.getElementById('region-{k}'); e.scrollIntoView();"
                            "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]})()")
        browser.click(x, y)
        got = browser.eval("[...document.querySelectorAll('.selected')].map(e => e.id).sort()")
        assert got == [f"line-{k}", f"region-{k}"]
        assert browser.eval("location.hash") == f"#line-{k}"
    finally:
        browser.close()
