"""Model-side fine-tuning (seeds/001 §5): a new softmax layer, and which layers stay trainable.

The paper fine-tunes all layers, only the last three FC layers, or only the softmax layer. Every model
names its FC layers and its classifier (:class:`minwa.models.base.ModelBase`), so any registered model
works, including ones with a single linear head (there ``fc`` and ``head`` coincide). Frozen BatchNorm
layers are held in inference behaviour (running statistics used, never updated) even when the trainer
calls ``model.train()``: otherwise a "frozen" trunk would still drift through its BN statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.models.base import ModelBase

MODES = ("all", "fc", "head")


def _hold_eval(module, args):
    module.training = False


def freeze_for_finetune(model: ModelBase, mode: str = "all") -> list[torch.nn.Parameter]:
    """Set ``requires_grad`` for fine-tuning mode ``all`` | ``fc`` (last three FC layers) | ``head``
    (softmax layer only) and return the trainable parameters, to hand to the optimizer."""
    if mode not in MODES:
        raise MinwaError(f"unknown fine-tune mode '{mode}' (choose from {', '.join(MODES)})")
    for handle in model.finetune_hooks:
        handle.remove()
    model.finetune_hooks.clear()
    if mode == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())
    trainable_layers = model.fc_layers()[-3:] if mode == "fc" else [model.classifier()]
    trainable = {id(p) for layer in trainable_layers for p in layer.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    model.finetune_hooks.extend(m.register_forward_pre_hook(_hold_eval) for m in model.modules()
                                if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                and not any(p.requires_grad for p in m.parameters()))
    return [p for p in model.parameters() if p.requires_grad]
