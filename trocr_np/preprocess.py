"""Image preprocessing, identical to the HF ViT/DeiT image processor (PIL backend).

    any PIL image / uint8 array -> RGB (transparency composited onto white)
      -> PIL resize to (H, W) with the configured filter [-> center crop]
      -> x * rescale_factor (float64, then float32) -> (x - mean) / std (float32) -> (C, H, W)

transformers 5.24 without torchvision uses `ViTImageProcessorPil` / `DeiTImageProcessorPil`;
its output with `do_convert_rgb=True` is bit-identical to this recipe. (Without
`do_convert_rgb` HF raises on non-RGB input; we always convert, the way HF does when asked.)

References: transformers 5.24 `image_processing_backends.py` (PilBackend),
`image_transforms.py` (convert_to_rgb, resize, rescale, normalize, center_crop).
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(image) -> Image.Image:
    """PIL image (any mode) or uint8 array (H, W) / (H, W, 1|3|4) -> RGB PIL image, as HF's convert_to_rgb."""
    if isinstance(image, Image.Image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            # composite onto opaque white, via PIL (RGBA/LA/PA/P with a transparent index, ...)
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image array must be (H, W) or (H, W, 1|3|4), got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        # HF blends arrays in float64 and rounds half to even (np.round), unlike PIL's composite
        alpha = a[..., 3:4] / 255
        a = np.round(alpha * a[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a), "RGB")


def _resize_size(w: int, h: int, size: dict) -> tuple[int, int]:
    """Target (H, W) for a {height, width} or {shortest_edge} size dict (HF get_resize_output_image_size)."""
    if "height" in size:
        return size["height"], size["width"]
    s = size["shortest_edge"]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _center_crop(x: np.ndarray, ch: int, cw: int) -> np.ndarray:
    """(C, H, W) -> (C, ch, cw), zero-padding first when the image is smaller (HF center_crop)."""
    _, h, w = x.shape
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
        return x[:, top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    pt, pl = -(-(nh - h) // 2), -(-(nw - w) // 2)  # ceil
    big = np.zeros((x.shape[0], nh, nw), x.dtype)
    big[:, pt:pt + h, pl:pl + w] = x
    top, left = top + pt, left + pl
    return big[:, max(top, 0):min(top + ch, nh), max(left, 0):min(left + cw, nw)]


def preprocess_one(image, cfg) -> np.ndarray:
    """One image -> (3, H, W) float32."""
    p = cfg.preprocessor
    im = to_rgb(image)
    if p.do_resize:
        h, w = _resize_size(im.width, im.height, p.size)
        im = im.resize((w, h), resample=p.resample)
    x = np.asarray(im).transpose(2, 0, 1)                        # (3, H, W) uint8
    if p.do_center_crop:
        x = _center_crop(x, *p.crop_size)
    if p.do_rescale:
        x = (x.astype(np.float64) * p.rescale_factor).astype(np.float32)
    else:
        x = x.astype(np.float32)
    if p.do_normalize:
        mean = np.asarray(p.image_mean, np.float32)[:, None, None]
        std = np.asarray(p.image_std, np.float32)[:, None, None]
        x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess(images, cfg) -> np.ndarray:
    """List of PIL images or uint8 arrays (any mode) -> pixel_values (B, 3, H, W) float32."""
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    out = [preprocess_one(im, cfg) for im in images]
    if not out:
        raise ValueError("no images given")
    shapes = {x.shape for x in out}
    if len(shapes) > 1:
        raise ValueError(f"preprocessed images differ in size {sorted(shapes)}; "
                         "use a fixed {height, width} size or a center crop to batch them")
    return np.stack(out)
