"""Model registry: ``@register("name")`` on a constructor, ``create_model(name, num_classes, **kw)``.

Constructors take ``num_classes``, ``in_chans`` and their own keyword knobs, plus ``device``/``dtype``
so a 212M-parameter model can be built on the meta device. Every model is a plain single-device
``nn.Module`` exposing ``forward_features`` and ``forward_head`` (timm's convention); parallelism is
applied from outside by ``minwa.parallel``.
"""

from __future__ import annotations

import inspect
from typing import Callable

from minwa.errors import MinwaError

_MODELS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def model_accepts(name: str, option: str) -> bool:
    """Whether model ``name``'s constructor takes keyword ``option`` (e.g. ``img_size`` for FC heads)."""
    _import_all()
    fn = _MODELS.get(name)
    return fn is not None and option in inspect.signature(fn).parameters


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs):
    """Build a registered model; an unknown name or knob is a one-line error."""
    _import_all()
    if name not in _MODELS:
        raise MinwaError(f"unknown model '{name}' (known: {', '.join(sorted(_MODELS))})")
    fn = _MODELS[name]
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        bad = [k for k in kwargs if k not in params]
        if bad:
            raise MinwaError(f"model '{name}' has no option {', '.join(map(repr, bad))}")
    return fn(num_classes=num_classes, in_chans=in_chans, **kwargs)


def count_parameters(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> int:
    """Number of parameters of a registered model, built on the meta device (no memory, no time)."""
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, device="meta", **kwargs)
    return sum(p.numel() for p in model.parameters())


def _import_all():
    # Importing the family modules registers their models.
    from minwa.models import alexnet, deepimage, fashion, inception_bn, resnet  # noqa: F401
