"""OCR output formats that other tools read: hOCR 1.2, ALTO 4.4 and PAGE XML 2019 (standard library only).

    hocr_document(pages) -> str            one hOCR file for any number of pages
    alto_document(pages) -> str            one ALTO file for any number of pages
    page_xml(page) -> str                  one PAGE XML file per page (the format holds one image)
    page_xml_documents(pages) -> list[str]
    read_hocr(xml) / read_alto(xml) -> list[PageResult];  read_page_xml(xml) -> PageResult

`PageResult.to_hocr()`, `.to_alto()` and `.to_page_xml()` write one page.
Each writer's module docstring says how lines, rotated and polygon outlines,
baselines, confidences, words and reading order are written. Shared rules
(_common): points are clamped to the page; the baseline is the bottom edge of
the line's quad, BL -> BR; characters XML 1.0 cannot hold become U+FFFD.
Readers give back lines with text, polygon, confidence and words (when the
file has them); the detector's score is not in any of these formats (NaN).
"""
from .alto import alto_document, read_alto
from .hocr import hocr_document, read_hocr
from .pagexml import page_xml, page_xml_documents, read_page_xml

__all__ = ["alto_document", "hocr_document", "page_xml", "page_xml_documents", "read_alto", "read_hocr",
           "read_page_xml"]
