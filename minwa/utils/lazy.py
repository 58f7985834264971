"""Package namespaces whose names are imported on first use, so that reading a config module (which
imports its package first) does not pull in torch or numpy (tests/test_config.py checks this)."""

from __future__ import annotations

import importlib
import sys
import types


class LazyPackage(types.ModuleType):
    """A package module whose exported names come from their modules when first read.

    A submodule with an exported name's own name (``minwa.parallel.parallelize``) does not replace the
    export when it is imported, just as with an eager ``from .parallelize import parallelize``.
    """

    _exports: dict[str, str]

    def __getattr__(self, name: str):
        module = self._exports.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if name in self._exports and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule: the exported name keeps its value
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._exports))


def lazy_package(name: str, exports: dict[str, str]) -> list[str]:
    """Make package ``name`` a :class:`LazyPackage` exporting ``{attribute: module}``; returns ``__all__``."""
    package = sys.modules[name]
    package.__dict__["_exports"] = dict(exports)
    package.__class__ = LazyPackage
    return sorted(exports)
