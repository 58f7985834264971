"""Deep Image Figure 4: what the network sees — the original, a row per transform, and all combined.

Each transform row switches on only that transform (with probability 1, on the centre crop), so a row
shows its range; the cropping row shows random crops of the scaled image; the last row is the full
``deepimage`` preset, drawn exactly as training draws it (seed, epoch 0, sample indices 0..K-1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from minwa.augment.config import AugmentConfig
from minwa.augment.engine import Augmenter
from minwa.augment.presets import preset_config

_OFF = dict(random_crop=False)
ROWS: list[tuple[str, dict]] = [
    ("colour casting", dict(color_cast=True, **_OFF)),
    ("vignetting", dict(vignette=True, p_vignette=1.0, **_OFF)),
    ("lens distortion", dict(lens=True, p_lens=1.0, **_OFF)),
    ("rotation", dict(rotation=10, p_rotation=1.0, **_OFF)),
    ("flipping", dict(flip=True, **_OFF)),
    ("cropping", dict(random_crop=True)),
    ("PCA lighting (AlexNet)", dict(pca_lighting=0.5, **_OFF)),  # sigma 0.5 (paper: 0.1) so it is visible
]


def resize_short_side(image: np.ndarray, scale: int) -> np.ndarray:
    """uint8 HxWxC with the shorter side resized to ``scale`` and the longer side centre-cropped to it."""
    im = Image.fromarray(image)
    w, h = im.size
    f = scale / min(w, h)
    im = im.resize((max(scale, round(w * f)), max(scale, round(h * f))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - scale) // 2, (h - scale) // 2
    return np.asarray(im.crop((left, top, left + scale, top + scale)))


def _to_pil(x: torch.Tensor) -> Image.Image:
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).convert("RGB")


def preview_grid(image: np.ndarray, scale: int = 320, crop: int = 224, samples: int = 6, seed: int = 0,
                 fill: str = "reflect") -> Image.Image:
    """The Figure 4 grid as a PIL image (``image``: uint8 HxWx3 or HxW)."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    scaled = torch.from_numpy(resize_short_side(image[:, :, :3], scale).copy()).permute(2, 0, 1)
    batch = scaled[None].expand(samples, -1, -1, -1).contiguous()
    idx = torch.arange(samples)
    rows = [("original (whole scaled image, centre crop)", [_to_pil(scaled.float() / 255).resize((crop, crop))] +
             [_to_pil(Augmenter(AugmentConfig(), crop).eval(scaled[None])[0])])]
    for name, fields in ROWS:
        cfg = dataclasses.replace(AugmentConfig(fill=fill), **fields)
        out = Augmenter(cfg, crop)(batch, idx, 0, seed)
        rows.append((name, [_to_pil(t) for t in out]))
    combined = Augmenter(preset_config("deepimage", fill=fill), crop)(batch, idx, 0, seed)
    rows.append(("all combined (deepimage)", [_to_pil(t) for t in combined]))

    gap, label_h = 6, 22
    cell = crop
    width = gap + max(sum(t.width + gap for t in tiles) for _, tiles in rows)
    height = sum(label_h + cell + gap for _ in rows) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    y = gap
    for name, tiles in rows:
        draw.text((gap, y + 2), name, fill=(0, 0, 0), font=font)
        x = gap
        for t in tiles:
            sheet.paste(t, (x, y + label_h))
            x += t.width + gap
        y += label_h + cell + gap
    return sheet
