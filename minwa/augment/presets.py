"""Named augmentation recipes: each returns the fields it sets; ``apply_preset`` resolves a config.

A preset fills every field it names. Configs loaded from recipes, files and ``--set`` have their preset written
out (``AugmentConfig.with_preset``: explicit settings win, the saved config is what ran). For a config built
in Python with ``preset=...``, a field the user set to something other than its dataclass default
wins over the preset (so ``augment.preset=deepimage augment.rotation=5`` means "Deep Image, but +-5 degrees").
A field cannot be overridden *back to* its default this way; start from ``preset="none"`` for that.
"""

from __future__ import annotations

import dataclasses

from minwa.augment.config import PRESETS, AugmentConfig, check


def apply_preset(cfg: AugmentConfig) -> AugmentConfig:
    """``cfg``, checked, with its preset's fields filled in (idempotent; fields the user changed are kept)."""
    check(cfg)
    defaults = AugmentConfig()
    changes = {k: v for k, v in PRESETS[cfg.preset].items() if getattr(cfg, k) == getattr(defaults, k)}
    return dataclasses.replace(cfg, **changes)


def preset_config(name: str, **overrides) -> AugmentConfig:
    """A resolved config for preset ``name`` with ``overrides`` applied last (any value, defaults included).

    Every field is explicit in the result, so its ``preset`` is ``"none"``: resolving it again (as
    ``Augmenter`` does) cannot undo an override back to a default, such as ``lens=False``.
    """
    return dataclasses.replace(apply_preset(AugmentConfig(preset=name)), preset="none", **overrides)
