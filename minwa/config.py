"""Configuration as plain dataclasses, loaded from a TOML/YAML file plus ``key.sub=value`` overrides.

Each component owns a small dataclass (``DataConfig``, ``AugmentConfig``, ``ModelConfig``,
``OptimConfig``, ``ParallelConfig``, ``EvalConfig``); ``TrainConfig`` composes them. A recipe is a
Python function returning a complete config (``minwa.train.recipes``); files and the command line only
override fields. Unknown keys and values of the wrong type are one-line errors, not silent defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from minwa.errors import MinwaError


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


class CliText(str):
    """A ``--set`` value as typed: read as a TOML/JSON literal only where the field's type asks for one."""


def _literal(text: str, where: str, what: str) -> Any:
    """``false``/``3``/``[1,2]``/``["a","b"]``/``{"k": 1}`` -> Python value (JSON first, then TOML)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise MinwaError(f"config value {where} must be {what}, got {text!r}") from None


def _scalar(value: Any) -> Any:
    """A free-form value (inside ``model.kwargs``): a command-line word is read as a TOML/JSON scalar."""
    if isinstance(value, CliText):
        try:
            return _literal(value, "", "")
        except MinwaError:
            return str(value)  # a bare word: the string itself
    if isinstance(value, dict):
        return {k: _scalar(v) for k, v in value.items()}
    return value


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert ``value`` (from TOML/YAML/JSON or a command-line string) to the field type ``typ``."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise MinwaError(f"config section '{where}' must be a table, got {value!r}")
        return from_dict(typ, value, prefix=where)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(typ) or (Any,)
        if isinstance(value, str):  # "a,b", "[1,2]" or '["a","b"]' from the command line
            text = value.strip()
            if text.startswith("[") and not text.endswith("]"):
                raise MinwaError(f"config value {where} must be a list like [1,2] or [\"a\",\"b\"], got {text!r}")
            try:  # a JSON/TOML list keeps quoted commas; bare words ([a,b], a,b) are split on commas
                value = _literal(text, where, "a list") if text.startswith("[") else None
            except MinwaError:
                value = None
            if not isinstance(value, list):
                text = text[1:-1] if text.startswith("[") else text
                value = [CliText(v.strip()) for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise MinwaError(f"config value {where} must be a list, got {value!r}")
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or typ is dict:
        if isinstance(value, str):
            value = _literal(value, where, "a JSON object like {\"k\": 1}")
        if not isinstance(value, dict):
            raise MinwaError(f"config value {where} must be a table, got {value!r}")
        return {k: _scalar(v) for k, v in value.items()}
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise MinwaError(f"config value {where} must be true or false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise MinwaError(f"config value {where} must be a number, got {value!r}")
        try:
            num = typ(value) if typ is float else int(str(value), 0) if isinstance(value, str) else value
        except (TypeError, ValueError):
            raise MinwaError(f"config value {where} must be {'an integer' if typ is int else 'a number'}, got {value!r}") from None
        if typ is int and (not isinstance(num, int) and not float(num).is_integer()):
            raise MinwaError(f"config value {where} must be an integer, got {value!r}")
        return typ(num)
    if typ is str:
        return str(value)
    return _scalar(value)


def _resolve_keys(cls, data: dict, prefix: str):
    """Yield (field name, 'a.b' path, value, field type) for each key of ``data``; unknown keys are errors."""
    types_ = _field_types(cls)
    for key, value in data.items():
        name = key.replace("-", "_")
        where = f"{prefix}.{name}" if prefix else name
        if name not in types_ and name in getattr(cls, "MOVED", {}):  # a key a dataclass moved elsewhere
            raise MinwaError(f"config key '{where}' is now '{cls.MOVED[name]}'; set that instead")
        if name not in types_:
            known = ", ".join(sorted(types_))
            raise MinwaError(f"unknown config key '{where}' (known here: {known})")
        yield name, where, value, types_[name]


def check_finite(cfg, prefix: str = "") -> None:
    """Every float field of ``cfg`` and its sections is finite: TOML's ``inf``/``nan``, YAML's ``.inf``,
    ``1e999`` and Python callers all reach here, and an infinite rate would train to NaN weights."""
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_finite(value, f"{where}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise MinwaError(f"{where} must be a finite number, got {value}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly partial) nested dict, rejecting unknown keys."""
    return cls(**{name: _coerce(value, typ, where) for name, where, value, typ in _resolve_keys(cls, data, prefix)})


def merge(cfg, data: dict, prefix: str = ""):
    """Return a copy of ``cfg`` with the fields in ``data`` (nested dict) replaced."""
    changes = {}
    if "preset" in data and hasattr(cfg, "with_preset"):  # a preset is written out first; the keys beside it win
        cfg = cfg.with_preset(_coerce(data["preset"], str, f"{prefix}.preset" if prefix else "preset"))
        data = {k: v for k, v in data.items() if k != "preset"}
    for name, where, value, typ in _resolve_keys(type(cfg), data, prefix):
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[name] = merge(current, value, where)
        else:
            changes[name] = _coerce(value, typ, where)
    return dataclasses.replace(cfg, **changes)


def nest(pairs) -> dict:
    """``[("optim.lr", 0.1), ("out", "runs/x")]`` -> ``{"optim": {"lr": 0.1}, "out": "runs/x"}``."""
    out: dict = {}
    for key, value in pairs:
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """``["optim.lr=0.1", "data.batch_size=512"]`` -> nested dict of ``CliText`` (typed later by the field)."""
    pairs = []
    for item in items or []:
        if "=" not in item:
            raise MinwaError(f"override '{item}' must look like key.sub=value")
        key, value = item.split("=", 1)
        pairs.append((key, CliText(value.strip())))
    return nest(pairs)


def read_file(path) -> dict:
    """Read a TOML (.toml) or YAML (.yaml/.yml) or JSON config file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise MinwaError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            return tomllib.loads(text)
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise MinwaError(f"config file {p} must end in .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise MinwaError(f"config file {p} is not valid: {str(e).splitlines()[0]}") from None
    except Exception as e:  # yaml.YAMLError
        if type(e).__module__.startswith("yaml"):
            raise MinwaError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        raise
    if not isinstance(data, dict):
        raise MinwaError(f"config file {p} must hold a table of settings")
    return data


def load(base, path=None, overrides: list[str] | None = None, flags: dict | None = None):
    """``base`` (a recipe's config) updated by the file at ``path``, then by ``flags`` (a command's
    shorthand options as ``{"a.b": value}``; None = not given), then by ``overrides`` (``--set``)."""
    cfg = base
    if path:
        cfg = merge(cfg, read_file(path))
    given = [(key, value) for key, value in (flags or {}).items() if value is not None]
    if given:
        cfg = merge(cfg, nest(given))
    if overrides:
        cfg = merge(cfg, parse_overrides(overrides))
    return cfg


def dump_toml(cfg) -> str:
    """Serialise a config as TOML (for the resolved config saved beside every run)."""

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {fmt(x)}" for k, x in v.items()) + "}"
        if v is None:
            return '""'
        return json.dumps(str(v))

    lines: list[str] = []

    def emit(d: dict, section: str):
        scalars = {k: v for k, v in d.items() if not (isinstance(v, dict) and k in sections_of(d))}
        if section:
            lines.append(f"\n[{section}]")
        for k, v in scalars.items():
            if v is None:
                continue
            lines.append(f"{k} = {fmt(v)}")
        for k in sections_of(d):
            emit(d[k], f"{section}.{k}" if section else k)

    def sections_of(d):
        return [k for k, v in d.items() if isinstance(v, dict) and k in nested]

    nested = {f.name for f in _all_fields(type(cfg))}
    emit(to_dict(cfg), "")
    return "\n".join(lines).lstrip() + "\n"


def _all_fields(cls):
    for f in dataclasses.fields(cls):
        t = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(t):
            yield f
            yield from _all_fields(t)
