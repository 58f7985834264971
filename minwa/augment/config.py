"""Augmentation settings (owned by the augment stage). Presets fill these; every field can be overridden.

Each transform has a switch and its ranges; the defaults of the ranges reproduce Table 1 of Deep Image
(see ``minwa.augment.counts``). A transform that is switched on is applied to a sample with its own
probability ``p_*``; "the number of possible changes" counts only the non-identity outcomes.
``check(cfg)`` is the one place these settings are validated (before any data is read).
"""

from dataclasses import dataclass, replace

from minwa.errors import check_rules

FILLS = ("surround", "reflect", "border", "zeros")


@dataclass
class AugmentConfig:
    preset: str = "none"  # deepimage | alexnet | fashion | none: fills the fields below (see presets)
    flip: bool = False  # horizontal flip with probability 1/2
    translate: int = 0  # +-pixels of random translation (AlexNet translations; pad-and-crop for small images)
    random_crop: bool = True  # train crop offset drawn uniformly inside the input (False: centre crop)
    color_cast: bool = False  # each of R,G,B altered with prob. 1/2 by an integer in [-cast_range, cast_range]
    cast_range: int = 20
    vignette: bool = False  # darkening toward the periphery: random radius and random strength
    vignette_strengths: int = 40  # strength levels k/N * vignette_max (k = 1..N): brightness lost at the corner
    vignette_max: float = 0.6
    vignette_radii: int = 49  # radii where darkening starts, evenly spaced in [0, vignette_max_radius]
    vignette_max_radius: float = 0.8  # as a fraction of the centre-to-corner distance
    p_vignette: float = 0.5
    lens: bool = False  # barrel / pincushion / horizontal / vertical stretch, random degree
    lens_degrees: int = 65  # degree levels k/N * max (k = 1..N) per kind
    lens_max: float = 0.25  # largest |k| in v <- v (1 + k |v|^2) (|v| = 1 at the middle of an edge)
    stretch_max: float = 0.25  # largest stretch: one axis scaled by 1 + s
    p_lens: float = 0.5
    rotation: int = 0  # max |degrees| (1..rotation, either sign); 0 = off
    p_rotation: float = 0.5
    pca_lighting: float = 0.0  # AlexNet RGB intensity noise, std of alpha (0.1 in the paper); 0 = off
    pca_file: str = ""  # eigvals/eigvecs JSON from minwa.augment.pca (empty: AlexNet's ImageNet values)
    # what rotation/distortion/translation reach outside the crop: reflect and surround show the real scaled
    # image around the crop and, past the image's own edge, mirror it (reflect) or repeat its edge pixels
    # (surround); border repeats the crop's edge pixels; zeros is black
    fill: str = "reflect"
    erase: float = 0.0  # probability of random erasing (cutout) of one rectangle per image
    erase_max: float = 0.4  # largest erased side, as a fraction of the output side
    # batch-level mixing with soft targets (minwa.augment.mix), after the transforms above; off in every preset
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha) blend weight (0 = off; 0.2-0.8 usual)
    cutmix: float = 0.0  # alpha of CutMix's Beta(alpha, alpha) kept area (0 = off; 1.0 usual); both on: each half
    p_mix: float = 1.0  # probability that a sample is mixed (with mixup or cutmix on)

    def with_preset(self, name: str) -> "AugmentConfig":
        """This config with preset ``name`` written out: every field some preset governs takes ``name``'s
        value (or its default), and ``preset`` becomes "none", so nothing resolves it again. Settings applied
        after this (a file, ``--set``) win, also when they set a field back to its default
        (``augment.lens=false`` under ``deepimage``); the saved config shows exactly what ran."""
        check_rules([(name in PRESETS, f"unknown augmentation preset '{name}' (known: {', '.join(PRESETS)})")])
        defaults = AugmentConfig()
        governed = {k for fields in PRESETS.values() for k in fields}
        changes = {k: PRESETS[name].get(k, getattr(defaults, k)) for k in governed}
        return replace(self, preset="none", **changes)


# Named recipes (``preset``): the fields each fills; resolved by ``minwa.augment.presets.apply_preset``.
PRESETS: dict[str, dict] = {
    "none": {},
    # Deep Image Table 1: colour cast, vignetting, lens distortion, rotation, flip, crop; corners of the
    # rotated / distorted crop show the picture around the crop, mirrored only past the image's edge
    "deepimage": dict(flip=True, random_crop=True, color_cast=True, cast_range=20, vignette=True, lens=True,
                      rotation=10, fill="reflect"),
    # AlexNet: translations (random crops, e.g. 224 of 256) and reflections, plus PCA lighting (sigma 0.1)
    "alexnet": dict(flip=True, random_crop=True, pca_lighting=0.1),
    # Fashion-MNIST 28x28 grey: flip + +-2 px pad-and-crop translation on the black background
    "fashion": dict(flip=True, translate=2, fill="zeros"),
}


def check(cfg: AugmentConfig) -> AugmentConfig:
    """Reject impossible augmentation settings, each in one sentence, before any data is read (presets only
    set valid values, so the unresolved config is checked)."""
    probabilities = {"p_vignette": cfg.p_vignette, "p_lens": cfg.p_lens, "p_rotation": cfg.p_rotation,
                     "erase": cfg.erase, "p_mix": cfg.p_mix}
    levels = {"vignette_strengths": cfg.vignette_strengths, "vignette_radii": cfg.vignette_radii,
              "lens_degrees": cfg.lens_degrees}
    check_rules([
        (cfg.preset in PRESETS, f"unknown augmentation preset '{cfg.preset}' (known: {', '.join(PRESETS)})"),
        (cfg.fill in FILLS, f"augment.fill must be one of {', '.join(FILLS)}, got '{cfg.fill}'"),
        (min(cfg.translate, cfg.rotation, cfg.cast_range) >= 0,
         "augment.translate, augment.rotation and augment.cast_range must not be negative"),
        *((0 <= p <= 1, f"augment.{k} is a probability in [0, 1], got {p}") for k, p in probabilities.items()),
        *((n >= 1, f"augment.{k} must be at least 1, got {n}") for k, n in levels.items()),
        (cfg.mixup >= 0 and cfg.cutmix >= 0, "augment.mixup and augment.cutmix are Beta alphas: 0 (off) or positive"),
        (cfg.pca_lighting >= 0, f"augment.pca_lighting must not be negative, got {cfg.pca_lighting}"),
        (0 < cfg.erase_max <= 1, f"augment.erase_max is a fraction in (0, 1], got {cfg.erase_max}"),
    ])
    return cfg
