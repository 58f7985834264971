"""Deep Image Table 1: the number of possible changes of each active transform.

Counts are of distinct non-identity outcomes of the discrete parameter spaces the engine samples from
(``minwa.augment.params``), so that a test can pin the engine to the paper:

- colour casting: each of R, G, B unchanged or shifted by an integer in [-r, r]: (2r + 1)^3 - 1 = 68,920
- vignetting: strength levels x radii = 40 x 49 = 1,960
- lens distortion: 4 kinds (barrel, pincushion, horizontal, vertical stretch) x 65 degrees = 260
- rotation: +-1 .. +-10 degrees = 20; flipping: 2
- cropping: window offsets {0 .. S-C-1}^2 = 288^2 = 82,944 for a 224 crop of a 512 image (translation
  widens each axis by 2t positions)
"""

from __future__ import annotations

from minwa.augment.config import AugmentConfig
from minwa.augment.params import LENS_KINDS
from minwa.augment.presets import apply_preset


def table1_counts(cfg: AugmentConfig, scale: int, crop: int) -> dict[str, int]:
    """``{transform: number of possible changes}`` for the transforms ``cfg`` (preset resolved) switches on."""
    cfg = apply_preset(cfg)
    counts: dict[str, int] = {}
    if cfg.color_cast:
        counts["color_casting"] = (2 * cfg.cast_range + 1) ** 3 - 1
    if cfg.vignette:
        counts["vignetting"] = cfg.vignette_strengths * cfg.vignette_radii
    if cfg.lens:
        counts["lens_distortion"] = len(LENS_KINDS) * cfg.lens_degrees
    if cfg.rotation > 0:
        counts["rotation"] = 2 * cfg.rotation
    if cfg.flip:
        counts["flipping"] = 2
    per_axis = (max(scale - crop, 1) if cfg.random_crop else 1) + 2 * cfg.translate
    if per_axis > 1:
        counts["cropping"] = per_axis**2
    return counts
