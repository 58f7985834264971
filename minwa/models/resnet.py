"""ResNet (He et al. 2015) in plain torch, laid out like torchvision's so its state-dict keys match.

``resnet50`` is torchvision's ResNet-50 (v1.5: stride on the 3×3 conv of the bottleneck), 25.6M
parameters at 1,000 classes; ``resnet18`` its basic-block sibling (11.7M); ``resnet-tiny`` a 3×3-stem,
three-stage basic-block net for 28×28 inputs. Written here rather than imported because torchvision's
CPU wheel does not import with minwa's torch (docs/DESIGN.md).
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.models.base import ModelBase
from minwa.models.layers import init_weights, run_stages
from minwa.models.registry import register_variant

_IMAGENET_WIDTHS = (64, 128, 256, 512)
_TORCHVISION = dict(widths=_IMAGENET_WIDTHS, stem="imagenet")  # what the ImageNet members fix


def _bn(c, device, dtype):
    return nn.BatchNorm2d(c, device=device, dtype=dtype)


def _shortcut(ci, co, stride, device, dtype):
    """torchvision's projection shortcut (1×1 conv + BN) where the shape changes, else None (identity)."""
    if stride == 1 and ci == co:
        return None
    return nn.Sequential(nn.Conv2d(ci, co, 1, stride, bias=False, device=device, dtype=dtype), _bn(co, device, dtype))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, ci, planes, stride=1, inplace=True, device=None, dtype=None):
        super().__init__()
        co = planes * self.expansion
        self.conv1 = nn.Conv2d(ci, planes, 3, stride, 1, bias=False, device=device, dtype=dtype)
        self.bn1 = _bn(planes, device, dtype)
        self.conv2 = nn.Conv2d(planes, co, 3, 1, 1, bias=False, device=device, dtype=dtype)
        self.bn2 = _bn(co, device, dtype)
        self.relu = nn.ReLU(inplace=inplace)
        self.downsample = _shortcut(ci, co, stride, device, dtype)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, ci, planes, stride=1, inplace=True, device=None, dtype=None):
        super().__init__()
        co = planes * self.expansion
        self.conv1 = nn.Conv2d(ci, planes, 1, bias=False, device=device, dtype=dtype)
        self.bn1 = _bn(planes, device, dtype)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False, device=device, dtype=dtype)
        self.bn2 = _bn(planes, device, dtype)
        self.conv3 = nn.Conv2d(planes, co, 1, bias=False, device=device, dtype=dtype)
        self.bn3 = _bn(co, device, dtype)
        self.relu = nn.ReLU(inplace=inplace)
        self.downsample = _shortcut(ci, co, stride, device, dtype)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(ModelBase):
    """``layers``: blocks per stage (one count for every stage, or one per stage); ``widths``: planes per
    stage; ``stem``: ``imagenet`` (7×7/2 conv + max-pool) or ``small`` (3×3/1 conv)."""

    fc_names = ("fc",)

    def __init__(self, block, layers, num_classes=1000, in_chans=3, *, widths=_IMAGENET_WIDTHS, stem="imagenet",
                 img_size=224, zero_init_residual=False, inplace=True, checkpointing=False, device=None, dtype=None):
        super().__init__(num_classes, in_chans, img_size, checkpointing)
        layers = (layers,) * len(widths) if isinstance(layers, int) else layers
        c0 = widths[0]
        if stem == "imagenet":  # 7×7/2 conv + 3×3/2 max-pool: 224 → 56
            self.conv1 = nn.Conv2d(in_chans, c0, 7, 2, 3, bias=False, device=device, dtype=dtype)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:  # small inputs: 3×3/1, no pooling
            self.conv1 = nn.Conv2d(in_chans, c0, 3, 1, 1, bias=False, device=device, dtype=dtype)
            self.maxpool = nn.Identity()
        self.bn1 = _bn(c0, device, dtype)
        self.relu = nn.ReLU(inplace=inplace)
        ci, stages = c0, []
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(ci, planes, stride, inplace, device, dtype))
                ci = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
            setattr(self, f"layer{i + 1}", stages[-1])  # torchvision's names: layer1..layer4
        self._n_stages = len(stages)
        self.num_features = ci
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ci, num_classes, device=device, dtype=dtype)
        init_weights(self)
        if zero_init_residual:  # each residual branch starts as identity (Goyal et al. 2017)
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    def stages(self):
        return [getattr(self, f"layer{i + 1}") for i in range(self._n_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        blocks = [b for stage in self.stages() for b in stage]  # checkpoint per block, not per stage
        return run_stages(blocks, x, self.grad_checkpointing)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(feats), 1))


register_variant("resnet50", ResNet, "torchvision's ResNet-50: bottleneck blocks [3, 4, 6, 3], 25.6M parameters.",
                 fixed=dict(block=Bottleneck, layers=(3, 4, 6, 3), **_TORCHVISION))
register_variant("resnet18", ResNet, "torchvision's ResNet-18: basic blocks [2, 2, 2, 2], 11.7M parameters.",
                 fixed=dict(block=BasicBlock, layers=(2, 2, 2, 2), **_TORCHVISION))
register_variant("resnet-tiny", ResNet, "Three basic-block stages (one block each) after a 3×3 stem: "
                 "28 → 28 → 14 → 7, for CPU tests.", fixed=dict(block=BasicBlock, layers=1, stem="small"),
                 widths=(16, 32, 64), img_size=28, num_classes=10, in_chans=1)
