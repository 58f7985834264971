"""Inception-BN (Ioffe & Szegedy 2015), the model of seeds/004, laid out as MXNet's ``inception-bn`` symbol.

Every convolution is conv → BN → ReLU. Module A has four branches (1×1; 1×1→3×3; 1×1→3×3→3×3; pool→1×1
projection), module B (the grid reductions 3c, 4e) has two stride-2 conv branches and a stride-2
max-pool. Global average pooling and one FC layer make the head, so any input size works. ``width``
multiplies every filter count: seeds/004 widened the bottom layers ×1.5 for its 21k-class model
(``width=1.5`` widens them all).
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.models.base import ModelBase
from minwa.models.layers import init_weights, run_stages
from minwa.models.registry import register_variant


class ConvBN(nn.Sequential):
    def __init__(self, ci, co, k, stride=1, padding=0, inplace=True, device=None, dtype=None):
        super().__init__(nn.Conv2d(ci, co, k, stride, padding, bias=False, device=device, dtype=dtype),
                         nn.BatchNorm2d(co, eps=1e-5, device=device, dtype=dtype), nn.ReLU(inplace=inplace))


class InceptionA(nn.Module):
    """1×1 | 1×1→3×3 | 1×1→3×3→3×3 | avg/max pool→1×1, concatenated."""

    def __init__(self, ci, n1, n3r, n3, nd3r, nd3, pool, proj, inplace=True, device=None, dtype=None):
        super().__init__()
        kw = dict(inplace=inplace, device=device, dtype=dtype)
        self.b1 = ConvBN(ci, n1, 1, **kw)
        self.b3 = nn.Sequential(ConvBN(ci, n3r, 1, **kw), ConvBN(n3r, n3, 3, 1, 1, **kw))
        self.bd3 = nn.Sequential(ConvBN(ci, nd3r, 1, **kw), ConvBN(nd3r, nd3, 3, 1, 1, **kw),
                                 ConvBN(nd3, nd3, 3, 1, 1, **kw))
        pool_layer = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, 1, 1)
        self.bp = nn.Sequential(pool_layer, ConvBN(ci, proj, 1, **kw))
        self.out_chans = n1 + n3 + nd3 + proj

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.bd3(x), self.bp(x)], 1)


class InceptionB(nn.Module):
    """Grid reduction: 1×1→3×3/2 | 1×1→3×3→3×3/2 | max-pool 3×3/2, concatenated."""

    def __init__(self, ci, n3r, n3, nd3r, nd3, inplace=True, device=None, dtype=None):
        super().__init__()
        kw = dict(inplace=inplace, device=device, dtype=dtype)
        self.b3 = nn.Sequential(ConvBN(ci, n3r, 1, **kw), ConvBN(n3r, n3, 3, 2, 1, **kw))
        self.bd3 = nn.Sequential(ConvBN(ci, nd3r, 1, **kw), ConvBN(nd3r, nd3, 3, 1, 1, **kw),
                                 ConvBN(nd3, nd3, 3, 2, 1, **kw))
        self.bp = nn.MaxPool2d(3, 2, 1)
        self.out_chans = n3 + nd3 + ci

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd3(x), self.bp(x)], 1)


# (kind, args) per block, MXNet's symbol_inception-bn.py; A: n1, n3r, n3, nd3r, nd3, pool, proj; B: n3r, n3, nd3r, nd3
_FULL = [
    ("A", (64, 64, 64, 64, 96, "avg", 32)),  # 3a
    ("A", (64, 64, 96, 64, 96, "avg", 64)),  # 3b
    ("B", (128, 160, 64, 96)),  # 3c
    ("A", (224, 64, 96, 96, 128, "avg", 128)),  # 4a
    ("A", (192, 96, 128, 96, 128, "avg", 128)),  # 4b
    ("A", (160, 128, 160, 128, 160, "avg", 128)),  # 4c
    ("A", (96, 128, 192, 160, 192, "avg", 128)),  # 4d
    ("B", (128, 192, 192, 256)),  # 4e
    ("A", (352, 192, 320, 160, 224, "avg", 128)),  # 5a
    ("A", (352, 192, 320, 192, 224, "max", 128)),  # 5b
]
_TINY = [
    ("A", (16, 16, 16, 16, 24, "avg", 8)),
    ("B", (32, 40, 16, 24)),
    ("A", (48, 24, 48, 24, 32, "avg", 32)),
    ("B", (48, 64, 48, 64)),
    ("A", (96, 48, 96, 48, 64, "max", 48)),
]


def _w(n, width):
    return n if isinstance(n, str) else max(1, int(round(n * width)))


class InceptionBN(ModelBase):
    """``blocks``: (kind, filter counts) per inception block; ``stem``: ``imagenet`` or ``small``."""

    fc_names = ("fc",)

    def __init__(self, blocks, num_classes=1000, in_chans=3, *, stem="imagenet", width=1.0, img_size=224,
                 dropout=0.0, inplace=True, checkpointing=False, device=None, dtype=None):
        super().__init__(num_classes, in_chans, img_size, checkpointing)
        kw = dict(inplace=inplace, device=device, dtype=dtype)
        if stem == "imagenet":  # 224 → 112 → 56 → 56 → 28
            c1, c2r, c2 = _w(64, width), _w(64, width), _w(192, width)
            self.stem = nn.Sequential(ConvBN(in_chans, c1, 7, 2, 3, **kw), nn.MaxPool2d(3, 2, 1),
                                      ConvBN(c1, c2r, 1, **kw), ConvBN(c2r, c2, 3, 1, 1, **kw), nn.MaxPool2d(3, 2, 1))
        else:  # small inputs: one 3×3 conv, no downsampling
            c2 = _w(32, width)
            self.stem = nn.Sequential(ConvBN(in_chans, c2, 3, 1, 1, **kw))
        blocks_out, ci = [], c2
        for kind, args in blocks:
            args = [_w(a, width) for a in args]
            block = InceptionA(ci, *args, **kw) if kind == "A" else InceptionB(ci, *args, **kw)
            blocks_out.append(block)
            ci = block.out_chans
        self.blocks = nn.Sequential(*blocks_out)
        self.num_features = ci
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(ci, num_classes, device=device, dtype=dtype)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_stages(self.blocks, self.stem(x), self.grad_checkpointing)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(feats), 1)))


register_variant("inception-bn", InceptionBN, "MXNet's Inception-BN: 10 inception blocks, global average pooling, "
                 "one FC layer.", fixed=dict(blocks=_FULL, stem="imagenet"))
register_variant("inception-bn-tiny", InceptionBN, "Five blocks (A, B, A, B, A) after a 3×3 stem: 28 → 14 → 7, "
                 "for CPU machines and tests.", fixed=dict(blocks=_TINY, stem="small"), img_size=28,
                 num_classes=10, in_chans=1)
