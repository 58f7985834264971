"""Named augmentation recipes: each returns the fields it sets; ``apply_preset`` resolves a config.

A preset fills every field it names; a field the user set to something other than its dataclass default
wins over the preset (so ``augment.preset=deepimage augment.rotation=5`` means "Deep Image, but +-5 degrees").
A field cannot be overridden *back to* its default this way; start from ``preset="none"`` for that.
"""

from __future__ import annotations

import dataclasses

from minwa.augment.config import AugmentConfig
from minwa.errors import MinwaError

PRESETS: dict[str, dict] = {
    "none": {},
    # Deep Image Table 1: colour cast, vignetting, lens distortion, rotation, flip, crop; corners of the
    # rotated / distorted crop reflected from the crop itself ("all augmentations act on the crop")
    "deepimage": dict(flip=True, random_crop=True, color_cast=True, cast_range=20, vignette=True, lens=True,
                      rotation=10, fill="reflect"),
    # AlexNet: translations (random crops, e.g. 224 of 256) and reflections, plus PCA lighting (sigma 0.1)
    "alexnet": dict(flip=True, random_crop=True, pca_lighting=0.1),
    # Fashion-MNIST 28x28 grey: flip + +-2 px pad-and-crop translation on the black background
    "fashion": dict(flip=True, translate=2, fill="zeros"),
}


def apply_preset(cfg: AugmentConfig) -> AugmentConfig:
    """``cfg`` with its preset's fields filled in (idempotent; fields the user changed are kept)."""
    if cfg.preset not in PRESETS:
        raise MinwaError(f"unknown augmentation preset '{cfg.preset}' (known: {', '.join(PRESETS)})")
    defaults = AugmentConfig()
    changes = {k: v for k, v in PRESETS[cfg.preset].items() if getattr(cfg, k) == getattr(defaults, k)}
    return dataclasses.replace(cfg, **changes)


def preset_config(name: str, **overrides) -> AugmentConfig:
    """A resolved config for preset ``name`` with ``overrides`` applied last (any value, defaults included).

    Every field is explicit in the result, so its ``preset`` is ``"none"``: resolving it again (as
    ``Augmenter`` does) cannot undo an override back to a default, such as ``lens=False``.
    """
    return dataclasses.replace(apply_preset(AugmentConfig(preset=name)), preset="none", **overrides)
