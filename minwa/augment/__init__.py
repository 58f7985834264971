"""minwa's augmentation engine: Deep Image Table 1 + AlexNet, batched, one warp and one pass per batch.

``Augmenter(cfg, out_size, mean, std)`` (train: ``aug(images_uint8, indices, epoch, seed)``, eval:
``aug.eval(images_uint8)``), ``apply_preset(cfg)``, ``table1_counts(cfg, scale, crop)`` and the PCA
lighting helpers. See docs/ARCHITECTURE.md, "Augmentation".
"""

from minwa.augment.config import AugmentConfig
from minwa.augment.counts import table1_counts
from minwa.augment.engine import Augmenter
from minwa.augment.params import AugmentParams, identity_params, sample_params
from minwa.augment.pca import PCA_FILENAME, compute_pca_lighting, imagenet_pca, load_pca, save_pca
from minwa.augment.presets import PRESETS, apply_preset, preset_config

__all__ = [
    "AugmentConfig", "AugmentParams", "Augmenter", "PCA_FILENAME", "PRESETS", "apply_preset",
    "compute_pca_lighting", "identity_params", "imagenet_pca", "load_pca", "preset_config", "sample_params",
    "save_pca", "table1_counts",
]
