"""Where `trocr-np ocr` writes its results: txt, json, jsonl, hOCR, ALTO, PAGE XML and review pages.

    out = Output(OutputOptions(format="alto", path="out/", resume=True), inputs)   # paths checked here
    todo = [x for x in inputs if str(x) not in out.done]    # --resume: what the target holds is done
    out.start()
    for record in ocr_files(todo, ...): out.add(record)     # a page's drawing error: out.add(r, [err])
    out.close()

Targets. `path` None is standard output. Otherwise it is a FOLDER (one file per input, named after
the input: `scan.png` -> `scan.alto.xml`; inputs with the same name in different folders get
`scan-2...`) when it is an existing folder, ends with a slash, or names no file suffix while there
are several inputs; else a FILE holding every input: json a list of records (one per page or
error), jsonl one record per line, txt the page texts (`==> source <==` headers for several
inputs, pages of one input separated by form feeds), hOCR and ALTO one multi-page document. PAGE
XML describes one image per file, so in a folder a multi-page input gives `scan_p1.page.xml`,
`scan_p2.page.xml`, ... and a file holds one page only.

Survival. Every file is written whole through `ocr_base.files.atomic_write` (a temporary file, then
a rename): an input's file appears once all its pages are done, a FILE target at the end of the run,
so an interrupted run leaves complete files or none. JSONL is the exception that streams: each
record is appended as one write of one complete line as soon as its page is done, and a record
cut short (a power cut mid-write) is dropped by --resume.

Resume (`resume=True`). A folder: an input whose file is there is done (PAGE: `scan.page.xml`, or
`scan_p1.page.xml`, which is written after the input's other pages). A JSONL or JSON file: an input
whose records cover all its pages (or hold its error) is done; the file is rewritten first without
the records of inputs it holds only in part, which are done again. Other targets cannot resume.

Paths are checked when the Output is made, before any page is read: a bad one is a ValueError.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ocr_base.files import atomic_write

FORMATS = ("txt", "json", "jsonl", "hocr", "alto", "page")
SUFFIX = {"txt": ".txt", "json": ".json", "jsonl": ".jsonl", "hocr": ".hocr", "alto": ".alto.xml",
          "page": ".page.xml", "html": ".html"}
RESUMABLE_FILES = ("json", "jsonl")


@dataclass(frozen=True)
class OutputOptions:
    """format: one of FORMATS, or "html" (review pages, a folder); path: file or folder, None for stdout;
    resume: leave out inputs already written (see the module docstring)."""
    format: str = "txt"
    path: str | None = None
    resume: bool = False

    def __post_init__(self):
        if self.format not in FORMATS + ("html",):
            raise ValueError(f"OutputOptions.format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if not isinstance(self.resume, bool):
            raise ValueError(f"OutputOptions.resume must be True or False; got {self.resume!r}")


def writable_folder(path, what: str = "output folder") -> Path:
    """Create `path` (and its parents) if needed; a ValueError unless it is a folder we can write in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create {what} {p}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {p} is not writable")
    return p


def unique_names(inputs) -> dict[str, str]:
    """str(input) -> file stem: the input's stem, with -2, -3, ... for repeated stems (in input order)."""
    names, used = {}, set()
    for x in inputs:
        stem, k = Path(x).stem, 1
        name = stem
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        names[str(x)] = name
    return names


def complete_sources(records) -> set[str]:
    """Sources whose records hold every page (1..page_count) or a whole-input error."""
    pages, counts, whole = {}, {}, set()
    for r in records:
        s = r.get("source")
        if r.get("page") is None:
            whole.add(s)
            continue
        pages.setdefault(s, set()).add(r["page"])
        if r.get("page_count"):
            counts[s] = r["page_count"]
    return whole | {s for s, got in pages.items() if s in counts and got >= set(range(1, counts[s] + 1))}


def read_jsonl(path) -> list[dict]:
    """The complete records of a JSONL file (a line cut short or not JSON is dropped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict):
            out.append(r)
    return out


def page_texts(pages) -> str:
    return "\f".join(p.text for p in pages) + "\n"


def document(fmt: str, records, title=None) -> str:
    """One file's text for txt / json / hocr / alto (records: PageResult | ErrorRecord, or dicts for json)."""
    if fmt == "json":
        return json.dumps([r if isinstance(r, dict) else r.to_dict() for r in records], indent=1,
                          ensure_ascii=False) + "\n"
    pages = [r for r in records if r.ok]
    if fmt == "txt":
        return page_texts(pages)
    from .formats import alto_document, hocr_document
    return (hocr_document(pages, title) if fmt == "hocr" else alto_document(pages))


class Output:
    """One target of one format (see the module docstring)."""

    def __init__(self, options: OutputOptions, inputs):
        o = self.options = options
        self.fmt, self.inputs = o.format, [str(x) for x in inputs]
        self.order = {s: k for k, s in enumerate(self.inputs)}
        self.path = None if o.path is None else Path(o.path)
        p = self.path
        self.folder = p is not None and self.fmt != "jsonl" and (
            p.is_dir() or str(o.path).endswith(("/", os.sep)) or self.fmt == "html"
            or (len(self.inputs) > 1 and not p.suffix))
        self.kept: list[dict] = []           # records of a resumed JSON/JSONL file
        self.group: list = []                # the current input's records (folder targets)
        self.records: list = []              # everything (file and stdout targets)
        self.names = unique_names(self.inputs)
        self._check()
        self.done = self._resume() if o.resume else set()   # inputs this target already holds

    # ------------------------------------------------------------ before the first page
    def _check(self):
        p, fmt = self.path, self.fmt
        if p is None:
            if self.options.resume:
                raise ValueError("--resume needs an output (-o): a folder, or a JSONL or JSON file")
            return
        if self.folder:
            writable_folder(p)
            return
        if p.is_dir():
            raise ValueError(f"{p} is a folder; --format {fmt} writes one file")
        if fmt == "page" and len(self.inputs) > 1:
            raise ValueError(f"PAGE XML holds one page per file: give -o a folder for {len(self.inputs)} inputs")
        if self.options.resume and fmt not in RESUMABLE_FILES:
            raise ValueError(f"--resume needs a folder, or a JSONL or JSON file; {p} is a {fmt} file")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"cannot write {p}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise ValueError(f"cannot write {p}: permission denied")

    def _resume(self) -> set[str]:
        p = self.path
        if self.folder:
            for tmp in p.glob(f".*{SUFFIX[self.fmt]}.*.tmp"):   # atomic_write's, left by a killed run
                tmp.unlink(missing_ok=True)
            return {s for s in self.inputs if self._marker(s).exists()}
        for tmp in p.parent.glob(f".{p.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if not p.exists():
            return set()
        if self.fmt == "jsonl":
            records = read_jsonl(p)
        else:
            try:
                records = json.loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"--resume: {p} is not a JSON list of records ({e})") from None
            if not isinstance(records, list):
                raise ValueError(f"--resume: {p} is not a JSON list of records")
        done = complete_sources(r for r in records if isinstance(r, dict))
        self.kept = [r for r in records if isinstance(r, dict) and r.get("source") in done]
        if self.fmt == "jsonl":     # the file without the records of inputs held in part
            atomic_write(p, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.kept))
        return done

    def start(self):
        """Called once the batch starts: a JSONL file not resumed starts empty."""
        if self.fmt == "jsonl" and self.path is not None and not self.options.resume:
            atomic_write(self.path, "")

    # ------------------------------------------------------------ records
    def add(self, r, extra=()) -> None:
        """A PageResult or ErrorRecord, in the order ocr_files yields them; extra: error records about it
        (a drawing that could not be written), kept with it. Inputs the target already holds are ignored."""
        if r.source in self.done:
            return
        if self.fmt != "html":
            r = replace(r, image=None) if r.ok else r      # the page image is not kept for text outputs
        records = [r, *extra]
        if self.fmt == "jsonl":
            self._append("".join(json.dumps(x.to_dict(), ensure_ascii=False) + "\n" for x in records))
        elif not self.folder:
            self.records += records
        else:
            if self.group and self.group[0].source != r.source:
                self._flush()
            self.group += records
            if r.page is None or r.page == r.page_count:
                self._flush()

    def close(self) -> None:
        """Write what is left: the last input (folder), the whole document (file, stdout)."""
        if self.folder:
            self._flush()
            return
        if self.fmt == "jsonl":
            return
        if self.fmt == "page":
            pages = [r for r in self.records if r.ok]
            if not pages:
                return
            from .formats import page_xml
            text = page_xml(pages[0])
        else:
            records = self.kept + [r.to_dict() for r in self.records] if self.fmt == "json" else self.records
            if self.fmt == "json":
                records = sorted(records, key=lambda d: self.order.get(d.get("source"), len(self.order)))
            elif self.fmt != "txt" and not any(r.ok for r in records):
                return
            text = self._txt_many() if self.fmt == "txt" and self.path is not None else document(self.fmt, records)
        if self.path is None:
            if self.fmt != "txt":   # txt on stdout is printed page by page by the CLI
                sys.stdout.write(text)
                sys.stdout.flush()
        else:
            atomic_write(self.path, text)

    def extra_pages(self) -> list:
        """PAGE XML in a FILE holds one page: the pages that were not written (for an error line)."""
        if self.fmt == "page" and not self.folder:
            return [r for r in self.records if r.ok][1:]
        return []

    # ------------------------------------------------------------ files
    def _txt_many(self) -> str:
        ok = [r for r in self.records if r.ok]
        if len({r.source for r in ok}) <= 1:
            return page_texts(ok) if ok else ""
        out, last = [], None
        for r in ok:
            if r.source != last:
                out.append(f"==> {r.source} <==\n")
                last = r.source
            out.append(r.text + "\n")
        return "".join(out)

    def _name(self, source: str, page: int | None = None) -> Path:
        stem = self.names.get(source) or Path(source).stem
        return self.path / f"{stem}{'' if page is None else f'_p{page}'}{SUFFIX[self.fmt]}"

    def _marker(self, source: str) -> Path:
        if self.fmt == "page":
            single = self._name(source)
            return single if single.exists() else self._name(source, 1)
        return self._name(source)

    def _append(self, line: str) -> None:
        if self.path is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = line.encode("utf-8")
            if os.write(fd, data) != len(data):
                raise OSError(f"{self.path}: short write")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _flush(self) -> None:
        group, self.group = self.group, []
        if not group:
            return
        source = group[0].source
        pages = [r for r in group if r.ok]
        if self.fmt == "json":
            atomic_write(self._name(source), document("json", group))
        elif self.fmt == "page":
            from .formats import page_xml
            many = any(r.page_count > 1 for r in pages)
            for r in sorted(pages, key=lambda r: r.page == 1):      # page 1 (the resume marker) last
                atomic_write(self._name(source, r.page if many else None), page_xml(r))
        elif pages and self.fmt == "html":
            from .review import review_page
            atomic_write(self._name(source), review_page(pages))
        elif pages:
            atomic_write(self._name(source), document(self.fmt, pages, title=source))
