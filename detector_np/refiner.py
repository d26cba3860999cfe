"""The CRAFT LinkRefiner (RefineNet) as a plain function over a params dict.

Reference: clovaai/CRAFT-pytorch `refinenet.py` (also craft-text-detector `models/refinenet.py`).
It turns CRAFT's word-level link map into a line-level one (trained on CTW1500); `test.py` then
uses its output in place of the link score. Params keyed like the checkpoint without `module.`,
BatchNorm folded into the convolutions: `last_conv.{0,3,6}`, `aspp{1..4}.{0,3,6}`.
"""
from __future__ import annotations

import numpy as np

from .craft import conv

ASPP_DILATIONS = (6, 12, 18, 24)   # aspp1..aspp4: the 3x3 conv's dilation (and padding)


def refiner_forward(params, y, feature):
    """y (h, w, 2) CRAFT scores, feature (h, w, 32) -> refined link map (h, w, 1).

    Input = concat[y, feature] (34 channels); three 3x3 conv+BN+ReLU, then four atrous branches
    (3x3 dilated conv+BN+ReLU, 1x1 conv+BN+ReLU, 1x1 conv -> 1 channel) whose outputs are summed.
    """
    if y.ndim != 3 or y.shape[2] != 2 or feature.shape != y.shape[:2] + (32,):
        raise ValueError(f"refiner_forward expects y (h, w, 2) and feature (h, w, 32), got {y.shape} and {feature.shape}")
    r = np.concatenate([y, feature], axis=2).astype(np.float32)   # (h, w, 34)
    r = conv(params, "last_conv.0", r, relu=True)                  # (h, w, 64)
    r = conv(params, "last_conv.3", r, relu=True)                  # (h, w, 64)
    r = conv(params, "last_conv.6", r, relu=True)                  # (h, w, 64)
    out = None
    for i, d in enumerate(ASPP_DILATIONS, start=1):
        a = conv(params, f"aspp{i}.0", r, relu=True, dilation=d)   # (h, w, 128)
        a = conv(params, f"aspp{i}.3", a, relu=True)               # (h, w, 128)
        a = conv(params, f"aspp{i}.6", a)                          # (h, w, 1)
        out = a if out is None else out + a                        # same left-to-right sum as the reference
    return out
