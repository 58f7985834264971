"""Deep Image Figure 4: what the network sees — the original, a row per transform, and all combined.

The original row shows the whole picture at its own aspect ratio (the S x S square the loader hands over
and the C x C centre crop outlined on it) and the centre crop the network is evaluated on. Each
transform row switches on only that transform (with probability 1, on the centre crop) with the
config's ranges and fill, so a row shows its range; the cropping row shows random crops of the scaled
image. The last row is the whole config — the ``deepimage`` preset, or a run's own ``[augment]``
(``run_augmentation``: its config.toml or checkpoint) — drawn exactly as training draws it (seed,
epoch 0, sample indices 0..K-1).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from minwa import config as config_io
from minwa.augment.config import PRESETS, AugmentConfig
from minwa.augment.engine import Augmenter
from minwa.augment.presets import apply_preset
from minwa.errors import MinwaError
from minwa.evaluate.preprocess import crop_normalise, resize
from minwa.models.checkpoint import read_meta

DEFAULT_SCALE, DEFAULT_CROP = 320, 224
_OFF = dict(random_crop=False)
ROWS: list[tuple[str, dict]] = [
    ("colour casting", dict(color_cast=True, **_OFF)),
    ("vignetting", dict(vignette=True, p_vignette=1.0, **_OFF)),
    ("lens distortion", dict(lens=True, p_lens=1.0, **_OFF)),
    ("rotation", dict(p_rotation=1.0, **_OFF)),  # the config's angle, or Deep Image's +-10 where it has none
    ("flipping", dict(flip=True, **_OFF)),
    ("cropping", dict(random_crop=True)),
    ("PCA lighting (AlexNet)", dict(pca_lighting=0.5, **_OFF)),  # sigma 0.5 (paper: 0.1) so it is visible
]
# every switch a row may turn on, off: a row shows one transform of the config (its ranges, its fill)
_ALL_OFF = dict(flip=False, translate=0, color_cast=False, vignette=False, lens=False, rotation=0,
                pca_lighting=0.0, erase=0.0, mixup=0.0, cutmix=0.0)


@dataclasses.dataclass
class PreviewSource:
    """The augmentation a preview draws, its name for the last row, and the scale / crop it was trained at
    (None: not recorded; the preview's defaults apply)."""

    augment: AugmentConfig
    name: str
    scale: int | None = None
    crop: int | None = None


def preset_name(cfg: AugmentConfig) -> str | None:
    """The preset ``cfg`` is exactly (its fields written out, as a run's config.toml saves them), or None."""
    resolved = dataclasses.replace(apply_preset(cfg), preset="none")
    return next((name for name in PRESETS if AugmentConfig().with_preset(name) == resolved), None)


def run_augmentation(config: str | None = None, ckpt: str | None = None, overrides: list[str] | None = None,
                     fill: str | None = None) -> PreviewSource:
    """The augmentation of a run (``config``: its config.toml; ``ckpt``: the config its sidecar records),
    else the ``deepimage`` preset; then ``--fill`` and ``--set augment.X=...`` (the same parser as train)."""
    if config and ckpt:
        raise MinwaError("augment-preview takes --config or --ckpt, not both")
    scale = crop = None
    if config or ckpt:
        if config:
            recorded = config_io.read_file(config)
            where = f"config file {config}"
            data = recorded.get("data") if isinstance(recorded.get("data"), dict) else {}
            scale, crop = data.get("scale") or None, data.get("crop") or data.get("scale") or None
        else:
            meta = read_meta(ckpt)
            recorded = meta.get("config") if isinstance(meta.get("config"), dict) else {}
            where = f"checkpoint {ckpt}"
            scale, crop = meta.get("scale") or None, meta.get("crop") or None
        if not isinstance(recorded.get("augment"), dict):
            raise MinwaError(f"{where} has no [augment] section to preview")
        cfg = config_io.merge(AugmentConfig(), recorded["augment"], "augment")
        name = "run config"
    else:
        cfg, name = AugmentConfig().with_preset("deepimage"), "deepimage"
    sets = config_io.parse_overrides(overrides)
    if set(sets) - {"augment"} or not all(isinstance(v, dict) for v in sets.values()):
        raise MinwaError("augment-preview --set takes augment fields only, e.g. --set augment.rotation=5")
    flags = {"fill": fill} if fill else {}
    changed = {**flags, **sets.get("augment", {})}
    if changed:
        cfg = config_io.merge(cfg, changed, "augment")
        name = f"{name}, " + ", ".join(f"{k}={v}" for k, v in changed.items())
    cfg = apply_preset(cfg)  # checked: an impossible value is one sentence here
    preset = preset_name(cfg)
    if preset:  # exactly a preset, however it was reached
        name = f"run config: {preset}" if config or ckpt else preset
    return PreviewSource(cfg, name, int(scale) if scale else None, int(crop) if crop else None)


def resize_short_side(image: np.ndarray, scale: int) -> np.ndarray:
    """uint8 HxWxC: the S x S square the loader hands over (:func:`minwa.evaluate.preprocess.resize`)."""
    return resize(image, scale).permute(1, 2, 0).numpy()


def _to_pil(x: torch.Tensor) -> Image.Image:
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).convert("RGB")


def whole_image_tile(image: np.ndarray, height: int, scale: int, crop: int) -> Image.Image:
    """The whole picture ``height`` px tall at its own aspect ratio, with the centre S x S square (what
    the loader hands over) outlined in white and the centre C x C crop in red."""
    h, w = image.shape[:2]
    tile = Image.fromarray(image).resize((max(1, round(w * height / h)), height), Image.BICUBIC)
    f = tile.height / min(h, w)  # tile pixels per original pixel
    cx, cy = tile.width / 2, tile.height / 2
    draw = ImageDraw.Draw(tile)
    for side, colour in ((min(h, w) * f, (255, 255, 255)), (min(h, w) * f * crop / scale, (255, 0, 0))):
        draw.rectangle((cx - side / 2, cy - side / 2, cx + side / 2 - 1, cy + side / 2 - 1), outline=colour, width=2)
    return tile


def preview_grid(image: np.ndarray, scale: int = DEFAULT_SCALE, crop: int = DEFAULT_CROP, samples: int = 6,
                 seed: int = 0, source: PreviewSource | None = None) -> Image.Image:
    """The Figure 4 grid as a PIL image (``image``: uint8 HxWx3 or HxW); ``source``: what the last row
    draws (default: the ``deepimage`` preset), whose fill and ranges the transform rows use too."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[:, :, :3]
    source = source or run_augmentation()
    scaled = torch.from_numpy(resize_short_side(image, scale).copy()).permute(2, 0, 1)
    batch = scaled[None].expand(samples, -1, -1, -1).contiguous()
    idx = torch.arange(samples)
    rows = [("original (whole image: the S x S square in white, the centre crop in red), centre crop",
             [whole_image_tile(image, crop, scale, crop), _to_pil(crop_normalise(scaled[None], crop, 0.0, 1.0)[0])])]
    off = dataclasses.replace(source.augment, **_ALL_OFF)
    for name, fields in ROWS:
        cfg = dataclasses.replace(off, **fields)
        if name == "rotation":
            cfg = dataclasses.replace(cfg, rotation=source.augment.rotation or 10)
        out = Augmenter(cfg, crop)(batch, idx, 0, seed)
        rows.append((name, [_to_pil(t) for t in out]))
    combined = Augmenter(source.augment, crop)(batch, idx, 0, seed)
    rows.append((f"all combined ({source.name})", [_to_pil(t) for t in combined]))
    return _sheet(rows, crop)


def _sheet(rows: list[tuple[str, list[Image.Image]]], cell: int) -> Image.Image:
    """Rows of tiles (each ``cell`` px tall, any width) under their titles, on white."""
    gap, label_h = 6, 22
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    width = gap + max(max(sum(t.width + gap for t in tiles), math.ceil(font.getlength(name)) + gap)
                      for name, tiles in rows)  # titles are never cut, even over 28 px tiles
    height = sum(label_h + cell + gap for _ in rows) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for name, tiles in rows:
        draw.text((gap, y + 2), name, fill=(0, 0, 0), font=font)
        x = gap
        for t in tiles:
            sheet.paste(t, (x, y + label_h))
            x += t.width + gap
        y += label_h + cell + gap
    return sheet
