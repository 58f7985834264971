"""AlexNet as seeds/003 describes it (Krizhevsky et al. 2012).

Five convolutions and three FC layers with a final softmax; ReLU everywhere; local response
normalisation after the ReLU of conv1 and conv2; overlapping 3×3/2 max-pooling; dropout 0.5 after FC1
and FC2. The two-GPU split survives as connectivity: with ``groups=2`` (default) conv2, conv4 and conv5
see only the kernels of their own half, conv3 and the FC layers see all — 61.0M parameters at 1,000
classes, the paper's "60 million". LRN uses the paper's constants (k=2, n=5, α=1e-4, β=0.75);
PyTorch divides α by n, hence ``alpha=5e-4`` below.

``alexnet-torchvision`` is torchvision's AlexNet (Krizhevsky 2014, "One weird trick"): 64-192-384-256-256
filters, no groups, no LRN, 61.1M parameters; ``minwa import-weights`` loads its ImageNet weights. Its
torchvision original pools to 6×6 adaptively and puts dropout before FC1/FC2 rather than after: the same
logits at 224×224 in inference, the same training behaviour in distribution.
"""

from __future__ import annotations

from torch import nn

from minwa.models.base import FCHeadNet
from minwa.models.layers import FCHead, init_weights
from minwa.models.registry import register_variant


def _lrn():
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


def _conv(ci, co, k, stride=1, padding=0, groups=1, inplace=True, device=None, dtype=None):
    return [nn.Conv2d(ci, co, k, stride, padding, groups=groups, device=device, dtype=dtype), nn.ReLU(inplace=inplace)]


_PAPER_WIDTHS, _PAPER_STEM = (96, 256, 384, 384, 256), (11, 4, 2)
_TORCHVISION_WIDTHS = (64, 192, 384, 256, 256)


class AlexNet(FCHeadNet):
    """``stem`` = (kernel, stride, padding) of conv1; ``widths`` the five convolutions' filters; ``lrn``:
    local response normalisation after conv1 and conv2 (the paper's; torchvision's AlexNet has none)."""

    def __init__(self, num_classes=1000, in_chans=3, *, widths=_PAPER_WIDTHS, fc=(4096, 4096),
                 groups=2, img_size=224, stem=_PAPER_STEM, lrn=True, dropout=0.5, inplace=True, checkpointing=False,
                 device=None, dtype=None):
        super().__init__(num_classes, in_chans, img_size, checkpointing)
        w1, w2, w3, w4, w5 = widths
        k1, s1, p1 = stem
        kw = dict(inplace=inplace, device=device, dtype=dtype)
        norm = (lambda: [_lrn()]) if lrn else list  # parameter-free: the state-dict keys are the same either way
        self.features = nn.Sequential(
            nn.Sequential(*_conv(in_chans, w1, k1, s1, p1, **kw), *norm(), nn.MaxPool2d(3, 2)),
            nn.Sequential(*_conv(w1, w2, 5, 1, 2, groups, **kw), *norm(), nn.MaxPool2d(3, 2)),
            nn.Sequential(*_conv(w2, w3, 3, 1, 1, 1, **kw), *_conv(w3, w4, 3, 1, 1, groups, **kw),
                          *_conv(w4, w5, 3, 1, 1, groups, **kw), nn.MaxPool2d(3, 2)),
        )
        side = (img_size + 2 * p1 - k1) // s1 + 1
        for _ in range(3):
            side = (side - 3) // 2 + 1
        if side < 1:
            raise ValueError(f"img_size {img_size} is too small for AlexNet's stem and three poolings")
        self.num_features = w5
        self.head = FCHead((w5, side, side), tuple(fc), num_classes, dropout=dropout, inplace=inplace,
                           device=device, dtype=dtype)
        init_weights(self, linear_std=0.005)


register_variant("alexnet", AlexNet, "224×224 → 55 → 27 → 13 → 6: FC1 reads 256×6×6.",
                 fixed=dict(widths=_PAPER_WIDTHS, stem=_PAPER_STEM, lrn=True))
register_variant("alexnet-torchvision", AlexNet, "torchvision's AlexNet (64-192-384-256-256, no groups, no LRN): "
                 "what its ImageNet weights load into (minwa import-weights).",
                 fixed=dict(widths=_TORCHVISION_WIDTHS, stem=_PAPER_STEM, groups=1, lrn=False))
register_variant("alexnet-tiny", AlexNet, "The same five-conv/LRN/overlapping-pool shape for 28×28 inputs "
                 "(5×5 stride-1 stem): 28 → 13 → 6 → 2.", fixed=dict(stem=(5, 1, 2), lrn=True),
                 widths=(32, 64, 96, 96, 64), fc=(256, 256), img_size=28, num_classes=10, in_chans=1)
