"""Building blocks shared by the model families: conv units, the three-layer FC head, checkpointed stages.

The FC head is an ``nn.Sequential`` of ``Flatten → fc1 → ReLU → Dropout → fc2 → ReLU → Dropout → fc3``
with fixed child names: they are checkpoint keys (``head.fc1.weight``), the models name them as their FC
layers (:class:`minwa.models.base.FCHeadNet`), and ``minwa.evaluate.dense`` turns the Linear layers into
convolutions (OverFeat) using ``in_shape``. ``fc3`` is the softmax layer that fine-tuning replaces.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def conv_unit(ci, co, k=3, stride=1, padding=None, *, batchnorm=False, inplace=True, groups=1, device=None, dtype=None):
    """conv → [BN] → ReLU; the conv has no bias when BN follows (the BN shift replaces it)."""
    padding = k // 2 if padding is None else padding
    layers = [nn.Conv2d(ci, co, k, stride, padding, groups=groups, bias=not batchnorm, device=device, dtype=dtype)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(co, device=device, dtype=dtype))
    layers.append(nn.ReLU(inplace=inplace))
    return layers


class FCHead(nn.Sequential):
    """The paper's classifier: three FC layers, ReLU after the first two, dropout after FC1 and FC2.

    ``in_shape`` = (C, h, w) of the feature map FC1 reads; it is what the dense conversion needs to turn
    FC1 into an h×w convolution and FC2/FC3 into 1×1 convolutions.
    """

    def __init__(self, in_shape, hidden=(4096, 4096), num_classes=1000, *, dropout=0.5, inplace=True,
                 device=None, dtype=None):
        c, h, w = in_shape
        if len(hidden) != 2:
            raise ValueError(f"the FC head has two hidden layers, got {tuple(hidden)}")
        super().__init__()
        self.in_shape = (int(c), int(h), int(w))
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(c * h * w, hidden[0], device=device, dtype=dtype)
        self.act1 = nn.ReLU(inplace=inplace)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden[0], hidden[1], device=device, dtype=dtype)
        self.act2 = nn.ReLU(inplace=inplace)
        self.drop2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden[1], num_classes, device=device, dtype=dtype)


def run_stages(stages, x: torch.Tensor, use_checkpointing: bool) -> torch.Tensor:
    """Run ``stages`` in order; with checkpointing (and grad enabled) each stage's activations are
    recomputed in backward instead of stored: seeds/004's memory trade, done the PyTorch way."""
    for stage in stages:
        if use_checkpointing and torch.is_grad_enabled():
            x = checkpoint(stage, x, use_reentrant=False)
        else:
            x = stage(x)
    return x


def init_weights(model: nn.Module, linear_std: float = 0.01) -> None:
    """He init for convolutions (ReLU nets this deep do not train from the default init without BN),
    N(0, linear_std) for Linear layers, zero biases, unit BN scale. No-op on the meta device."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
