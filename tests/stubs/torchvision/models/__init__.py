"""`torchvision.models.vgg16_bn`: the cfg "D" VGG with BatchNorm, features only (no pretrained weights)."""
import enum

import torch.nn as nn

from . import vgg  # noqa: F401

_CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16_BN_Weights(enum.Enum):
    IMAGENET1K_V1 = "IMAGENET1K_V1"
    DEFAULT = "IMAGENET1K_V1"


class _VGG(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in _CFG_D:   # torchvision `make_layers(cfg, batch_norm=True)`: conv3x3 -> BN -> ReLU(inplace)
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)


def vgg16_bn(pretrained=False, weights=None, **kwargs):
    if pretrained or weights is not None:
        raise RuntimeError("the torchvision stand-in has no pretrained weights (tests load CRAFT's own)")
    return _VGG()
