"""The reference CRAFT code, imported in the test process: EasyOCR's own modules and craft-text-detector's RefineNet.

`import easyocr` runs `easyocr/__init__.py`, which imports the recogniser and torchvision's
transforms; we need none of that. So the modules are loaded from EasyOCR's folder under a private
package name (`_ref_easyocr.craft`, `_ref_easyocr.craft_utils`, `_ref_easyocr.imgproc`), and our
torchvision stand-in (`tests/stubs/torchvision`) is visible in `sys.modules` only during those
imports: afterwards no other test (nor transformers' "is torchvision available" probe) sees it.
EasyOCR 1.7.2 ships no RefineNet; craft-text-detector 0.4.3 (`pip install --no-deps
craft-text-detector==0.4.3`: its declared dependencies would pull old OpenCV and torchvision) has
clovaai's `refinenet.py`, loaded the same way.

Usage: `ref = reference()` -> namespace with CRAFT, RefineNet, craft_utils, imgproc, torch, cv2.
Tests call `pytest.importorskip`-style `require_reference()` so a missing reference stack skips.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

STUBS = Path(__file__).parent / "stubs"


@contextlib.contextmanager
def _stub_modules(names):
    """Temporarily import our stand-ins (e.g. torchvision) into sys.modules, removing them afterwards."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in names}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(STUBS))
    try:
        for n in names:
            importlib.import_module(n)
        yield
    finally:
        sys.path.remove(str(STUBS))
        for k in [k for k in sys.modules if k.split(".")[0] in names]:
            del sys.modules[k]
        sys.modules.update(saved)


def _private_package(alias: str, real: str) -> None:
    """Register `alias` as a package whose submodules are the files of the installed package `real`."""
    spec = importlib.util.find_spec(real)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{real} is not installed")
    pkg = types.ModuleType(alias)
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules[alias] = pkg


@functools.lru_cache(maxsize=None)
def reference() -> types.SimpleNamespace:
    import cv2
    import torch

    with _stub_modules(["torchvision"]):
        _private_package("_ref_easyocr", "easyocr")
        craft = importlib.import_module("_ref_easyocr.craft")
        craft_utils = importlib.import_module("_ref_easyocr.craft_utils")
        imgproc = importlib.import_module("_ref_easyocr.imgproc")
        # craft-text-detector imports itself by absolute name: give it a bare package while importing.
        # It is optional (installed with --no-deps): without it only the RefineNet tests skip.
        saved = sys.modules.pop("craft_text_detector", None)
        try:
            _private_package("craft_text_detector", "craft_text_detector")
            RefineNet = importlib.import_module("craft_text_detector.models.refinenet").RefineNet
        except ImportError:
            RefineNet = None
        finally:
            for k in [k for k in sys.modules if k.split(".")[0] == "craft_text_detector"]:
                del sys.modules[k]
            if saved is not None:
                sys.modules["craft_text_detector"] = saved
    return types.SimpleNamespace(CRAFT=craft.CRAFT, RefineNet=RefineNet, craft_utils=craft_utils,
                                 imgproc=imgproc, torch=torch, cv2=cv2)


def require_reference(refiner: bool = False) -> types.SimpleNamespace:
    """`reference()`, or skip the test when the reference stack (torch, cv2, easyocr) is absent;
    with refiner=True also when craft-text-detector (the reference RefineNet) is absent."""
    import pytest

    try:
        ref = reference()
    except ImportError as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"reference CRAFT stack not available: {e}")
    if refiner and ref.RefineNet is None:
        pytest.skip("craft-text-detector (reference RefineNet) not installed: pip install --no-deps craft-text-detector==0.4.3")
    return ref


def real_reference_craft(ref):
    """EasyOCR's CRAFT network (from `ref`) with the real craft_mlt_25k weights, in eval mode.
    The checkpoint was saved from nn.DataParallel: its keys carry a `module.` prefix."""
    from detector_np.weights import default_craft_path

    net = ref.CRAFT()
    sd = ref.torch.load(default_craft_path(), map_location="cpu", weights_only=True)
    net.load_state_dict({k[len("module."):]: v for k, v in sd.items()})
    return net.eval()


# ------------------------------------------------------------------------------------------------
# Test images: rendered text (always available) and the real photos of ../shared/images (optional)

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
DATA = Path(__file__).parent / "data"


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    return ImageFont.load_default(size)


def rendered_text_image(lines, font_size=28, angle=0.0, size=None, seed=0, background=(242, 238, 228)):
    """(H, W, 3) uint8 RGB: `lines` of dark text on light paper with mild noise, rotated by `angle` degrees."""
    import numpy as np
    from PIL import Image, ImageDraw

    font = _font(font_size)
    line_h = int(font_size * 1.6)
    w = size[0] if size else max(int(font.getlength(t)) for t in lines) + 2 * font_size
    h = size[1] if size else line_h * len(lines) + 2 * font_size
    img = Image.new("RGB", (w, h), background)
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((font_size, font_size + i * line_h), t, fill=(25, 25, 60), font=font)
    if angle:
        img = img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=background)
    a = np.asarray(img).astype(np.int16)
    a += np.random.default_rng(seed).integers(-6, 7, a.shape, dtype=np.int16)   # paper grain
    return np.clip(a, 0, 255).astype(np.uint8)


def real_image(name):
    """An RGB array of ../shared/images/NAME, or skip the test when that folder is absent (a user's clone)."""
    import numpy as np
    import pytest
    from PIL import Image

    path = SHARED_IMAGES / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return np.asarray(Image.open(path).convert("RGB"))
