"""Model-side fine-tuning (seeds/001 §5): a new softmax layer, and which layers stay trainable.

The paper fine-tunes all layers, only the last three FC layers, or only the softmax layer. The FC layers
are found generically — a model's ``fc_layers()`` when it defines one, else its ``nn.Linear`` modules in
registration order — so any registered model works, including ones with a single linear head (there
``fc`` and ``head`` coincide). Frozen BatchNorm layers are held in inference behaviour (running
statistics used, never updated) even when the trainer calls ``model.train()``: otherwise a "frozen"
trunk would still drift through its BN statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from minwa.errors import MinwaError

MODES = ("all", "fc", "head")
_HOOKS_ATTR = "_minwa_frozen_bn_hooks"


def fc_layers(model: nn.Module) -> list[nn.Linear]:
    """The fully connected layers in order; the last one is the softmax (classifier) layer."""
    layers = model.fc_layers() if hasattr(model, "fc_layers") else [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise MinwaError(f"model {type(model).__name__} has no fully connected layer to fine-tune")
    return list(layers)


def _qualified_name(model: nn.Module, target: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is target:
            return name
    raise ValueError("layer is not part of the model")


def reset_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the softmax layer with a fresh ``num_classes``-way one (same input size, device, dtype)."""
    old = fc_layers(model)[-1]
    name = _qualified_name(model, old)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    if new.weight.device.type != "meta":
        nn.init.normal_(new.weight, 0.0, 0.01)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    setattr(parent, attr, new)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return model


def _hold_eval(module, args):
    module.training = False


def freeze_for_finetune(model: nn.Module, mode: str = "all") -> list[torch.nn.Parameter]:
    """Set ``requires_grad`` for fine-tuning mode ``all`` | ``fc`` (last three FC layers) | ``head``
    (softmax layer only) and return the trainable parameters, to hand to the optimizer."""
    if mode not in MODES:
        raise MinwaError(f"unknown fine-tune mode '{mode}' (choose from {', '.join(MODES)})")
    for handle in getattr(model, _HOOKS_ATTR, []):
        handle.remove()
    setattr(model, _HOOKS_ATTR, [])
    if mode == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())
    layers = fc_layers(model)
    trainable_layers = layers[-3:] if mode == "fc" else layers[-1:]
    trainable = {id(p) for layer in trainable_layers for p in layer.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    hooks = [m.register_forward_pre_hook(_hold_eval) for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters())]
    setattr(model, _HOOKS_ATTR, hooks)
    return [p for p in model.parameters() if p.requires_grad]
