"""The peer minwa's loader is measured against: a PIL ImageFolder ``Dataset`` + torch ``DataLoader``.

Written the way most users write it (torchvision's ``ImageFolder`` + ``Resize`` + ``CenterCrop`` +
``PILToTensor``, spelled out with Pillow because torchvision does not import with the CPU torch here):
one file opened per sample, decoded by Pillow, the whole image resized so that its shorter side is
``size`` (bilinear), the centre ``size x size`` cut, turned into a uint8 C x H x W tensor, batches made
by the DataLoader's default collate in ``workers`` processes.

Run on its own: ``python bench/peer_pil_loader.py IMAGEFOLDER [--size 224] [--workers 2]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from minwa.benchmarks.loader import run_script, script_parser


class PILImageFolder(Dataset):
    def __init__(self, root, size: int = 224):
        root = Path(root)
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        self.samples = [
            (p, label)
            for label, c in enumerate(classes)
            for p in sorted((root / c).iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        self.size = size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        w, h = img.size
        s = self.size / min(w, h)
        img = img.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1), label


def make_loader(root, size: int = 224, batch_size: int = 128, workers: int = 2, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(PILImageFolder(root, size), batch_size=batch_size, shuffle=True, num_workers=workers,
                      drop_last=True, generator=g, persistent_workers=False)


def main():
    run_script(make_loader, script_parser(__doc__.splitlines()[0], "an ImageFolder tree").parse_args())


if __name__ == "__main__":
    main()
