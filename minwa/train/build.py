"""Building a run's pieces from their own sub-configs: the runtime (seed), the data's
geometry and normalisation, the model (from the registry or a checkpoint to fine-tune) and the loss.

Each builder takes its section of the config and runtime objects only, so the trainer composes them
and a benchmark or a notebook can call any one alone.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from minwa.data import open_dataset
from minwa.data.config import DataConfig
from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.models.config import ModelConfig
from minwa.models.finetune import freeze_for_finetune
from minwa.models.registry import model_accepts
from minwa.pretrained.init import load_init
from minwa.train.config import OptimConfig
from minwa.utils.words import plural


# ---------------------------------------------------------------- runtime

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- data

def open_split(path: str, split: str):
    if not path:
        raise MinwaError(f"no {split} data given: set --data (or data.{'train' if split == 'train' else 'val'})")
    return open_dataset(path, split=split)


def input_geometry(cfg: DataConfig, dataset, init_meta: dict | None = None) -> tuple[int, int]:
    """(scale S handed over by the loader, crop C fed to the network). A scale or crop of 0 is the
    checkpoint's being fine-tuned (``init_meta``: what it was trained on, which its head may be sized
    for), else the images' own size (all one size, as Fashion-MNIST's)."""
    init_meta = init_meta or {}
    scale = cfg.scale or init_meta.get("scale") or 0
    if not scale:
        native = dataset.image_size()
        if native is None and not cfg.crop:
            raise MinwaError(f"the images in {dataset.path} differ in size: set data.scale (the shorter side they "
                             "are resized to, e.g. 128) and data.crop")
        scale = min(native) if native is not None else cfg.crop
    crop = cfg.crop or (init_meta.get("crop") if not cfg.scale else 0) or scale
    if crop > scale:
        raise MinwaError(f"crop {crop} is larger than scale {scale}")
    return scale, crop


def small_data_note(images: int, batch_size: int, steps: int) -> str:
    """A sentence when the global batch is too large for the training set (one step per epoch, or over a
    tenth of the images left out of every epoch by ``drop_last``), else ''."""
    left = images - steps * batch_size
    if steps >= 2 and left <= images / 10:
        return ""
    fit = max(1, 2 ** int(np.log2(max(1, images // 8))))  # a power of two giving ~8 or more steps per epoch
    dropped = f", {plural(left, 'image')} left out of each" if left else ""
    return (f"{images:,} training images in global batches of {batch_size}: {plural(steps, 'step')} per "
            f"epoch{dropped}; set data.batch_size={fit} (or lower) for a set this small")


def class_weights(mode: str, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """The loss weight of each class: None (``none``), or ``balanced`` = N / (K * n_c) from the training
    set's counts (sklearn's rule: every class weighs as much in total; 0 for a class without images)."""
    if mode == "none":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def build_criterion(cfg: OptimConfig, labels: np.ndarray, num_classes: int, device) -> nn.Module:
    """Cross-entropy summed over the batch (the trainer divides by the global batch), with the label
    smoothing and class weights of ``cfg``; the same on every rank, so ranks stay exact."""
    weight = class_weights(cfg.class_weights, labels, num_classes)
    return nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device), reduction="sum",
                               label_smoothing=cfg.label_smoothing)


@torch.no_grad()
def estimate_mean_std(loader, max_batches: int = 8, dims=None) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the training images on the first ``max_batches`` global batches, in 0..1
    units. Each rank sums its slice and one all-reduce adds the sums, so every rank, and any number of
    ranks, gets the one-process figures (the sums are exact in float64: integers / 255 squared)."""
    sums = None
    for i, batch in enumerate(loader):
        x = batch.images.to(torch.float64)
        part = torch.stack([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)),
                            torch.full((x.shape[1],), x.numel() / x.shape[1], dtype=torch.float64, device=x.device)])
        sums = part if sums is None else sums + part
        if i + 1 >= max_batches:
            break
    sums = sums.cpu()
    if dims is not None:
        sums = dims.all_reduce_sum(sums)
    s, s2, n = sums / torch.tensor([255.0, 255.0**2, 1.0], dtype=torch.float64)[:, None]
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


# ---------------------------------------------------------------- model

def model_kwargs(cfg: ModelConfig, crop: int) -> dict:
    """The config's constructor kwargs, plus ``img_size`` = crop for FC-headed models that size their head by it."""
    kwargs = dict(cfg.kwargs)
    if "img_size" not in kwargs and model_accepts(cfg.name, "img_size"):
        kwargs["img_size"] = crop
    return kwargs


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int, device, dtype, crop: int = 0, *,
                init: str = "", finetune: str = "all", channels_last: bool = False):
    """Create from the registry, or from ``init`` (fine-tuning: a minwa checkpoint, or torchvision/timm
    weights imported by ``minwa.pretrained``) with a new head when the classes differ; ``finetune`` (fc | head) freezes the rest; ``channels_last`` (``runtime``) lays the
    weights out NHWC. ``(model, trainable params or None, init meta)``."""

    init_meta = None
    if init:
        model, init_meta = load_init(init, "cpu")
        if init_meta.get("in_chans", 3) != in_chans:
            raise MinwaError(f"--init checkpoint takes {init_meta.get('in_chans')} channels, the data have {in_chans}")
        if init_meta["num_classes"] != num_classes:

            model.reset_head(num_classes)
        model.train()
    else:
        model = create_model(cfg.name, num_classes=num_classes, in_chans=in_chans,
                             **model_kwargs(cfg, crop))
    model = model.to(device=device, dtype=dtype)
    if channels_last and device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    trainable = None
    if init and finetune != "all":

        trainable = freeze_for_finetune(model, finetune)
    return model, trainable, init_meta
