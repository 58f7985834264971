"""The one model contract: every registered model is a :class:`ModelBase`.

Fine-tuning, the hybrid FC split and dense testing all ask a model the same questions — which layers are
its FC layers, which one is the classifier, what its head reads — so the model answers them itself, by
name, instead of each stage searching its modules. Names, not searches: a state dict's keys are the
checkpoint format, and the hybrid split addresses layers by their qualified names.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from minwa.models.layers import FCHead, run_stages


class ModelBase(nn.Module):
    """What every minwa model has: ``num_classes``, ``in_chans``, ``default_scale`` (the native C×C
    input), its FC layers named in ``fc_names`` (forward order; the last is the classifier) and
    ``forward = forward_head ∘ forward_features`` (timm's split). Parallelism is applied from outside."""

    fc_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, in_chans: int, default_scale: int, checkpointing: bool = False):
        super().__init__()
        self.num_classes, self.in_chans, self.default_scale = num_classes, in_chans, int(default_scale)
        self.grad_checkpointing = bool(checkpointing)
        self.finetune_hooks: list[RemovableHandle] = []  # held by minwa.models.finetune: frozen BN kept in eval

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch: recompute each stage's activations in backward (less memory, ~30% more compute)."""
        self.grad_checkpointing = bool(enable)

    def named_fc_layers(self) -> list[tuple[str, nn.Linear]]:
        """``(qualified name, layer)`` of the FC layers in forward order, e.g. ``head.fc1`` … ``head.fc3``."""
        return [(name, self.get_submodule(name)) for name in self.fc_names]

    def fc_layers(self) -> list[nn.Linear]:
        """The FC layers in forward order (fine-tuning's ``fc`` mode trains the last three)."""
        return [layer for _, layer in self.named_fc_layers()]

    def classifier(self) -> nn.Linear:
        """The softmax layer: the last FC layer, the one fine-tuning's ``head`` mode trains and replaces."""
        return self.get_submodule(self.fc_names[-1])

    def reset_head(self, num_classes: int) -> ModelBase:
        """A fresh ``num_classes``-way classifier (same input size, device and dtype), for new classes."""
        old = self.classifier()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                        device=old.weight.device, dtype=old.weight.dtype)
        if new.weight.device.type != "meta":
            nn.init.normal_(new.weight, 0.0, 0.01)
            if new.bias is not None:
                nn.init.zeros_(new.bias)
        parent, _, attr = self.fc_names[-1].rpartition(".")
        setattr(self.get_submodule(parent), attr, new)
        self.num_classes = num_classes
        return self

    def fc_head(self) -> FCHead | None:
        """The Flatten→FC head that ``forward_head`` applies to the feature map, for dense testing to turn
        into convolutions; None when the head pools globally (any input size already works)."""
        return None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class FCHeadNet(ModelBase):
    """A conv trunk ``features`` (stages, checkpointed one by one) read by the paper's three-layer
    :class:`FCHead` ``head``: the Deep Image nets and AlexNet. Subclasses build the two modules."""

    fc_names = ("head.fc1", "head.fc2", "head.fc3")
    features: nn.Sequential
    head: FCHead

    def fc_head(self) -> FCHead:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_stages(self.features, x, self.grad_checkpointing)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)
