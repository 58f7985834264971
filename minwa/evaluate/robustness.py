"""Robustness curves (Deep Image §4, Figure 9): accuracy on a test set corrupted at graded severities.

Each corruption family is one transform at a *fixed* magnitude per severity (severity 0 = clean). The four
families training augments with (colour cast, vignetting, lens distortion, rotation) are minwa's own
augmentation — ``Augmenter.apply`` with parameters built here instead of drawn — so a corruption is
exactly the training transform at a chosen strength, past the training range at the top severities.
Blur and JPEG quality are families no preset trains on.

Where: each test image becomes the test scale's S x S square (``preprocess.resize``, as evaluation
makes it), corrupted, and cut to the model's centre C x C crop — the window, rotation centre,
lens radius and vignette all relative to the crop the network sees, as in training. ``Corrupted`` is that
as a data set of C x C uint8 images, so ``evaluate(cfg, dataset=Corrupted(...))`` at scale C scores it
unchanged. Severity 0 is scored on the untouched data set at scale S: exactly the clean evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from minwa.augment.config import AugmentConfig, check
from minwa.augment.engine import Augmenter
from minwa.augment.params import AugmentParams, identity_params
from minwa.data import decode
from minwa.data.sources import ImageDataset
from minwa.errors import MinwaError, check_rules
from minwa.evaluate.config import EvalConfig
from minwa.evaluate.ensemble import load_members
from minwa.evaluate.pipeline import evaluate
from minwa.evaluate.preprocess import centre_crop, resize
from minwa.utils.atomic import atomic_save_figure
from minwa.utils.runtime_config import RuntimeConfig

VIGNETTE_RADIUS = 0.0  # darkening starts at the centre (a grid value of training's radii: 0 .. 0.8)
FILL = "reflect"  # the deepimage preset's: rotated / distorted corners show the real picture around the crop
# (Fashion-MNIST's black backgrounds: fill="zeros", as the fashion preset trains)
BACKEND = "torch"  # one image at a time: PyTorch ops (the numba kernel, equal to within rounding, pays off on batches)


@dataclasses.dataclass(frozen=True)
class Family:
    """One corruption: its magnitudes by severity (index 0 is clean), their unit, and whether the
    ``deepimage`` preset trains on it (its largest training magnitude, for the plot)."""

    levels: tuple
    unit: str
    trained: float | None = None  # the training range's largest magnitude; None: training never saw it


# Severities 1-2 lie inside (or at the edge of) deepimage's training range, 3-4 beyond it.
CORRUPTIONS: dict[str, Family] = {
    # R +d, B -d grey levels (a warm cast); training: each channel +-20 with probability 1/2
    "colour cast": Family((0, 10, 20, 40, 60), "grey levels (R +d, B -d)", 20),
    # brightness lost at the corners, darkening from the centre; training: up to 0.6
    "vignetting": Family((0.0, 0.15, 0.3, 0.6, 0.9), "strength (lost at the corners)", 0.6),
    # barrel k of v <- v (1 + k|v|^2), |v| = 1 at the middle of the crop's edge; training: |k| up to 0.25
    "lens distortion": Family((0.0, 0.1, 0.25, 0.4, 0.6), "barrel k", 0.25),
    # training: +-1..10 degrees
    "rotation": Family((0, 5, 10, 20, 30), "degrees", 10),
    # Gaussian blur, sigma as a fraction of the crop side (0.02 of 224 px: 4.5 px)
    "blur": Family((0.0, 0.005, 0.01, 0.02, 0.03), "sigma / crop side"),
    # JPEG re-encoding of the scaled image at this quality (0: none)
    "jpeg": Family((0, 50, 25, 15, 8), "quality"),
}

_SWITCH = {"colour cast": dict(color_cast=True), "vignetting": dict(vignette=True),
           "lens distortion": dict(lens=True), "rotation": dict(rotation=1)}


def augment_config(family: str, fill: str = FILL) -> AugmentConfig:
    """The engine's settings for a trained family: only its switch on (ranges unused: nothing is drawn)."""
    return check(AugmentConfig(random_crop=False, fill=fill, **_SWITCH[family]))


def fixed_params(family: str, value: float, in_hw: tuple[int, int], crop: int) -> AugmentParams:
    """Parameters of one image: the centre ``crop`` window of an ``in_hw`` image with ``family`` at ``value``
    (in the units of ``CORRUPTIONS``; converted to the engine's as ``sample_params`` converts its draws)."""
    p = identity_params(1, in_hw, crop)
    v = torch.tensor([value], dtype=torch.float32)
    if family == "colour cast":
        p.offset = torch.stack([v, v * 0, -v], 1)
    elif family == "vignetting":
        p.vig_strength, p.vig_radius = v, torch.full_like(v, VIGNETTE_RADIUS)
    elif family == "lens distortion":
        p.radial = v
    elif family == "rotation":
        p.angle = v * (math.pi / 180.0)
    else:
        raise MinwaError(f"'{family}' is not a family of the augmentation engine")
    return p


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float C x H x W in 0..255 -> uint8 H x W x C, rounded."""
    return x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def scaled_uint8(image: np.ndarray, scale: int) -> torch.Tensor:
    """uint8 1 x C x S x S: ``image`` (H x W x C) as evaluation's square at ``scale`` (``preprocess.resize``,
    the one test-time path)."""
    return resize(np.ascontiguousarray(image), scale)[None]


def apply_corruption(image: np.ndarray, family: str, value: float, scale: int, crop: int,
                     fill: str = FILL) -> np.ndarray:
    """``image`` (uint8 H x W x C) at test scale ``scale`` with ``family`` at magnitude ``value`` (0: none),
    cut to the centre ``crop``: crop x crop x C uint8. ``fill``: what rotation and lens distortion show
    past the image's edge (``AugmentConfig.fill``)."""
    scaled = scaled_uint8(image, scale)
    if family in _SWITCH:
        aug = Augmenter(augment_config(family, fill), crop, mean=0.0, std=1.0, backend=BACKEND)
        return to_uint8(aug.apply(scaled, fixed_params(family, value, tuple(scaled.shape[-2:]), crop))[0] * 255.0)
    arr = scaled[0].permute(1, 2, 0).numpy()
    if value and family == "blur":
        pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        arr = np.asarray(pil.filter(ImageFilter.GaussianBlur(value * crop)))
        arr = arr if arr.ndim == 3 else arr[:, :, None]
    elif value and family == "jpeg":
        arr = decode.decode_jpeg(decode.encode_jpeg(arr, int(value)), arr.shape[2])
    elif value:
        raise MinwaError(f"unknown corruption '{family}' (known: {', '.join(CORRUPTIONS)})")
    return to_uint8(centre_crop(torch.from_numpy(np.array(arr)).permute(2, 0, 1), crop).float())


def corrupt(image: np.ndarray, family: str, severity: int, scale: int, crop: int, fill: str = FILL) -> np.ndarray:
    """``apply_corruption`` at ``family``'s magnitude for ``severity`` (0: clean, only resized and cropped)."""
    check_corruption(family, severity)
    return apply_corruption(image, family, CORRUPTIONS[family].levels[severity], scale, crop, fill)


class Corrupted(ImageDataset):
    """``base`` seen at test scale ``scale`` through ``family`` at ``severity``, cut to the centre ``crop``:
    C x C uint8 images with ``base``'s labels and classes (evaluate it at scale ``crop``)."""

    kind = "corrupted"

    def __init__(self, base: ImageDataset, family: str, severity: int, scale: int, crop: int, fill: str = FILL):
        check_corruption(family, severity)
        augment_config("rotation", fill)  # an unknown fill is one sentence here, before any image is read
        if scale < crop:
            raise MinwaError(f"test scale {scale} is smaller than the model's {crop}x{crop} crop")
        self.base, self.family, self.severity = base, family, severity
        self.scale, self.crop, self.fill = scale, crop, fill
        self.path, self.split, self.channels = base.path, base.split, base.channels
        self.classes, self.labels, self.skipped = list(base.classes), np.asarray(base.labels), []

    def image(self, i: int, min_side: int | None = None) -> np.ndarray:
        return corrupt(self.base.image(i, min_side=self.scale), self.family, self.severity, self.scale, self.crop,
                       self.fill)

    def image_size(self):
        return (self.crop, self.crop)

    def source(self, i: int) -> str:
        return f"{self.base.source(i)} ({self.family} {self.severity})"

    def describe(self) -> str:
        return f"{self.base.describe()} through {self.family} at severity {self.severity}"


def check_corruption(family: str, severity: int) -> None:
    check_rules([(family in CORRUPTIONS, f"unknown corruption '{family}' (known: {', '.join(CORRUPTIONS)})")])
    top = len(CORRUPTIONS[family].levels) - 1
    check_rules([(0 <= severity <= top, f"{family} has severities 0..{top}, got {severity}")])


def robustness_curves(ckpts: dict[str, str], dataset: ImageDataset, *, families=None, severities=None,
                      scale: int | None = None, batch_size: int = 64, limit: int | None = None,
                      device: str = "cpu", flip: bool = False, threads: int = 0, fill: str = FILL,
                      precision: str = RuntimeConfig.precision) -> dict:
    """Top-1 accuracy of each model (``ckpts``: name -> checkpoint) on ``dataset`` under each corruption
    family at each severity, at test scale ``scale`` (default: each model's training scale) on the first
    ``limit`` images (``threads``: torch's, 0 = as set; ``fill``: see ``apply_corruption``; ``precision``:
    ``minwa eval``'s default, so severity 0 is exactly the clean evaluation: pinned to fp32 it differed
    from it on a CPU with bf16 units, where ``auto`` is bf16). JSON-ready:
    ``accuracy[model][family]`` is a list over ``severities``; the clean accuracy (severity 0) is one
    evaluation shared by every family."""
    t0 = time.perf_counter()
    families = [families] if isinstance(families, str) else list(families or CORRUPTIONS)
    severities = sorted(set(severities if severities is not None else range(len(CORRUPTIONS[families[0]].levels))))
    for f in families:
        for s in severities:
            check_corruption(f, s)
    augment_config("rotation", fill)  # an unknown fill: one sentence before any checkpoint is read
    if not ckpts:
        raise MinwaError("robustness_curves needs at least one checkpoint")
    members = load_members(list(ckpts.values()), device)
    for name, m in zip(ckpts, members):
        m.name = name
    n = len(dataset) if not limit else min(limit, len(dataset))
    runtime = RuntimeConfig(device=device, precision=precision, threads=threads)
    groups = defaultdict(list)  # models that see the same corrupted images share each evaluation
    for m in members:
        groups[(scale or m.scale, m.crop)].append(m)
    accuracy = {name: {f: [None] * len(severities) for f in families} for name in ckpts}
    for (s, c), group in groups.items():
        def score(data, test_scale):
            cfg = EvalConfig(scales=[test_scale], flip=flip, batch_size=batch_size, limit=n, runtime=runtime)
            rows = evaluate(cfg, members=group, dataset=data).rows
            want = f" @{test_scale}" + (" +flip" if flip else "")
            return {r["member"]: 1.0 - r["top1_error"] for r in rows if r["name"] == f"{r['member']}{want}"}

        clean = score(dataset, s) if 0 in severities else {}
        for f in families:
            for j, sev in enumerate(severities):
                got = clean if sev == 0 else score(Corrupted(dataset, f, sev, s, c, fill), c)
                for m in group:
                    accuracy[m.name][f][j] = got[m.name]
    return {
        "severities": severities,
        "families": {f: {"levels": [CORRUPTIONS[f].levels[s] for s in severities], "unit": CORRUPTIONS[f].unit,
                         "trained_up_to": CORRUPTIONS[f].trained} for f in families},
        "models": {m.name: {"checkpoint": str(p), "scale": scale or m.scale, "crop": m.crop}
                   for m, p in zip(members, ckpts.values())},
        "images": n, "flip": flip, "fill": fill, "accuracy": accuracy,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def plot_robustness(result: dict, png_path, title: str = "") -> Path:
    """One PNG: a panel per family, top-1 accuracy against severity, a line per model; the families
    training augments with are marked with the severities inside the training range shaded."""
    import matplotlib  # heavy (~0.3 s): only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families, sev = list(result["families"]), result["severities"]
    cols = min(3, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, f in zip(axes.flat, families):
        info = result["families"][f]
        for name, acc in result["accuracy"].items():
            ax.plot(sev, [a if a is not None else np.nan for a in acc[f]], marker="o", label=name)
        top = info["trained_up_to"]
        inside = [s for s, v in zip(sev, info["levels"]) if top is not None and v <= top]
        if inside:
            ax.axvspan(min(inside) - 0.3, max(inside) + 0.3, color="0.92", zorder=0)
        ax.set_title(f + ("" if info["trained_up_to"] is not None else " (never trained on)"), fontsize=10)
        ax.set_xticks(sev, [f"{s}\n{_fmt(v)}" for s, v in zip(sev, info["levels"])], fontsize=8)
        ax.set_xlabel(f"severity / {info['unit']}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(families):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 accuracy")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or f"robustness: {result['images']} test images (shaded: inside the training range)",
                 fontsize=11)
    fig.tight_layout()
    atomic_save_figure(fig, png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)


def _fmt(v) -> str:
    return f"{v:g}"
