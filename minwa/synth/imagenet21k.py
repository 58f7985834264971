"""``make_imagenet21k(out)``: a pack of ImageNet-21k's size (14,197,087 samples, 21,841 classes) on one disk.

What it is for: measuring minwa's bookkeeping at that scale (opening the manifest and indices, the epoch
permutation and the rank partition, the loader's per-sample overhead, the workers' memory:
``minwa bench scale21k``), not decoding. So every sample is one of a few dozen tiny real JPEGs (16 x 16
crops of real photographs, ``backgrounds.find_pictures``, each under 512 bytes), reused in turn, and a
sample takes 2 KiB on disk (two tar members of one header and one padded block each): 29 GB in all.

The files are a real pack, written by ``pack``'s own pieces (``TarShardWriter``, ``finish_shard``,
``shard_manifest``), in its format: ``ShardDataset``, ``minwa verify``, the order and the loader read
it as they read any pack. Classes are the first 21,841 noun synsets of WordNet 3.0 (real wnids) when
its database is installed, else ``n%08d``. A sample's label is drawn per shard from ``(seed, shard)``,
so the files depend only on the arguments, never on the number of workers.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from minwa.data.packing import ShardProgress, ShardRecords, finish_shard, shard_manifest
from minwa.data.shards import BLOCK, VERSION, TarShardWriter, shard_name
from minwa.errors import MinwaError
from minwa.synth.backgrounds import find_pictures, open_picture
from minwa.utils.atomic import atomic_open, atomic_write_json
from minwa.utils.output import prepare_output_folder
from minwa.wordnet.database import WordNet, WordNetMissing

SAMPLES = 14_197_087  # ImageNet-21k (fall 2011 release)
CLASSES = 21_841
SHARD_SIZE = 5000  # pack's default
TILE = 16  # pixels per side of every sample
TILES = 64  # distinct JPEGs, reused in turn


def class_names(n: int, wordnet: str = "") -> list[str]:
    """Real wnids (the first ``n`` noun synsets of WordNet) where WordNet is installed, else ``n%08d``."""
    try:
        names = WordNet(wordnet).wnids(n)
    except WordNetMissing:
        names = []
    return names if len(names) == n else [f"n{i:08d}" for i in range(n)]


def _photographs(limit: int = 8) -> list[np.ndarray]:
    """The smallest few photographs installed (scikit-image's samples, MATE's nature wallpapers first:
    photographs, not drawings), each as RGB pixels."""
    pictures = sorted(find_pictures(), key=lambda p: (not p.group.startswith(("skimage/", "mate/nature")),
                                                      p.width * p.height, str(p.path)))
    return [np.asarray(open_picture(p.path, 128).convert("RGB")) for p in pictures[:limit]]


def tiny_jpegs(seed: int) -> list[bytes]:
    """``TILES`` distinct 16 x 16 JPEGs cut from real photographs (smooth random textures where none is
    installed), each small enough for one tar block."""
    rng = np.random.default_rng([seed, 0x746979])  # "tiy"
    photos = _photographs()
    out: list[bytes] = []
    while len(out) < TILES:
        if photos:
            img = photos[len(out) % len(photos)]
            y, x = rng.integers(0, img.shape[0] - TILE), rng.integers(0, img.shape[1] - TILE)
            crop = np.ascontiguousarray(img[y : y + TILE, x : x + TILE])
        else:
            base = rng.integers(0, 256, (2, 2, 3)).astype(np.uint8)
            crop = np.asarray(Image.fromarray(base).resize((TILE, TILE), Image.BILINEAR))
        for quality in (85, 60, 30):
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="JPEG", quality=quality, optimize=True)
            if len(buf.getvalue()) <= BLOCK:
                break
        if buf.getvalue() not in out:  # a flat patch (the sky) can repeat one already cut
            out.append(buf.getvalue())
    return out


# ------------------------------------------------------------------------------ one shard, any process
_WORK: dict = {}


def _init_worker(work: dict) -> None:
    _WORK.update(work)


def _write_shard(k: int) -> dict:
    out, n, size, seed, jpegs, num_classes, plan = (_WORK[x] for x in ("out", "n", "size", "seed", "jpegs", "classes", "plan"))
    keys = range(k * size, min((k + 1) * size, n))
    labels = np.random.default_rng([seed, k]).integers(0, num_classes, len(keys))
    with atomic_open(out / f"{shard_name(k)}.tar", "wb") as f:
        writer = TarShardWriter(f)
        for key, label in zip(keys, labels.tolist()):
            writer.add(key, jpegs[key % len(jpegs)], "jpg", label, TILE, TILE, key)
        index = writer.close()
    return finish_shard(out, k, index, writer.sha.hexdigest(), writer.pos, plan, num_classes, [],
                        {(TILE, TILE): len(keys)})


def make_imagenet21k(out, *, samples: int = SAMPLES, classes: int = CLASSES, shard_size: int = SHARD_SIZE,
                     seed: int = 0, workers: int = 0, wordnet: str = "", progress: bool = True) -> dict:
    """Write the pack into ``out`` (new or empty) and return its manifest."""
    out = Path(out).expanduser()
    if samples < 1 or classes < 1 or shard_size < 1:
        raise MinwaError(f"samples, classes and shard size must be positive, got {samples}, {classes}, {shard_size}")
    prepare_output_folder(out, "output folder")
    if any(out.iterdir()):
        raise MinwaError(f"output folder {out} is not empty; choose an empty or new folder")
    num_shards = -(-samples // shard_size)
    need = num_shards * 2 * BLOCK + samples * 4 * BLOCK
    free = os.statvfs(out).f_bavail * os.statvfs(out).f_frsize
    if need > free:
        raise MinwaError(f"{samples:,} samples need {need / 1e9:.1f} GB in {out}, which has {free / 1e9:.1f} GB free")
    names = class_names(classes, wordnet)
    settings = {"max_side": 0, "quality": 0, "shard_size": int(shard_size), "seed": int(seed)}
    text = json.dumps({"synthetic": "imagenet21k", "n": samples, "classes": classes, "settings": settings,
                       "format": VERSION}, sort_keys=True)
    plan = hashlib.sha256(text.encode()).hexdigest()[:16]
    work = dict(out=out, n=samples, size=shard_size, seed=seed, jpegs=tiny_jpegs(seed), classes=classes, plan=plan)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), num_shards))
    t0 = time.perf_counter()
    records = ShardRecords(classes)
    with ShardProgress(progress, num_shards, 0, f"writing {samples:,} samples in {classes:,} classes") as bar:
        if workers == 1:
            _init_worker(work)
            for k in range(num_shards):
                records[k] = _write_shard(k)
                bar.advance()
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(work,)) as pool:
                for rec in pool.imap_unordered(_write_shard, range(num_shards), chunksize=4):
                    records[int(rec["name"][6:-4])] = rec
                    bar.advance()
    _WORK.clear()
    source = {"classes": names, "channels": 3, "skipped": [],
              "source": {"kind": "synthetic", "path": "imagenet21k-synthetic", "split": None, "num_inputs": samples}}
    manifest = shard_manifest(source, settings, [records[k] for k in range(num_shards)], records.counts)
    manifest["pack_seconds"] = round(time.perf_counter() - t0, 3)
    manifest["synthetic"] = {"generator": "imagenet21k", "tile": TILE, "distinct_jpegs": TILES, "seed": seed}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
