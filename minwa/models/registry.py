"""Model registry: ``@register("name")`` on a constructor, or ``register_variant`` for one member of a
family; ``create_model(name, num_classes, **kw)``.

Constructors take ``num_classes``, ``in_chans`` and their own keyword knobs, plus ``device``/``dtype``
so a 212M-parameter model can be built on the meta device. A constructor's signature is its list of
options: ``create_model`` and the config checks refuse other keywords and check each value against its
default. Every model is a :class:`minwa.models.base.ModelBase` (one contract for fine-tuning, the hybrid
FC split and dense testing); parallelism is applied from outside by ``minwa.parallel``.
"""

from __future__ import annotations

import inspect
import math
import warnings
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


def register_variant(name: str, build: Callable, doc: str, *, fixed: dict | None = None, **defaults) -> Callable:
    """Register ``name`` as ``build`` (a family's one constructor) with ``fixed`` arguments bound — its
    structure, not options — and its other defaults replaced by ``defaults``, as timm's ``_create_vgg``
    serves every VGG. The entry's signature, its options, is derived from ``build``'s, not written again."""
    fixed = dict(fixed or {})
    params = inspect.signature(build).parameters
    unknown = sorted((set(fixed) | set(defaults)) - set(params))
    if unknown:
        raise TypeError(f"{build.__name__} has no argument {', '.join(unknown)}")
    options = [p.replace(kind=p.KEYWORD_ONLY, default=defaults.get(n, p.default))
               for n, p in params.items() if n not in fixed]

    def create(**kwargs):
        return build(**fixed, **{**defaults, **kwargs})

    create.__signature__ = inspect.Signature(options)
    create.__name__, create.__doc__ = name, doc
    return register(name)(create)


def list_models() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def model_accepts(name: str, option: str) -> bool:
    """Whether model ``name``'s constructor takes keyword ``option`` (e.g. ``img_size`` for FC heads)."""
    _import_all()
    fn = _MODELS.get(name)
    return fn is not None and option in inspect.signature(fn).parameters


def _constructor(name: str) -> Callable:
    _import_all()
    if name not in _MODELS:
        raise MinwaError(f"unknown model '{name}' (known: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]


def _fits(value, default) -> bool:
    """Whether ``value`` is the kind of thing the constructor's ``default`` is (the constructors carry no
    annotations; their defaults say what each knob takes). Whole-number knobs with a positive default
    (widths, groups, img_size) must be positive."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int) and (value > 0 or default <= 0)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            return False
        return not default or (bool(value) and all(_fits(v, default[0]) for v in value))
    return isinstance(value, type(default))


def _kind(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a positive whole number" if default > 0 else "a whole number"
    if isinstance(default, float):
        return "a finite number"
    if isinstance(default, (tuple, list)) and default:
        return f"a list like {list(default)}, each {_kind(default[0])}"
    return f"a {type(default).__name__}"


def _check_kwargs(name: str, fn: Callable, kwargs: dict) -> None:
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        bad = [k for k in kwargs if k not in params]
        if bad:
            raise MinwaError(f"model '{name}' has no option {', '.join(map(repr, bad))}")
    for k, v in kwargs.items():
        default = params[k].default if k in params else None
        if k not in ("device", "dtype") and default is not inspect.Parameter.empty and not _fits(v, default):
            raise MinwaError(f"model '{name}' option '{k}' must be {_kind(default)}, not {v!r}")


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs):
    """Build a registered model; an unknown name or knob, or one the constructor refuses, is a one-line error."""
    fn = _constructor(name)
    _check_kwargs(name, fn, kwargs)
    options = {k: v for k, v in kwargs.items() if k not in ("device", "dtype")}
    try:
        return fn(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        if not options:
            raise
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise MinwaError(f"model '{name}' cannot be built with {shown}: {str(e).splitlines()[0]}") from None


def check_options(name: str, kwargs: dict) -> None:
    """Refuse constructor options before any data is read: the model is built on the meta device with the
    constructor's own class and channel counts (no memory; 19 ms for deepimage16, plus once ~1.5 s of
    importing torch._dynamo, which meta ``normal_`` needs and the first optimizer step imports anyway)."""
    params = inspect.signature(_constructor(name)).parameters
    reserved = [k for k in ("num_classes", "in_chans", "device", "dtype") if k in kwargs]
    if reserved:
        raise MinwaError(f"model '{name}' option '{reserved[0]}' is set by minwa (from the data and the run), "
                         f"not by model.kwargs")
    defaults = {k: params[k].default for k in ("num_classes", "in_chans")
                if k in params and params[k].default is not inspect.Parameter.empty}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "initializing zero-element tensors is a no-op"
        create_model(name, **defaults, device="meta", **kwargs)


def count_parameters(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> int:
    """Number of parameters of a registered model, built on the meta device (no memory, no time)."""
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, device="meta", **kwargs)
    return sum(p.numel() for p in model.parameters())


def _import_all():
    # Importing the family modules registers their models (here, not at the top: each imports this registry).
    from minwa.models import alexnet, deepimage, fashion, inception_bn, resnet  # noqa: F401
