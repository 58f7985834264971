"""Recipes: functions that return a complete :class:`TrainConfig`. Files and the command line override.

No recipe names any data: ``data.train`` (and ``data.val``, else ``data.val_fraction`` of the training set)
are the user's. Without ``--recipe``, ``minwa train`` picks one from the data (``recipe_for_data``):
``fashion`` for small images all of one size (Fashion-MNIST's IDX files or their shards), ``photos`` for
anything else (a folder of JPEGs). ``fashion``: a small VGG-style net tuned for time to accuracy on a
2-core CPU. ``photos``: the same net on a few hundred to a few thousand colour photographs. ``deepimage16`` /
``deepimage19`` are the paper's (§5.1): SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 on
plateau, one model per scale S with random 224 crops and the full Table 1 augmentation. ``finetune`` is
§5.1's fine-tuning: lr 0.001 → 0.0001, the geometry of the checkpoint it starts from.
"""

from __future__ import annotations

import dataclasses

from minwa.augment.config import AugmentConfig
from minwa.data.config import DataConfig
from minwa.errors import MinwaError
from minwa.models.config import ModelConfig
from minwa.train.config import OptimConfig, TrainConfig
from minwa.utils.runtime_config import RuntimeConfig

def fashion() -> TrainConfig:
    """Fashion-MNIST, 28 px: 60,000 images / 256 per step = 234 steps per epoch; 14 epochs = 3,276 steps.

    Measured on the 2-core CPU: ~4,500 images/s (bf16 autocast on a CPU with bf16 units, channels_last), 93% test accuracy after
    ~9 epochs (~130 s), ~94.5% after 14 (~200 s). Peak lr 0.2 per 256 images, one-cycle (1 epoch warm-up,
    linear decay to 0), Nesterov momentum, label smoothing 0.1, flip + ±2 px translation, flip-averaged
    validation.
    """
    return TrainConfig(
        recipe="fashion",
        out="runs/fashion",
        epochs=14,
        runtime=RuntimeConfig(precision="auto"),  # bf16 where the device has bf16 units, else fp32/fp16
        eval_every=1.0,
        eval_flip=True,
        data=DataConfig(batch_size=256, cache="auto"),
        augment=AugmentConfig().with_preset("fashion"),
        model=ModelConfig(name="fashion-net"),
        optim=OptimConfig(name="sgd", lr=0.2, lr_batch=256, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          decay_norm_bias=False, schedule="onecycle", warmup_epochs=1.0, final_lr_frac=0.0,
                          label_smoothing=0.1, ema=0.0),
    )


def deepimage(model: str = "deepimage16", scale: int = 256) -> TrainConfig:
    """The paper's recipe at one scale S (256 or 512 in the paper): S -> random 224 crop, Table 1 augmentation."""
    return TrainConfig(
        recipe=f"{model}-{scale}",
        out=f"runs/{model}-{scale}",
        epochs=90,
        runtime=RuntimeConfig(precision="auto"),  # bf16 where the device has bf16 units, else fp32/fp16
        data=DataConfig(scale=scale, crop=224, batch_size=256, workers=8, cache="auto"),
        augment=AugmentConfig().with_preset("deepimage"),
        model=ModelConfig(name=model),
        optim=OptimConfig(name="sgd", lr=0.01, lr_batch=256, momentum=0.9, weight_decay=5e-4, schedule="plateau",
                          plateau_patience=2),
    )


def photos() -> TrainConfig:
    """A folder of photographs (hundreds to a few thousand JPEGs of any size), trained from scratch on a
    2-core CPU in minutes: ``fashion-net`` (0.29M weights, global pooling, so any input size) on colour
    squares with the shorter side at S = 72 and random 64 crops, the square itself placed anywhere along
    the long side (``data.square``); AlexNet's augmentation (flip, crop, PCA lighting: lighter than Table 1,
    whose distortions a few hundred images and a 0.3M-weight net gain nothing from); small-data batches of
    32, so 295 images take 9 steps per epoch (a batch of 256 would take one and leave 39 out).

    lr 0.1 per 256 images = 0.0125 at batch 32, one-cycle over 15 epochs (2 warm-up), Nesterov, label
    smoothing 0.1, precision auto (fp32 on a CPU without bf16 units, which runs bf16 13x slower). ResNet-18 at
    64 px took 65 s per epoch against this net's 17 on the shared 2 cores. Measured on the photo_folder fixture in docs/BENCHMARKS.md ("Your own photographs").
    """
    return TrainConfig(
        recipe="photos",
        out="runs/photos",
        epochs=15,
        runtime=RuntimeConfig(precision="auto"),  # fp32 on a CPU without bf16 units
        eval_every=1.0,
        eval_flip=True,
        data=DataConfig(scale=72, crop=64, batch_size=32, workers=2, cache="auto"),
        augment=AugmentConfig().with_preset("alexnet"),
        model=ModelConfig(name="fashion-net"),
        optim=OptimConfig(name="sgd", lr=0.1, lr_batch=256, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          decay_norm_bias=False, schedule="onecycle", warmup_epochs=2.0, final_lr_frac=0.0,
                          label_smoothing=0.1),
    )


def finetune(base: TrainConfig | None = None, mode: str = "fc") -> TrainConfig:
    """§5.1 fine-tuning: all layers, the last three FC layers, or the softmax only.

    The paper trains at lr 0.01 and fine-tunes from 0.001 down to 0.0001: a tenth of the training rate,
    decayed tenfold. The same ratios are applied to the base recipe's rate (for the paper's recipes this
    is exactly 0.001 → 0.0001). The base (``photos`` unless given: ``recipe_for_data`` picks it for the
    data) gives the augmentation and the batch; the scale and crop are left to the checkpoint (``data.scale
    = 0``: ``minwa.train.build.input_geometry`` reads them from its sidecar), as are the model and the
    input mean/std.
    """
    cfg = base or photos()
    return dataclasses.replace(
        cfg, recipe=f"{cfg.recipe}-finetune", finetune=mode,
        data=dataclasses.replace(cfg.data, scale=0, crop=0),
        optim=dataclasses.replace(cfg.optim, lr=cfg.optim.lr / 10, schedule="linear", warmup_epochs=0.0,
                                  final_lr_frac=0.1),
    )


RECIPES = {
    "fashion": fashion,
    "photos": photos,
    "deepimage16-256": lambda: deepimage("deepimage16", 256),
    "deepimage16-512": lambda: deepimage("deepimage16", 512),
    "deepimage19-256": lambda: deepimage("deepimage19", 256),
    "resnet50": lambda: dataclasses.replace(deepimage("resnet50", 256), recipe="resnet50", out="runs/resnet50"),
    "finetune": finetune,
}
SMALL_IMAGES = 64  # px: images all of one size up to this are Fashion-MNIST-like (CIFAR's 32 too)


def get_recipe(name: str, data: str = "") -> TrainConfig:
    """Recipe ``name``; ``finetune`` starts from the recipe that fits ``data`` (``recipe_for_data``)."""
    if name not in RECIPES:
        raise MinwaError(f"unknown recipe '{name}' (known: {', '.join(RECIPES)})")
    if name == "finetune" and data:
        return finetune(RECIPES[recipe_for_data(data)[0]]())
    return RECIPES[name]()


def recipe_for_data(path: str) -> tuple[str, str]:
    """(recipe name, why) for the training data at ``path``: ``fashion`` for images all of one small size
    (known without decoding: IDX files, shards), ``photos`` for anything else. Data that cannot be opened (or none named) gives ``photos`` and no
    reason: the trainer then says what is wrong with it, after the settings are checked."""
    from minwa.data import open_dataset  # reads the data: numpy, only when a recipe is chosen for data

    try:
        ds = open_dataset(path, split="train") if path else None
    except MinwaError:
        ds = None
    if ds is None:
        return "photos", ""
    size = ds.image_size()
    if size is not None and max(size) <= SMALL_IMAGES:
        return "fashion", f"{'grey ' if ds.channels == 1 else ''}{size[1]}x{size[0]} images, like Fashion-MNIST's"
    return "photos", "photographs" if size is None else f"{size[1]}x{size[0]} images"
