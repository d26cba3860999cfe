"""ocr_base.image_io: every source type, every PIL mode, EXIF, multi-page TIFF, and every bad input."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from ocr_base.image_io import ImageError, MAX_PIXELS, array_to_rgb, load_image, load_pages


def _png_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "PNG", **kw)
    return b.getvalue()


def _rgb_test_image(w=24, h=16):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------- sources
def test_all_source_types_give_the_same_pixels(tmp_path):
    im = _rgb_test_image()
    data = _png_bytes(im)
    p = tmp_path / "a.png"
    p.write_bytes(data)
    want = np.asarray(im)
    for src in (str(p), p, data, bytearray(data), memoryview(data), io.BytesIO(data), open(p, "rb"), im, want):
        out = load_image(src)
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), want)


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_directory_text_file_object_and_unknown_type(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "t.png").write_bytes(_png_bytes(_rgb_test_image()))
    with open(tmp_path / "t.png", encoding="latin-1") as f, pytest.raises(ImageError, match="text mode"):
        load_image(f)
    with pytest.raises(ImageError, match="unsupported image source"):
        load_image(12345)


# ---------------------------------------------------------------- modes
def test_mode_1_L_P_CMYK():
    g = np.array([[0, 255], [128, 7]], np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(Image.fromarray(g, "L")))[..., 1], g)
    b = Image.fromarray(g > 100).convert("1")
    np.testing.assert_array_equal(np.asarray(load_image(b))[..., 0], np.where(g > 100, 255, 0))
    p = Image.fromarray(g, "L").convert("RGB").quantize(4)
    np.testing.assert_array_equal(np.asarray(load_image(p)), np.asarray(p.convert("RGB")))
    c = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure cyan-free red: C=0 M=Y=255 K=0
    np.testing.assert_array_equal(np.asarray(load_image(c))[0, 0], [255, 0, 0])
    # round trip through files too
    for im in (b, p, c):
        buf = io.BytesIO()
        im.save(buf, "TIFF")
        assert load_image(buf.getvalue()).mode == "RGB"


def test_transparency_is_composited_on_white():
    rgba = np.zeros((2, 3, 4), np.uint8)          # fully transparent black ...
    rgba[0, 0] = (0, 0, 0, 255)                   # ... except one opaque black pixel
    rgba[0, 1] = (0, 0, 0, 128)                   # and one half-transparent black pixel
    out = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert out[1, 2].tolist() == [255, 255, 255]  # background: white, not black
    assert out[0, 0].tolist() == [0, 0, 0]
    assert 125 <= out[0, 1, 0] <= 129             # 50% black over white: mid-grey
    np.testing.assert_array_equal(out, np.asarray(load_image(rgba)))  # same through the ndarray path
    np.testing.assert_array_equal(out, np.asarray(load_image(_png_bytes(Image.fromarray(rgba, "RGBA")))))
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    np.testing.assert_array_equal(np.asarray(load_image(la)), out)
    # palette image with a transparent index
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    out = np.asarray(load_image(_png_bytes(p, transparency=0)))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]


def test_16_bit_is_scaled_not_clipped():
    a = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    want = [0, 0, 1, 1, 128, 255]  # round(x / 257)
    for src in (a, Image.fromarray(a), _png_bytes(Image.fromarray(a)),
                Image.fromarray(a.astype(np.int32))):
        assert np.asarray(load_image(src))[0, :, 0].tolist() == want, src
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "TIFF")
    assert np.asarray(load_image(buf.getvalue()))[0, :, 2].tolist() == want


def test_float_bool_int_arrays_and_F_mode():
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert np.asarray(load_image(f))[0, :, 0].tolist() == [0, 128, 255]
    assert np.asarray(load_image(Image.fromarray(f, "F")))[0, :, 0].tolist() == [0, 128, 255]
    assert np.asarray(load_image(f * 200))[0, :, 0].tolist() == [0, 100, 200]
    assert np.asarray(load_image(np.array([[True, False]])))[0, :, 0].tolist() == [255, 0]
    assert np.asarray(load_image(np.array([[3, 250]], np.int64)))[0, :, 0].tolist() == [3, 250]
    assert np.asarray(load_image(np.array([[3, 65535]], np.int32)))[0, :, 0].tolist() == [0, 255]
    one = np.full((2, 2, 1), 9, np.uint8)
    assert np.asarray(load_image(one)).tolist() == [[[9] * 3] * 2] * 2


def test_bad_arrays():
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4,), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.array([[0.1, np.nan]]))
    with pytest.raises(ImageError, match="zero-size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        array_to_rgb(np.zeros((2, 2), np.complex64))


# ---------------------------------------------------------------- EXIF orientation
@pytest.mark.parametrize("orientation, shape, marker", [
    (1, (10, 20), (0, 0)),     # as stored
    (3, (10, 20), (9, 19)),    # rotated 180
    (6, (20, 10), (0, 9)),     # shown rotated 90 clockwise: stored top-left -> top-right
    (8, (20, 10), (19, 0)),    # shown rotated 90 counter-clockwise: stored top-left -> bottom-left
])
def test_exif_orientation_applied(orientation, shape, marker):
    a = np.full((10, 20, 3), 255, np.uint8)
    a[0, 0] = (255, 0, 0)  # red marker at the stored top-left corner
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = np.asarray(load_image(_png_bytes(im, exif=exif.tobytes())))
    assert out.shape[:2] == shape
    assert out[marker].tolist() == [255, 0, 0]
    assert (out[..., 1] == 0).sum() == 1


# ---------------------------------------------------------------- multi-page
def test_multi_frame_tiff_gives_one_page_per_frame(tmp_path):
    frames = [Image.new("RGB", (30 + 10 * i, 20), (50 * i,) * 3) for i in range(3)]
    frames[1] = frames[1].convert("L")  # pages may differ in mode and size
    p = tmp_path / "doc.tif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    pages = load_pages(p)
    assert [pg.size for pg in pages] == [(30, 20), (40, 20), (50, 20)]
    assert all(pg.mode == "RGB" for pg in pages)
    assert [np.asarray(pg)[0, 0, 0] for pg in pages] == [0, 50, 100]
    assert load_image(p).size == (30, 20)
    assert len(load_pages(Image.open(p))) == 3  # an open multi-frame PIL image too


def test_animated_gif_is_one_page():
    frames = [Image.new("P", (8, 8), i) for i in range(3)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:])
    assert len(load_pages(b.getvalue())) == 1


# ---------------------------------------------------------------- corrupt, truncated, empty, zero-size
def test_empty_file_and_bytes(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"e\.png.*empty"):
        load_image(tmp_path / "e.png")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(io.BytesIO())


def test_garbage_is_a_clear_error(tmp_path):
    p = tmp_path / "garbage.jpg"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(p)


def test_corrupt_compressed_data():
    data = bytearray(_png_bytes(_rgb_test_image(64, 64)))
    i = data.index(b"IDAT") + 40
    data[i:i + 40] = b"\x00" * 40  # wreck the zlib stream (CRC now wrong as well)
    with pytest.raises(ImageError, match="corrupt"):
        load_image(bytes(data))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_truncated_file_is_an_error_not_a_partial_image(fmt):
    b = io.BytesIO()
    _rgb_test_image(200, 150).save(b, fmt)
    data = b.getvalue()
    with pytest.raises(ImageError):
        load_image(data[: len(data) * 2 // 3])


def test_truncated_stays_an_error_even_if_someone_enabled_truncated_loading():
    b = io.BytesIO()
    _rgb_test_image(200, 150).save(b, "JPEG")
    data = b.getvalue()
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageError, match="truncated"):
            load_image(data[: len(data) // 2])
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # global restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_zero_size_pil_image():
    with pytest.raises(ImageError, match="zero-size"):
        load_image(Image.new("RGB", (0, 7)))


# ---------------------------------------------------------------- decompression bombs
def _png_claiming(w, h):
    """A valid tiny PNG whose header claims w x h pixels (IHDR patched, CRC fixed)."""
    data = bytearray(_png_bytes(Image.new("1", (8, 8))))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_bomb_over_our_limit():
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_claiming(20_000, 20_000))   # 400 MP > 100 MP, PIL itself would only warn


def test_bomb_over_pils_own_limit():
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_claiming(100_000, 100_000))  # 10 GP: PIL's own DecompressionBombError fires first


def test_pixel_limit_is_configurable():
    im = _rgb_test_image(30, 20)
    with pytest.raises(ImageError, match="600 pixels > limit 599"):
        load_image(_png_bytes(im), max_pixels=599)
    with pytest.raises(ImageError, match="too large"):
        load_image(np.asarray(im), max_pixels=599)
    assert load_image(_png_bytes(im), max_pixels=600).size == (30, 20)
    assert MAX_PIXELS == 100_000_000
