"""Single-device models behind a registry: ``create_model(name, num_classes, in_chans, **knobs)``.

Families: ``deepimage16`` / ``deepimage19`` / ``deepimage-scaling`` / ``deepimage-tiny`` (the paper's
VGG-style nets), ``alexnet`` / ``alexnet-tiny``, ``inception-bn`` / ``inception-bn-tiny``, ``resnet50`` /
``resnet18`` / ``resnet-tiny``, and the demo's ``fashion-net``. Fine-tuning helpers live in
:mod:`minwa.models.finetune`.
"""

from minwa.models.finetune import freeze_for_finetune
from minwa.models.registry import count_parameters, create_model, list_models, register

__all__ = ["count_parameters", "create_model", "freeze_for_finetune", "list_models", "register"]
