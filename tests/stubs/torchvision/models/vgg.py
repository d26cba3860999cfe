"""`torchvision.models.vgg.model_urls`, which craft-text-detector rewrites at import (never downloaded)."""
model_urls = {"vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"}
