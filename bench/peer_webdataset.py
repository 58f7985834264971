"""The second peer: the ``webdataset`` package's own loader reading minwa's shards.

Its documented pipeline: ``WebDataset(urls)`` with shard shuffling, a sample shuffle buffer,
``.decode("pil")``, ``.to_tuple("jpg", "cls")``, the same resize + centre crop as the PIL peer,
``.batched(batch_size)``, and ``WebLoader`` with the same number of worker processes (each worker reads
whole shards, so there should be at least as many shards as workers).

Run on its own: ``python bench/peer_webdataset.py SHARD_FOLDER [--size 224] [--workers 2]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minwa.benchmarks.loader import run_script, script_parser


def shard_urls(folder) -> list[str]:
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return [str(Path(folder) / s["name"]) for s in manifest["shards"]]


def resize_centre_crop(img: Image.Image, size: int) -> torch.Tensor:
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def make_loader(folder, size: int = 224, batch_size: int = 128, workers: int = 2, seed: int = 0):
    import webdataset as wds

    urls = shard_urls(folder)
    dataset = (
        wds.WebDataset(urls, shardshuffle=len(urls), seed=seed, empty_check=False)
        .shuffle(1000)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(lambda img: resize_centre_crop(img.convert("RGB"), size), int)
        .batched(batch_size, partial=False)
    )
    return wds.WebLoader(dataset, batch_size=None, num_workers=workers)


def main():
    run_script(make_loader, script_parser(__doc__.splitlines()[0], "a folder of minwa shards").parse_args())


if __name__ == "__main__":
    main()
