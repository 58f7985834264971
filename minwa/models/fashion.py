"""``fashion-net``: the default recipe's network, a small VGG-style net built for speed on a 2-core CPU.

Shape follows airbench (conv → pool → BN → ReLU, conv → BN → ReLU per stage; global max-pool; one
linear layer), scaled to 28×28 grayscale inputs. Widths are a knob; the default (24, 48, 96, 192) was
chosen by measuring time to 94% test accuracy on Fashion-MNIST on the 2-core machine (docs/BENCHMARKS.md).
Any input size works (global pooling), so it also serves multi-scale tests and upsampled training.

Default widths (16, 32, 64, 128), 0.42M weights, ~18 MFLOP per 28×28 image: on the 2-core CPU with bf16
autocast it trains at ~4,500 images/s, so 14 epochs take ~200 s and reach ~94.5% test accuracy
(docs/BENCHMARKS.md). The wider (24, 48, 96, 192) net (``fashion-net-wide``) reaches the same accuracy in 10
epochs but at half the speed, so it loses on time to accuracy.

``photo-net`` is the same stages behind a 4×4/4 patchify stem, for colour photographs at 112-224 px on a
CPU (``minwa bench highres``): the stride-1 stem costs ~1 GMAC per 224 px image, the patchify stem leaves
~0.15 GMAC, so it trains ~4× faster than fashion-net at 224 px (docs/BENCHMARKS.md, "High resolution"). Global max
pooling keeps a small object's strongest response wherever it lies in the picture.
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.models.base import ModelBase
from minwa.models.layers import run_stages
from minwa.models.registry import register_variant


def _conv_bn(ci, co, device=None, dtype=None):
    return [nn.Conv2d(ci, co, 3, padding=1, bias=False, device=device, dtype=dtype),
            nn.BatchNorm2d(co, device=device, dtype=dtype), nn.ReLU(inplace=True)]


class Stage(nn.Sequential):
    """conv (ci→co) → 2×2 max-pool → BN → ReLU → conv (co→co) → BN → ReLU."""

    def __init__(self, ci, co, device=None, dtype=None):
        conv1, bn1, act1 = _conv_bn(ci, co, device, dtype)
        super().__init__(conv1, nn.MaxPool2d(2), bn1, act1, *_conv_bn(co, co, device, dtype))


class FashionNet(ModelBase):
    """A stem convolution, one :class:`Stage` per further width, global max-pool, one linear layer."""

    fc_names = ("head",)

    def __init__(self, num_classes=10, in_chans=1, widths=(16, 32, 64, 128), dropout=0.0, device=None, dtype=None):
        super().__init__(num_classes, in_chans, default_scale=28)
        if len(widths) < 2:
            raise ValueError("fashion-net needs at least two widths (stem + one stage)")
        self.stem = nn.Sequential(*_conv_bn(in_chans, widths[0], device, dtype))
        self.stages = nn.Sequential(*[Stage(a, b, device, dtype) for a, b in zip(widths[:-1], widths[1:])])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(widths[-1], num_classes, bias=True, device=device, dtype=dtype)
        self.num_features = widths[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_stages(self.stages, self.stem(x), self.grad_checkpointing)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.flatten(self.pool(feats), 1)))


class PhotoNet(FashionNet):
    """:class:`FashionNet`'s stages behind a ``stem_stride``-pixel patchify stem (kernel = stride, no overlap)."""

    def __init__(self, num_classes=10, in_chans=3, widths=(24, 48, 96, 192), stem_stride=4, dropout=0.0, device=None,
                 dtype=None):
        super().__init__(num_classes, in_chans, widths, dropout, device, dtype)
        self.default_scale = 112
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], stem_stride, stride=stem_stride, bias=False, device=device, dtype=dtype),
            nn.BatchNorm2d(widths[0], device=device, dtype=dtype), nn.ReLU(inplace=True))


register_variant("fashion-net", FashionNet, "The default recipe's network: widths (16, 32, 64, 128), 0.42M weights.")
register_variant("fashion-net-wide", FashionNet, "Widths (24, 48, 96, 192): the same accuracy in fewer epochs, at half "
                 "the speed.", widths=(24, 48, 96, 192))
register_variant("photo-net", PhotoNet, "fashion-net's stages (24, 48, 96, 192) behind a 4x4/4 patchify stem: colour "
                 "photographs at 112-224 px on a CPU, 0.66M weights at 10 classes.")
