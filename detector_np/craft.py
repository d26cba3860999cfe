"""The CRAFT network (VGG16-BN U-Net) as plain functions over a params dict.

References: clovaai/CRAFT-pytorch `craft.py` and `basenet/vgg16_bn.py` (identical to EasyOCR
`easyocr/craft.py` and `easyocr/model/modules.py`). Params are keyed by the checkpoint's own names
without the `module.` prefix, e.g. `basenet.slice1.0.weight`, with every BatchNorm already folded
into the convolution before it (see `detector_np.weights`), so the BN keys are gone.

Arrays are one image, channels last: x (H, W, 3) with H, W multiples of 32 (the padded canvas).

The in-place ReLU quirk: torchvision's VGG uses `ReLU(inplace=True)`, and the reference splits the
layer list so that slices 2, 3 and 4 *begin* with such a ReLU. Running a slice therefore rectifies,
in place, the tensor the previous slice returned and that the U-Net later uses as a skip input.
So the skips "relu2_2", "relu3_2", "relu4_3" are post-ReLU, while "relu5_3" (followed by slice5's
non-in-place MaxPool) is the raw BN output, and slice5's MaxPool sees it pre-ReLU too. Since nothing
else reads those three tensors before the ReLU, we apply it right in the conv that produces them.
"""
from __future__ import annotations

import numpy as np

from .layers import conv1x1_concat, conv2d, maxpool2x2, maxpool3x3_same, upsample_bilinear


def conv(params, name, x, relu=False, dilation=1):
    """The conv stored under `name` (`name.weight` (Cout, Cin, k, k), `name.bias`); (H, W, Cin) -> (H, W, Cout)."""
    return conv2d(x, params[name + ".weight"], params[name + ".bias"], dilation=dilation, relu=relu)


def vgg16_bn_sources(params, x):
    """Backbone. x (H, W, 3) -> (fc7, relu5_3, relu4_3, relu3_2, relu2_2).

    Shapes: fc7 (H/16, W/16, 1024), relu5_3 (H/16, W/16, 512), relu4_3 (H/8, W/8, 512),
    relu3_2 (H/4, W/4, 256), relu2_2 (H/2, W/2, 128). Names follow the reference's namedtuple; they
    really are the outputs of conv5_2, conv4_2, conv3_2, conv2_2 (+BN), see the module docstring.
    """
    p = "basenet."
    # slice1: conv1_1, conv1_2, pool, conv2_1, conv2_2 (no ReLU at the end)
    h = conv(params, p + "slice1.0", x, relu=True)                 # (H, W, 64)
    h = conv(params, p + "slice1.3", h, relu=True)                 # (H, W, 64)
    h = maxpool2x2(h)                                              # (H/2, W/2, 64)
    h = conv(params, p + "slice1.7", h, relu=True)                 # (H/2, W/2, 128)
    relu2_2 = h = conv(params, p + "slice1.10", h, relu=True)      # (H/2, W/2, 128) + slice2's in-place ReLU
    # slice2: (ReLU, applied above), pool, conv3_1, conv3_2
    h = maxpool2x2(h)                                              # (H/4, W/4, 128)
    h = conv(params, p + "slice2.14", h, relu=True)                # (H/4, W/4, 256)
    relu3_2 = h = conv(params, p + "slice2.17", h, relu=True)      # (H/4, W/4, 256) + slice3's in-place ReLU
    # slice3: (ReLU), conv3_3, pool, conv4_1, conv4_2
    h = conv(params, p + "slice3.20", h, relu=True)                # (H/4, W/4, 256)
    h = maxpool2x2(h)                                              # (H/8, W/8, 256)
    h = conv(params, p + "slice3.24", h, relu=True)                # (H/8, W/8, 512)
    relu4_3 = h = conv(params, p + "slice3.27", h, relu=True)      # (H/8, W/8, 512) + slice4's in-place ReLU
    # slice4: (ReLU), conv4_3, pool, conv5_1, conv5_2
    h = conv(params, p + "slice4.30", h, relu=True)                # (H/8, W/8, 512)
    h = maxpool2x2(h)                                              # (H/16, W/16, 512)
    h = conv(params, p + "slice4.34", h, relu=True)                # (H/16, W/16, 512)
    relu5_3 = h = conv(params, p + "slice4.37", h)                 # (H/16, W/16, 512) pre-ReLU: nothing rectifies it
    # slice5 ("fc6/fc7"): MaxPool(3, 1, 1), dilated conv, 1x1 conv; no ReLU anywhere
    h = maxpool3x3_same(h)                                         # (H/16, W/16, 512)
    h = conv(params, p + "slice5.1", h, dilation=6)                # (H/16, W/16, 1024)
    fc7 = conv(params, p + "slice5.2", h)                          # (H/16, W/16, 1024)
    return fc7, relu5_3, relu4_3, relu3_2, relu2_2


def double_conv(params, name, *xs):
    """1x1 conv + BN + ReLU on the channel concatenation of xs, then 3x3 conv + BN + ReLU:
    (h, w, in) and (h, w, mid) -> (h, w, out)."""
    w, b = params[name + ".conv.0.weight"], params[name + ".conv.0.bias"]
    x = conv1x1_concat(list(xs), w, b, relu=True)                  # (h, w, mid); no concat copy needed
    return conv(params, name + ".conv.3", x, relu=True)            # (h, w, out)


def craft_forward(params, x):
    """CRAFT. x (H, W, 3) normalised canvas -> (y (H/2, W/2, 2), feature (H/2, W/2, 32)).

    y[..., 0] is the region ("text") score, y[..., 1] the affinity ("link") score; raw regression
    values, no sigmoid. `feature` is the last U-Net map, the RefineNet's second input.
    """
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] % 32 or x.shape[1] % 32:
        raise ValueError(f"craft_forward expects an (H, W, 3) canvas with H, W multiples of 32, got {x.shape}")
    fc7, relu5_3, relu4_3, relu3_2, relu2_2 = vgg16_bn_sources(params, np.asarray(x, np.float32))

    # U-Net: double_conv on [upsampled, skip] (concatenated on channels), upsample x2 to the next skip's size
    y = double_conv(params, "upconv1", fc7, relu5_3)                                   # (H/16, W/16, 256)
    del fc7, relu5_3
    y = upsample_bilinear(y, relu4_3.shape[:2])                                        # (H/8, W/8, 256)
    y = double_conv(params, "upconv2", y, relu4_3)                                     # (H/8, W/8, 128)
    del relu4_3
    y = upsample_bilinear(y, relu3_2.shape[:2])                                        # (H/4, W/4, 128)
    y = double_conv(params, "upconv3", y, relu3_2)                                     # (H/4, W/4, 64)
    del relu3_2
    y = upsample_bilinear(y, relu2_2.shape[:2])                                        # (H/2, W/2, 64)
    feature = double_conv(params, "upconv4", y, relu2_2)                               # (H/2, W/2, 32)
    del y, relu2_2

    # conv_cls head
    y = conv(params, "conv_cls.0", feature, relu=True)             # (H/2, W/2, 32)
    y = conv(params, "conv_cls.2", y, relu=True)                   # (H/2, W/2, 32)
    y = conv(params, "conv_cls.4", y, relu=True)                   # (H/2, W/2, 16)
    y = conv(params, "conv_cls.6", y, relu=True)                   # (H/2, W/2, 16)
    y = conv(params, "conv_cls.8", y)                              # (H/2, W/2, 2)
    return y, feature
