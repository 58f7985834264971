"""Single-device models behind a registry: ``create_model(name, num_classes, in_chans, **knobs)``.

Families: ``deepimage16`` / ``deepimage19`` / ``deepimage-scaling`` / ``deepimage-tiny`` (the paper's
VGG-style nets), ``alexnet`` / ``alexnet-tiny`` / ``alexnet-torchvision`` (torchvision's, for its weights), ``inception-bn`` / ``inception-bn-tiny``, ``resnet50`` /
``resnet18`` / ``resnet-tiny``, and the demo's ``fashion-net``. Fine-tuning helpers live in
:mod:`minwa.models.finetune`.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "ModelBase": "minwa.models.base",
    "freeze_for_finetune": "minwa.models.finetune",
    "count_parameters": "minwa.models.registry",
    "create_model": "minwa.models.registry",
    "list_models": "minwa.models.registry",
    "register": "minwa.models.registry",
    "register_variant": "minwa.models.registry",
})
