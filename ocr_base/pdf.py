"""PDF pages as images: each page rendered at `dpi` with PDFium (the optional extra `pdf`: pypdfium2).

    is_pdf(data) -> bool
    pdf_pages(data, name, dpi=PDF_DPI, max_pixels) -> (page count, iterator of RGB PIL images)

Pages are rendered one at a time as the iterator is walked, so a long PDF never holds more than one
page image in memory. Every failure is an `ImageError` naming the file and saying what is wrong: the
extra not installed, a password-protected (encrypted) PDF, corrupt data, a PDF without pages, a page
that would exceed the pixel limit at this dpi.
"""
from __future__ import annotations

from typing import Iterator

from PIL import Image

from .image_io import MAX_PIXELS, ImageError, to_rgb

PDF_DPI = 300   # what OCR engines assume for scanned documents (Tesseract, OCRmyPDF)


def is_pdf(data: bytes) -> bool:
    """The PDF header `%PDF-` (readers accept it anywhere in the first 1024 bytes)."""
    return b"%PDF-" in data[:1024]


def pdf_pages(data: bytes, name: str, dpi: float = PDF_DPI,
              max_pixels: int | None = MAX_PIXELS) -> tuple[int, Iterator[Image.Image]]:
    """(number of pages, iterator rendering each page as an RGB PIL image at `dpi`)."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise ImageError(f"{name}: PDF input needs pypdfium2 (pip install 'trocr-np[pdf]')") from None
    if not 0 < dpi <= 2400:
        raise ValueError(f"dpi must be a number in (0, 2400], got {dpi!r}")
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise ImageError(f"{name}: encrypted PDF (a password is needed to open it)") from None
        raise ImageError(f"{name}: corrupt or unreadable PDF ({e})") from None
    n = len(doc)
    if n == 0:
        doc.close()
        raise ImageError(f"{name}: PDF has no pages")

    def render() -> Iterator[Image.Image]:
        try:
            for k in range(n):
                where = f"{name} (page {k + 1})"
                try:
                    page = doc[k]
                    w, h = page.get_size()          # points, 1/72 inch
                    px = (w * dpi / 72) * (h * dpi / 72)
                    if max_pixels is not None and px > max_pixels:
                        raise ImageError(f"{where}: page too large at {dpi} dpi ({px:,.0f} pixels > limit "
                                         f"{max_pixels:,}); lower --dpi")
                    im = page.render(scale=dpi / 72).to_pil()
                except pdfium.PdfiumError as e:
                    raise ImageError(f"{where}: cannot render PDF page ({e})") from None
                yield to_rgb(im, where)
        finally:
            doc.close()
    return n, render()
