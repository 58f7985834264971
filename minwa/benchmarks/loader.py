"""`minwa bench loader SHARDS`: minwa's loader, its two peers and the decode ceiling, side by side.

All four produce S x S uint8 batches (S = ``--size``, default 224: shorter side resized to S, centre
square) with the same number of worker processes, in one run, interleaved over ``--rounds`` rounds so
that a shared machine's drift hits all of them alike:

- ``minwa_img_s``: ``build_loader(..., cache="none")`` streaming the shards (simplejpeg, torch resize).
- ``pil_dataloader_img_s``: ``bench/peer_pil_loader.py`` on the JPEG files the shards were packed from.
- ``webdataset_img_s``: ``bench/peer_webdataset.py``, the webdataset package reading the same shards.
- ``decode_ceiling_img_s``: the same worker count doing nothing but full-size simplejpeg decodes of the
  same JPEG bytes (no resize, no batching, no hand-over): what the CPU can decode at most.

Each loader's rate is taken after its first batch (worker start-up excluded, the same for all). The
reported figure per contestant is the median over rounds; the ratios are medians of per-round ratios.
``--make-corpus N`` first writes N ImageNet-like JPEGs made from real photographs
(``minwa.benchmarks.corpus``) and packs them. ``--device cuda`` adds the device-cache paths: decoded
pixels on the GPU (``minwa_device_cache_img_s``) and, with torchvision, JPEG bytes decoded by nvJPEG per
batch (``minwa_jpeg_cache_img_s``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from minwa.benchmarks.cputime import cpu_seconds
from minwa.errors import MinwaError

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def add_arguments(p):
    p.add_argument("shards", nargs="?", help="packed folder of JPEG shards (default: the --make-corpus one)")
    p.add_argument("--make-corpus", type=int, default=0, metavar="N", help="first make N photos and pack them")
    p.add_argument("--work", default="runs/bench-loader", help="folder for the corpus and its shards")
    p.add_argument("--size", type=int, default=224, help="S: output images are S x S (default 224)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="worker processes for every contestant (default: cores)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=0, help="images per measurement (default: the whole set)")
    p.add_argument("--device", default="cpu", help="also time the device-cache path on this device (e.g. cuda)")
    p.add_argument("--skip", default="", help="comma-separated contestants to leave out: pil,webdataset")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _peer(name: str):
    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_batches(make, limit: int) -> tuple[float, float]:
    """(images/s after the first batch, CPU microseconds per image over the whole run, workers
    included); ``make()`` builds the loader; up to ``limit`` images (0 = all)."""
    cpu0 = cpu_seconds()
    it = iter(make())
    first = next(it)
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += len(b[0])
        if limit and n >= limit:
            break
    dt = time.perf_counter() - t0
    n_all = n + len(first[0])
    del it, first  # the last reference: the loader shuts its workers down and reaps them here
    return (n / dt if dt > 0 and n else float("nan")), (cpu_seconds() - cpu0) / n_all * 1e6


def script_parser(description: str, folder_help: str) -> argparse.ArgumentParser:
    """The command line of the bench/ loader scripts: ``FOLDER [--size 224] [--batch-size 128] [--workers 2]``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("folder", help=folder_help)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    return p


def run_script(make_loader, args) -> None:
    """Time ``make_loader(folder, size, batch_size, workers)`` as ``minwa bench loader`` does; print one line."""
    rate, cpu_us = time_batches(lambda: make_loader(args.folder, args.size, args.batch_size, args.workers), 0)
    print(f"{rate:.0f} images/s after the first batch, {cpu_us:.0f} CPU us/image ({args.workers} workers)")


# ------------------------------------------------------------------------------------- decode ceiling
_DS = {}


def _decode_range(bounds):
    import simplejpeg

    torch.set_num_threads(1)
    ds = _DS["ds"]
    for i in range(*bounds):
        simplejpeg.decode_jpeg(ds.encoded(i))
    return bounds[1] - bounds[0]


def decode_ceiling(ds, workers: int, limit: int) -> tuple[float, float]:
    """(full-size decodes/s, CPU us per decode) of the shards' JPEGs in ``workers`` processes."""
    n = min(len(ds), limit) if limit else len(ds)
    step = max(16, n // (workers * 16))
    chunks = [(a, min(n, a + step)) for a in range(0, n, step)]
    _DS["ds"] = ds
    cpu0 = cpu_seconds()
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            pool.map(_decode_range, [(0, min(n, workers))] * workers)  # start-up and page cache
            t0 = time.perf_counter()
            done = sum(pool.map(_decode_range, chunks, chunksize=1))
            rate = done / (time.perf_counter() - t0)
            pool.close()
            pool.join()
    finally:
        _DS.clear()
    return rate, (cpu_seconds() - cpu0) / (done + workers * min(n, workers)) * 1e6


# ----------------------------------------------------------------------------------------------- run
def prepare(args) -> Path:
    from minwa.data import pack

    if args.make_corpus:
        from minwa.benchmarks.corpus import make_corpus

        work = Path(args.work)
        corpus = make_corpus(work / "corpus", args.make_corpus)
        shards = work / "shards"
        if not (shards / "manifest.json").is_file():
            pack(corpus, shards, shard_size=max(64, args.make_corpus // 16), progress=not args.json)
        return shards
    if not args.shards:
        raise MinwaError("give a shard folder, or --make-corpus N to make one from real photographs")
    return Path(args.shards)


def run(args) -> int:
    from minwa.data import DataConfig, build_loader, open_dataset

    shards = prepare(args)
    ds = open_dataset(shards)
    if ds.channels != 3:
        raise MinwaError(f"the loader benchmark needs photographs (3 channels); {shards} holds {ds.channels}-channel images")
    workers = args.workers or os.cpu_count() or 1
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    source = Path(ds.manifest["source"]["path"])
    pil_peer = _peer("peer_pil_loader") if "pil" not in skip and source.is_dir() else None
    wds_peer = _peer("peer_webdataset") if "webdataset" not in skip else None
    if wds_peer is not None and importlib.util.find_spec("webdataset") is None:
        wds_peer = None
    cfg = DataConfig(scale=args.size, batch_size=args.batch_size, workers=workers, cache="none", seed=0)
    contestants = {
        "decode_ceiling": lambda r: decode_ceiling(ds, workers, args.images),
        "minwa": lambda r: time_batches(lambda: build_loader(cfg, ds, train=True, epoch=r), args.images),
    }
    if pil_peer:
        contestants["pil_dataloader"] = lambda r: time_batches(
            lambda: pil_peer.make_loader(source, args.size, args.batch_size, workers, seed=r), args.images)
    if wds_peer:
        contestants["webdataset"] = lambda r: time_batches(
            lambda: wds_peer.make_loader(shards, args.size, args.batch_size, workers, seed=r), args.images)
    rounds: dict[str, list[float]] = {k: [] for k in contestants}
    cpu: dict[str, list[float]] = {k: [] for k in contestants}
    for r in range(args.rounds):
        for name, fn in contestants.items():
            rate, cpu_us = fn(r)
            rounds[name].append(rate)
            cpu[name].append(cpu_us)
            if not args.json:
                print(f"round {r + 1}: {name:16s} {rate:8.0f} images/s  {cpu_us:6.0f} CPU us/image", flush=True)

    result = {f"{k}_img_s": round(statistics.median(v), 1) for k, v in rounds.items()}
    for peer in ("pil_dataloader", "webdataset", "decode_ceiling"):
        if peer in rounds:
            ratios = [m / p for m, p in zip(rounds["minwa"], rounds[peer])]
            result[f"minwa_over_{peer}"] = round(statistics.median(ratios), 3)
    # CPU time per image does not depend on how busy a shared machine is: the efficiency ratio
    result["cpu_us_per_image"] = {k: round(statistics.median(v)) for k, v in cpu.items()}
    for peer in ("pil_dataloader", "webdataset", "decode_ceiling"):
        if peer in cpu:
            result[f"minwa_cpu_efficiency_vs_{peer}"] = round(statistics.median(cpu[peer]) / statistics.median(cpu["minwa"]), 3)
    result["minwa_cache_img_s"] = round(cache_rate(ds, args, "cpu"), 1)
    if args.device != "cpu":
        result["minwa_device_cache_img_s"] = round(cache_rate(ds, args, args.device), 1)
        if torch.device(args.device).type == "cuda" and importlib.util.find_spec("torchvision") is not None:
            result["minwa_jpeg_cache_img_s"] = round(cache_rate(ds, args, args.device, kind="jpeg"), 1)
    result.update(
        rounds={k: [round(x, 1) for x in v] for k, v in rounds.items()},
        settings={"shards": str(shards), "images": len(ds), "size": args.size, "batch_size": args.batch_size,
                  "workers": workers, "rounds": args.rounds,
                  "mean_megapixels": round(float(np.mean(ds.index["height"] * ds.index["width"])) / 1e6, 3)},
        machine={"cpus": os.cpu_count(), "cpu": _cpu_name(), "python": platform.python_version(),
                 "torch": torch.__version__, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            if k not in ("rounds", "settings", "machine"):
                print(f"{k:36s} {v}")
    return 0


def cache_rate(ds, args, device: str, kind: str = "") -> float:
    """Images/s of a cache path over one epoch, setting up excluded: decoded pixels (decode once, then
    index: ``memory`` on the CPU, ``device`` elsewhere), or ``kind="jpeg"``: nvJPEG decoding every batch."""
    from minwa.data import DataConfig, build_loader

    cfg = DataConfig(scale=args.size, batch_size=args.batch_size, workers=args.workers or os.cpu_count() or 1,
                     cache=kind or ("device" if device != "cpu" else "memory"), square="centre")  # caches hold centre squares
    loader = build_loader(cfg, ds, train=True, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    n, t0 = 0, time.perf_counter()
    for b in loader:
        n += len(b.images)
    sync()
    return n / (time.perf_counter() - t0)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
