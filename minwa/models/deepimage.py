"""The Deep Image VGG-style family (seeds/001 §5.1, seeds/002 Table 2).

Stages of 3×3 convolutions (ReLU after each, optional BN), each stage closed by a 2×2/2 max-pool, then
the three-layer FC head (dropout 0.5 after FC1 and FC2). A network is two lists, as in timm's ``vgg.py``:
convolutions per stage (``depths``) and filters per stage (``widths``), plus the FC sizes (``fc``).

- ``deepimage16``: Table 2 — 13 convs (64,64 | 128,128 | 256×3 | 512×3 | 512×3), FC 6144, 6144, 1000:
  212.7M weights at 1,000 classes on 224×224 crops (14.7M conv + 154.1M + 37.7M + 6.1M FC).
- ``deepimage19``: Figure 8b's 19-layer model, 16 convs (4 in each of the last three stages).
- ``deepimage-scaling``: the §3.3 scaling-test network, 8 conv + 3 FC + 1,000-way softmax. The paper
  gives only the layer counts; the 8 convs follow VGG's configuration A (64 | 128 | 256×2 | 512×2 |
  512×2) with FC 4096, the closest published network with exactly that shape.
- ``deepimage-tiny``: 3 convs + 3 FC for CPU machines and tests (28×28 grayscale by default).

The paper varies filters up to 1024 and FC neurons up to 8192: pass ``widths=`` and ``fc=``.
``img_size`` is the C×C crop the FC head is sized for; dense testing runs the model on any size.
"""

from __future__ import annotations

from torch import nn

from minwa.models.base import FCHeadNet
from minwa.models.layers import FCHead, conv_unit, init_weights
from minwa.models.registry import register_variant

_TABLE2_WIDTHS = (64, 128, 256, 512, 512)


class DeepImageNet(FCHeadNet):
    """``depths``: convolutions per stage (one count for every stage, or one per stage); ``widths``:
    filters per stage; ``fc``: the two hidden FC sizes."""

    def __init__(self, depths, widths=_TABLE2_WIDTHS, fc=(6144, 6144), num_classes=1000, in_chans=3, *,
                 img_size=224, batchnorm=False, dropout=0.5, inplace=True, checkpointing=False, device=None,
                 dtype=None):
        super().__init__(num_classes, in_chans, img_size, checkpointing)
        depths = (depths,) * len(widths) if isinstance(depths, int) else depths
        if len(depths) != len(widths):
            raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} differ in length")
        feat = img_size // 2 ** len(depths)
        if feat < 1:
            raise ValueError(f"img_size {img_size} is too small for {len(depths)} pooling stages")
        stages, ci = [], in_chans
        for depth, co in zip(depths, widths):
            layers = []
            for _ in range(depth):
                layers += conv_unit(ci, co, batchnorm=batchnorm, inplace=inplace, device=device, dtype=dtype)
                ci = co
            layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        self.num_features = ci
        self.head = FCHead((ci, feat, feat), tuple(fc), num_classes, dropout=dropout, inplace=inplace,
                           device=device, dtype=dtype)
        init_weights(self)


register_variant("deepimage16", DeepImageNet, "Table 2: 13 conv + 3 FC, 212.7M weights at 1,000 classes.",
                 fixed=dict(depths=(2, 2, 3, 3, 3)))
register_variant("deepimage19", DeepImageNet, "Figure 8b: 16 conv + 3 FC (four convs in each of the last three "
                 "stages).", fixed=dict(depths=(2, 2, 4, 4, 4)))
register_variant("deepimage-scaling", DeepImageNet, "§3.3: 8 conv + 3 FC + 1,000-way softmax (the scaling "
                 "experiments).", fixed=dict(depths=(1, 1, 2, 2, 2)), fc=(4096, 4096))
register_variant("deepimage-tiny", DeepImageNet, "3 conv + 3 FC: the family's shape at CPU-test size (28×28 "
                 "grayscale → 3×3×64 → 128 → 128 → K).", fixed=dict(depths=1), widths=(16, 32, 64), fc=(128, 128),
                 img_size=28, num_classes=10, in_chans=1)
