"""minwa's augmentation engine: Deep Image Table 1 + AlexNet, batched, one warp and one pass per batch.

``Augmenter(cfg, out_size, mean, std)`` (train: ``aug(images_uint8, indices, epoch, seed)``, eval:
``aug.eval(images_uint8)``), ``apply_preset(cfg)``, ``table1_counts(cfg, scale, crop)`` and the PCA
lighting helpers. See docs/ARCHITECTURE.md, "Augmentation". Names are imported on first use, so that
reading ``AugmentConfig`` does not pull in torch.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "AugmentConfig": "minwa.augment.config",
    "PRESETS": "minwa.augment.config",
    "table1_counts": "minwa.augment.counts",
    "Augmenter": "minwa.augment.engine",
    "AugmentParams": "minwa.augment.params",
    "identity_params": "minwa.augment.params",
    "sample_params": "minwa.augment.params",
    "PCA_FILENAME": "minwa.augment.pca",
    "compute_pca_lighting": "minwa.augment.pca",
    "imagenet_pca": "minwa.augment.pca",
    "load_pca": "minwa.augment.pca",
    "save_pca": "minwa.augment.pca",
    "apply_preset": "minwa.augment.presets",
    "preset_config": "minwa.augment.presets",
})
