"""Image loading for the OCR pipeline: any source -> upright 8-bit RGB PIL pages.

    load_image(src)  -> PIL.Image (RGB)          first page
    load_pages(src)  -> list[PIL.Image] (RGB)    one page per frame of a multi-frame TIFF, per PDF page
    iter_pages(src)  -> (count, iterator)         the same, PDF pages rendered one at a time

PDF data (a `%PDF-` header) is rendered at `dpi` by `ocr_base.pdf` (the optional extra `pdf`).

`src` is a path (str / os.PathLike), bytes, a binary file-like object, a PIL
image or a NumPy array (uint8 / uint16 / other ints / bool / float; HxW or
HxWx{1,3,4}, channels in RGB(A) order).

What gets normalised, and why:
- EXIF orientation is applied (phones store portrait photos as landscape pixels
  plus a rotation tag; the detector and the recogniser need upright text).
- Transparent images (LA, RGBA, P with transparency) are composited on WHITE.
  Fully transparent pixels usually store black (0, 0, 0, 0), so simply dropping
  alpha turns the background black and dark ink on a transparent background
  (scans cut out, signatures, screenshots) disappears. Documents are dark ink on
  light paper, which is what CRAFT and TrOCR were trained on.
  (CRAFT's reference `loadImage` drops alpha instead; our detector parity tests
  feed RGB images, so this does not affect them.)
- 16-bit data (I;16*, uint16, and PIL's 32-bit "I" mode, which is how PIL
  represents 16-bit PNG/TIFF samples) is SCALED to 8 bits with round(x / 257)
  (65535 -> 255), not clipped: clipping would turn almost every pixel white.
  16-bit RGB(A) PNGs, which Pillow reduces to their high byte, are decoded by
  `ocr_base.png` for the same rounding.
- Float data ("F" mode, float arrays) is taken as [0, 1] when its maximum is
  <= 1, else as [0, 255]; NaN/inf is an error.

Every failure is an `ImageError` (a ValueError) naming the source: corrupt or
unidentifiable data, truncated files (PIL is never allowed to fill in the
missing part: `ImageFile.LOAD_TRUNCATED_IMAGES` is forced False while we load
and every frame is fully decoded with `load()`), empty files, zero-size images
and images over the pixel limit (decompression bombs: a few-KB PNG can declare
gigapixels; pages are bounded one by one and together, MAX_FILE_PIXELS). Only regular
files are read (a FIFO would block, /dev/zero never end), at most MAX_FILE_BYTES. A PNG
stream that ends cleanly before its last row is truncated too (Pillow would fill the rows
with black: `ocr_base.png`). A missing path raises FileNotFoundError.

References: Pillow `ImageOps.exif_transpose`, `Image.DecompressionBombError`,
`ImageFile.LOAD_TRUNCATED_IMAGES`; CRAFT-pytorch `imgproc.loadImage`.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, ImageSequence

from .files import regular_file_size

# Default pixel limit per page (width * height). 100 MP is an A4 page scanned at
# ~1200 dpi; CRAFT would need >50 GB of activations for a page like that anyway.
MAX_PIXELS = 100_000_000
# Limits per file: all pages together (an 8-page TIFF of 10000^2 bilevel pages is 52 KB on disk and
# 2.4 GB as RGB), the number of pages, and the bytes read (a device such as /dev/zero never ends).
MAX_FILE_PIXELS = 2 * MAX_PIXELS
MAX_PAGES = 10_000
MAX_FILE_BYTES = 1 << 30

# Formats whose frames are pages. Other multi-frame formats (GIF, APNG, WebP
# animations) are animations: we take their first frame, like CRAFT's loadImage.
_PAGED_FORMATS = {"TIFF"}

_pil_lock = threading.Lock()  # guards the temporary changes to PIL's globals


class ImageError(ValueError):
    """An image that cannot be read: corrupt, truncated, empty, zero-size or too large."""


def load_image(src, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """First page of `src` as an upright RGB PIL image (see module docstring)."""
    return load_pages(src, max_pixels=max_pixels, first_only=True)[0]


def load_pages(src, max_pixels: int | None = MAX_PIXELS, first_only: bool = False,
               dpi: float | None = None) -> list[Image.Image]:
    """All pages of `src` (one per frame of a multi-frame TIFF, one per PDF page) as upright RGB PIL images.

    max_pixels: limit on width*height per page (None: no limit; beware memory); all pages of a file
    together may have at most max(MAX_FILE_PIXELS, max_pixels).
    dpi:        resolution PDF pages are rendered at (None: ocr_base.pdf.PDF_DPI).
    """
    name = _describe(src)
    if isinstance(src, np.ndarray):
        return [_check_size(array_to_rgb(src, name), name, max_pixels)]
    data = None if isinstance(src, Image.Image) else _read_bytes(src, name)
    if data is not None and _is_pdf(data):
        pages = _pdf_pages(data, name, dpi, max_pixels)[1]
        return [next(pages)] if first_only else list(pages)
    try:
        with _pil_guard(max_pixels):
            im = src if data is None else Image.open(io.BytesIO(data))
            return _pages_from_pil(im, name, max_pixels, first_only, data)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error,
            zlib.error, MemoryError, OverflowError, ZeroDivisionError, RecursionError) as e:
        # Pillow's decoders signal corrupt/truncated data with all of these.
        raise ImageError(f"{name}: corrupt or truncated image ({type(e).__name__}: {e})") from None


def iter_pages(src, max_pixels: int | None = MAX_PIXELS, dpi: float | None = None) -> tuple[int, Iterator[Image.Image]]:
    """(number of pages, iterator of pages): `load_pages`, with a PDF's pages rendered as they are taken
    (a long PDF never holds more than one page image)."""
    head = b""
    if isinstance(src, (bytes, bytearray, memoryview)):
        head = bytes(src[:1024])
    elif isinstance(src, (str, os.PathLike)) and Path(src).is_file():
        with open(src, "rb") as f:
            head = f.read(1024)
    if _is_pdf(head):
        name = _describe(src)
        return _pdf_pages(_read_bytes(src, name), name, dpi, max_pixels)
    pages = load_pages(src, max_pixels)
    return len(pages), iter(pages)


def _is_pdf(data: bytes) -> bool:
    from .pdf import is_pdf
    return is_pdf(data)


def _pdf_pages(data: bytes, name: str, dpi, max_pixels):
    from .pdf import PDF_DPI, pdf_pages   # pypdfium2 itself is imported only for a PDF
    return pdf_pages(data, name, PDF_DPI if dpi is None else dpi, max_pixels)


def _describe(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    if isinstance(src, Image.Image):
        return f"<PIL image {src.mode} {src.size[0]}x{src.size[1]}>"
    return str(getattr(src, "name", None) or f"<{type(src).__name__}>")


def _read_bytes(src, name: str) -> bytes:
    if isinstance(src, (str, os.PathLike)):
        size = regular_file_size(src, ImageError, name)
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{name}: file of {size:,} bytes is over the limit of {MAX_FILE_BYTES:,}")
        try:
            with open(src, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif hasattr(src, "read"):
        data = src.read(MAX_FILE_BYTES + 1)
        if isinstance(data, str):
            raise ImageError(f"{name}: file object opened in text mode; open it with 'rb'")
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{name}: file object's read() gave {type(data).__name__}, not bytes")
    else:
        raise ImageError(f"{name}: unsupported image source type {type(src).__name__} "
                         "(expected a path, bytes, a binary file object, a PIL image or an ndarray)")
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: over the limit of {MAX_FILE_BYTES:,} bytes")
    return bytes(data)


@contextlib.contextmanager
def _pil_guard(max_pixels):
    """Load strictly: no silent completion of truncated files, our own pixel limit.

    PIL's bomb check (MAX_IMAGE_PIXELS) is a process-wide global; we raise it to
    at least our limit for the duration (our own check in `_check_size` is the
    one that decides) and turn its warning into silence (we raise instead).
    """
    with _pil_lock:
        old_trunc, old_max = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        if max_pixels is None:
            Image.MAX_IMAGE_PIXELS = None
        elif old_max is not None and old_max < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = old_trunc, old_max


def _check_size(im: Image.Image, name: str, max_pixels) -> Image.Image:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: zero-size image ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(f"{name}: image too large ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,}; "
                         "possible decompression bomb; raise max_pixels to allow it)")
    return im


def _pages_from_pil(im: Image.Image, name, max_pixels, first_only, data=None) -> list[Image.Image]:
    paged = (im.format or "") in _PAGED_FORMATS and not first_only
    frames = ImageSequence.Iterator(im) if paged else [im]
    pages, total = [], 0
    file_limit = None if max_pixels is None else max(MAX_FILE_PIXELS, max_pixels)
    for i, frame in enumerate(frames):
        if i == MAX_PAGES:
            raise ImageError(f"{name}: more than {MAX_PAGES:,} pages")
        fname = f"{name} (page {i + 1})" if paged and (i or _has_second_frame(im)) else name
        _check_size(frame, fname, max_pixels)  # header size, before decoding any pixels
        total += frame.size[0] * frame.size[1]
        if file_limit is not None and total > file_limit:
            raise ImageError(f"{name}: pages 1-{i + 1} have {total:,} pixels together, over the limit of "
                             f"{file_limit:,} per file")
        if frame.format == "TIFF":
            _check_strips(frame, fname)
        frame.load()  # decode now: truncation/corruption errors surface here, not later
        if frame.format == "PNG" and data is not None and not getattr(frame, "is_animated", False):
            frame = _png_checked(frame, data, fname)
        pages.append(_check_size(to_rgb(_exif_upright(frame, fname), fname), fname, max_pixels))
    if not pages:
        raise ImageError(f"{name}: image has no frames")
    return pages


def _check_strips(frame, name) -> None:
    """A TIFF whose strips (or tiles) do not cover the page: Pillow leaves the rest black (a 2 KB file
    declaring 17 x 4,325,389 pixels and one 13-row strip decoded as 73 MP)."""
    w, h = frame.size
    extents = {t[1] for t in frame.tile if t[1] is not None}
    covered = sum(max(0, min(x1, w) - max(x0, 0)) * max(0, min(y1, h) - max(y0, 0)) for x0, y0, x1, y1 in extents)
    if frame.tile and covered < w * h:
        raise ImageError(f"{name}: truncated TIFF: its strips cover {covered:,} of the {w * h:,} pixels the header "
                         "declares")


def _png_checked(frame, data, name):
    """Rows missing from a cleanly ended stream are an error; 16-bit RGB(A) keeps its low byte
    (`ocr_base.png`: Pillow fills missing rows with black and reads 16-bit colour by its high byte)."""
    from . import png

    png.check_rows(data, name, ImageError)
    samples = png.rgb16(data, name, ImageError)
    if samples is None:
        return frame
    out = array_to_rgb(samples, name, sixteen_bit=True)
    out.info["exif"] = frame.getexif().tobytes()  # keep the orientation for _exif_upright
    return out


def _has_second_frame(im) -> bool:
    """Whether a multi-frame format has a frame after the current one (without counting them all)."""
    here = im.tell()
    try:
        im.seek(here + 1)
    except EOFError:
        return False
    im.seek(here)
    return True


def _exif_upright(im: Image.Image, name: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # malformed EXIF must not lose a readable image
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({e})", stacklevel=3)
        return im


def to_rgb(im: Image.Image, name: str = "image") -> Image.Image:
    """Any PIL mode -> 8-bit RGB (transparency composited on white, 16-bit scaled)."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        return to_rgb(im, name)
    if mode in ("1", "L"):
        return im.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    if mode in ("CMYK", "YCbCr", "HSV", "RGBX"):
        return im.convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return array_to_rgb(np.asarray(im), name, sixteen_bit=mode != "F")
    try:  # LAB and anything newer: let Pillow try
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"{name}: unsupported image mode {mode!r} ({e})") from None


def array_to_rgb(a: np.ndarray, name: str = "array", sixteen_bit: bool | None = None) -> Image.Image:
    """(H, W) or (H, W, 1|3|4) array -> RGB PIL image.

    uint8 as is; uint16 (and PIL's int "I" data) scaled by 1/257; bool -> 0/255;
    float in [0, 1] (max <= 1) or [0, 255]; RGBA composited on white.
    """
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(f"{name}: unsupported array shape {a.shape} (expected HxW or HxWx1/3/4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{name}: zero-size image ({a.shape[1]}x{a.shape[0]})")
    a = _to_uint8(a, name, sixteen_bit)
    if a.ndim == 2:
        return Image.fromarray(a, "L").convert("RGB")
    if a.shape[2] == 4:
        return to_rgb(Image.fromarray(a, "RGBA"), name)
    return Image.fromarray(a, "RGB")


def _to_uint8(a: np.ndarray, name: str, sixteen_bit: bool | None) -> np.ndarray:
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ImageError(f"{name}: float image contains NaN or infinity")
        scale = 255.0 if a.max() <= 1.0 else 1.0
        return np.rint(np.clip(a.astype(np.float64) * scale, 0, 255)).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if sixteen_bit is None:  # plain integer arrays: 8-bit data stays, wider data is 16-bit
            sixteen_bit = a.dtype.itemsize >= 2 and (a.dtype == np.uint16 or a.max() > 255)
        if sixteen_bit:
            # round(x * 255 / 65535) == round(x / 257): 0 -> 0, 65535 -> 255, linear in between
            x = np.clip(a.astype(np.int64), 0, 65535)
            return ((x * 2 + 257) // 514).astype(np.uint8)
        return np.clip(a, 0, 255).astype(np.uint8)
    raise ImageError(f"{name}: unsupported array dtype {a.dtype}")
