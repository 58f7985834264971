"""A user's folder of colour photographs, made at test time from Debian's wallpaper packages.

Four classes of real photographs and artwork (``nature``, ``abstract``, ``pattern``, ``desktop``), cut into
JPEGs of varied size and aspect (as a phone or a camera folder has them), split into ``train/`` and ``val/``
*by source picture*: no crop of a validation picture is ever trained on, so accuracy above chance means the
model learned the class, not the picture. Installed by ``scripts/ensure-photos.sh`` (``make test`` runs it).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from PIL import Image

BACKGROUNDS = Path("/usr/share/backgrounds")

# class -> glob patterns under BACKGROUNDS
SOURCES = {
    "nature": ["mate/nature/*.jpg"],
    "abstract": ["mate/abstract/*"],
    "pattern": ["gnome/*.webp"],
    "desktop": ["mate/desktop/*", "sway/*.png"],
}


def photos_available() -> bool:
    return all(any(BACKGROUNDS.glob(p)) for pats in SOURCES.values() for p in pats)


def _group(path: Path) -> str:
    """Pictures that are one picture at several sizes or in light/dark variants share a group."""
    stem = path.stem
    if path.parent.name == "sway":
        return "sway"
    if path.parent.name == "gnome":
        return stem.rsplit("-", 1)[0]
    return re.sub(r"_\d+x\d+.*$", "", stem)


def sources_by_class() -> dict[str, dict[str, list[Path]]]:
    """class -> group -> its source files, in a fixed order."""
    out: dict[str, dict[str, list[Path]]] = {}
    for cls, pats in SOURCES.items():
        groups: dict[str, list[Path]] = {}
        for pat in pats:
            for p in sorted(BACKGROUNDS.glob(pat)):
                if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                    groups.setdefault(_group(p), []).append(p)
        out[cls] = dict(sorted(groups.items()))
    return out


def _open_rgb(path: Path, max_side: int) -> Image.Image:
    im = Image.open(path)
    im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced size (fast for 5640 px sources)
    im = im.convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def make_photo_folder(root: Path, crops_per_picture: int = 8, min_side: int = 160, max_side: int = 640,
                      val_every: int = 3, seed: int = 0) -> Path:
    """Write ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``; every ``val_every``-th group of a
    class (by name) goes to val. Each crop: a random window of 35-100% of the picture's shorter side, an
    aspect between 0.6 and 1.8, resized so its longer side lies in [min_side, max_side], saved at q90."""
    rng = random.Random(seed)
    for cls, groups in sources_by_class().items():
        for gi, (group, files) in enumerate(groups.items()):
            split = "val" if gi % val_every == val_every - 1 else "train"
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for path in files:
                src = _open_rgb(path, 1600)
                w, h = src.size
                for k in range(crops_per_picture):
                    side = rng.uniform(0.35, 1.0) * min(w, h)
                    aspect = rng.uniform(0.6, 1.8)
                    cw, ch = min(w, side * aspect ** 0.5), min(h, side / aspect ** 0.5)
                    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                    crop = src.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
                    long_side = rng.randint(min_side, max_side)
                    f = long_side / max(crop.size)
                    crop = crop.resize((max(8, round(crop.width * f)), max(8, round(crop.height * f))),
                                       Image.Resampling.BILINEAR)
                    crop.save(folder / f"{path.stem}-{k}.jpg", quality=90)
    return root
