"""`minwa bench integrity`: what the per-sample CRC-32 check costs against decoding the same JPEG.

Every sample the loader reads from shards of index version 2 is checked against its CRC-32
(``minwa.data.index.sample_crc``) before it is decoded. This times, on ImageNet-like JPEGs made from real
photographs (``minwa.benchmarks.corpus``, 500x375 at ``quality``), in one process, interleaved over
``rounds`` rounds: the CRC of each image's bytes, a full-size simplejpeg decode, and the streaming
loader's decode for 224 px output (``decode.decode(..., min_side=224)``, DCT-domain downscaling where it
applies). Reported: medians over rounds, in microseconds per image and per 100 KB of JPEG, and the CRC
as a share of each decode.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import numpy as np

from minwa.benchmarks.config import IntegrityBenchConfig
from minwa.benchmarks.corpus import corpus_image, load_photos
from minwa.data import decode as dec
from minwa.data.index import sample_crc


def _us_per_image(fn, datas: list[bytes], repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        for d in datas:
            fn(d)
    return (time.perf_counter() - t0) / (repeat * len(datas)) * 1e6


def run(cfg: IntegrityBenchConfig) -> int:
    photos = list(load_photos().values())
    rng = np.random.default_rng(0)
    datas = [corpus_image(photos[k % len(photos)], rng, quality=cfg.quality) for k in range(cfg.images)]
    kb = float(np.mean([len(d) for d in datas])) / 1000
    contestants = {
        "crc32": (lambda d: sample_crc(d), 20),
        "decode_full": (lambda d: dec.decode(d, 3), 1),
        "decode_for_224": (lambda d: dec.decode(d, 3, min_side=224), 1),
    }
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(cfg.rounds):
        for name, (fn, repeat) in contestants.items():
            times[name].append(_us_per_image(fn, datas, repeat))
    us = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "images": len(datas), "mean_jpeg_kb": round(kb, 1), "quality": cfg.quality, "rounds": cfg.rounds,
        "us_per_image": {k: round(v, 1) for k, v in us.items()},
        "us_per_100kb": {k: round(v * 100 / kb, 1) for k, v in us.items()},
        "crc_share_of_decode": {k: round(us["crc32"] / us[k], 4) for k in ("decode_full", "decode_for_224")},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }  # fmt: skip
    if cfg.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{len(datas)} JPEGs of {kb:.0f} KB (500x375, q{cfg.quality}), median of {cfg.rounds} rounds:")
    for name, v in us.items():
        share = "" if name == "crc32" else f"  (CRC = {us['crc32'] / v:.1%} of it)"
        print(f"  {name:<15} {v:8.1f} us/image  {v * 100 / kb:8.1f} us/100 KB{share}")
    return 0
