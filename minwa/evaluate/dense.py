"""Dense testing (OverFeat; seeds/001 §5.1): the FC layers as convolutions, the class-score map averaged.

A model's FC head (:meth:`minwa.models.base.ModelBase.fc_head`: an :class:`minwa.models.layers.FCHead`,
``Flatten`` then Linear / ReLU / Dropout layers) becomes: FC1 → an h×w convolution over the C×h×w feature
map it was trained on, every later Linear → a 1×1 convolution. The converted network runs on a whole
image of any size ≥ the training crop and yields one score vector per window position; the softmax of
each position is averaged into the image's class posterior. On a C×C input the map is 1×1 and the scores
equal the original network's (tests pin this). Models whose head already pools globally (ResNet,
Inception-BN, fashion-net; ``fc_head()`` is None), and callables that are no minwa model, need no
conversion: they are run on the whole image. The converted layers share storage with the original
weights (views, no copy).
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.models.base import ModelBase
from minwa.models.layers import FCHead

_ELEMENTWISE = (nn.ReLU, nn.Dropout, nn.Identity, nn.GELU, nn.SiLU, nn.LeakyReLU)


def fc_head(model: nn.Module) -> FCHead | None:
    """The head to convert, or None where the model runs on the whole image as it is."""
    return model.fc_head() if isinstance(model, ModelBase) else None


def _linear_as_conv(lin: nn.Linear, c: int, h: int, w: int) -> nn.Conv2d:
    conv = nn.Conv2d(c, lin.out_features, (h, w), bias=lin.bias is not None, device="meta")
    conv.weight = nn.Parameter(lin.weight.detach().view(lin.out_features, c, h, w), requires_grad=False)
    if lin.bias is not None:
        conv.bias = nn.Parameter(lin.bias.detach(), requires_grad=False)
    return conv


def convert_head(model: nn.Module) -> nn.Sequential:
    """The model's FC head as a stack of convolutions (weights shared with the Linear layers)."""
    head = fc_head(model)
    if head is None:
        raise MinwaError(f"model {type(model).__name__} has no Flatten→Linear head to convert for dense testing")
    c, h, w = head.in_shape
    layers, first = [], True
    for m in list(head)[1:]:
        if isinstance(m, nn.Linear):
            if first:
                if m.in_features != c * h * w:
                    raise MinwaError(f"FC1 reads {m.in_features} values, not the {c}x{h}x{w} feature map")
                layers.append(_linear_as_conv(m, c, h, w))
                first = False
            else:
                layers.append(_linear_as_conv(m, m.in_features, 1, 1))
        elif isinstance(m, _ELEMENTWISE):
            layers.append(m)
        else:
            raise MinwaError(f"cannot convert head layer {type(m).__name__} to a convolution for dense testing")
    return nn.Sequential(*layers)


class DenseModel(nn.Module):
    """Fully convolutional view of a model: ``forward(x)`` → class-score map (N, K, H', W')."""

    def __init__(self, model: ModelBase):
        super().__init__()
        self.model = model
        self.conv_head = convert_head(model)
        self.min_size = model.fc_head().in_shape[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(x)
        if feats.shape[-2] < self.min_size[0] or feats.shape[-1] < self.min_size[1]:
            raise MinwaError(f"input {tuple(x.shape[-2:])} is smaller than the model's training crop for dense testing")
        return self.conv_head(feats)


def to_dense(model: nn.Module) -> nn.Module:
    """A callable that maps images of any size to class posteriors (N, K), for dense testing."""
    return DenseProbs(model)


class DenseProbs(nn.Module):
    """Softmax per window position, averaged over the map (FC heads); plain softmax for pooled heads."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.dense = DenseModel(model) if fc_head(model) is not None else None
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense is None:
            return torch.softmax(self.model(x).float(), dim=1)
        scores = self.dense(x).float()
        return torch.softmax(scores, dim=1).mean(dim=(2, 3))
