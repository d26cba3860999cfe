"""Load EasyOCR's reference modules (craft_utils, utils, imgproc, craft) without running
`easyocr/__init__.py`, which imports the whole Reader stack (torchvision included).

The modules are loaded from the installed easyocr package directory as members of a stand-in
package, so their relative imports still work. Returns None when easyocr or one of the
module's own dependencies (cv2, scipy, torch, ...) is missing, so tests can skip.
"""
import importlib
import importlib.util
import sys
import types

_PKG = "_easyocr_ref_pkg"


def _package():
    if _PKG in sys.modules:
        return sys.modules[_PKG]
    spec = importlib.util.find_spec("easyocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = types.ModuleType(_PKG)
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules[_PKG] = pkg
    return pkg


def load(name):
    """Import easyocr.<name> (e.g. "craft_utils") without easyocr/__init__; None if unavailable."""
    if _package() is None:
        return None
    try:
        return importlib.import_module(f"{_PKG}.{name}")
    except ImportError:
        return None
