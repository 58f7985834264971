"""Augmentation settings (owned by the augment stage). Presets fill these; every field can be overridden.

Each transform has a switch and its ranges; the defaults of the ranges reproduce Table 1 of Deep Image
(see ``minwa.augment.counts``). A transform that is switched on is applied to a sample with its own
probability ``p_*``; "the number of possible changes" counts only the non-identity outcomes.
"""

from dataclasses import dataclass


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
    fill: str = "reflect"  # area outside the crop reached by rotation/distortion/translation: surround | reflect | border | zeros
    erase: float = 0.0  # probability of random erasing (cutout) of one rectangle per image
    erase_max: float = 0.4  # largest erased side, as a fraction of the output side
