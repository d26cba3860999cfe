"""Stand-in for torchvision, for the parity tests only (never installed, never used at run time).

PyPI's torchvision wheels do not load beside the CPU torch we pin, and the reference CRAFT code
(EasyOCR `easyocr/model/modules.py`, craft-text-detector `models/basenet/vgg16_bn.py`) only needs
`torchvision.models.vgg16_bn(...).features`: the VGG16-BN layer list, which it then fills with the
checkpoint's weights. `tests/_reference.py` puts this package in `sys.modules` only while it
imports the reference modules, so other tests (and transformers) never see it.
"""
__version__ = "0.29.0"  # >= 0.13: EasyOCR takes the `weights=` branch

from . import models  # noqa: E402,F401
