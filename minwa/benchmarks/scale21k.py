"""`minwa bench scale21k`: minwa's bookkeeping at ImageNet-21k's size (14.2 million samples, 21,841 classes).

The pack is ``minwa make-dataset imagenet21k-synthetic`` (tiny real JPEGs, so decoding costs next to
nothing and what is timed is the bookkeeping), or any pack given as ``data``. Each measurement runs in a
fresh process (``python -m minwa.benchmarks.scale21k WHAT ARGS``), so its resident memory is its own:

- open: ``ShardDataset(data)`` (manifest, every index read and checked against its SHA-256): seconds, the
  process's peak resident memory (``VmHWM``, torch and the interpreter included) and the open's own share.
- order: one epoch's permutation (``order.epoch_permutation``) and the partition of that epoch into
  ``ranks`` ranks' parts of every global batch of ``ranks x batch_per_rank`` (``order.rank_epoch``: each
  rank's part of every batch, the same samples ``order.rank_batch`` gives batch by batch), all ranks in
  one process, each part copied out: seconds and peak memory.
- loader (with ``cold``, first with the shards evicted from the page cache: random reads from disk, as
  for a pack larger than memory; then again, the same samples now cached, which is what the goal judges):
  ``build_loader`` streaming (``cache="none"``) with ``workers`` processes: start-up (building it
  and its first batch), then the steady rate over ``loader_samples`` samples and the CPU time of all
  processes per sample. Less the pixel work (decoding the tiny JPEG and writing it into a batch row, timed
  on the same samples in one process beforehand), that is the per-sample overhead of the bookkeeping:
  the index lookup, CRC check, order, batch assembly and the hand-over between processes.
  The workers' resident memory (``/proc/PID/smaps_rollup``: Rss, Pss, private) is read while they run.
- the yardstick: a 224 x 224 JPEG cut from a real photograph decoded by simplejpeg (``decode.decode``),
  and a 500 x 375 one decoded for 224 px as the loader does on ImageNet-like data.

Goals (issue 13): open in at most 5 s and 2 GiB resident, permutation and partition in at most 2 s, the
per-sample overhead at most 5% of the 224 px decode. Written to ``work/results.json`` and shown as a table.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minwa.benchmarks.config import Scale21kBenchConfig
from minwa.benchmarks.cputime import per_item_us
from minwa.data import order as ordering
from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_json

QUICK = dict(samples=50_000, classes=1_000, loader_samples=20_000, repeats=1)
GOALS = {"open_s": 5.0, "open_peak_gib": 2.0, "order_s": 2.0, "overhead_share": 0.05}
_MB = 2**20


# ---------------------------------------------------------------------------------- memory, CPU time
def _status(pid: int | str = "self") -> dict:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _rollup(pid: int | str = "self") -> dict:
    """Memory of a process in MiB (``smaps_rollup``): Rss, Pss, private (clean + dirty), and Rss split into
    anonymous (its own and copy-on-write shared memory) and file pages (the shards' mapped pages: page
    cache, shared and reclaimable; a fault maps its cached neighbours too, so this grows over an epoch)."""
    kb = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        kb[key] = int(value.split()[0])
    return {"rss_mb": round(kb["Rss"] / 1024, 1), "pss_mb": round(kb["Pss"] / 1024, 1),
            "private_mb": round((kb["Private_Clean"] + kb["Private_Dirty"]) / 1024, 1),
            "anon_mb": round(kb["Anonymous"] / 1024, 1), "file_mb": round((kb["Rss"] - kb["Anonymous"]) / 1024, 1)}


def evict(folder: Path, suffix: str) -> int:
    """Drop the ``*.suffix`` files of ``folder`` from the page cache (``POSIX_FADV_DONTNEED``), so that what
    follows reads them from disk as a first run would; returns the files evicted."""
    files = sorted(Path(folder).glob(f"shard-*.{suffix}"))
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return len(files)


def _children() -> list[int]:
    return [int(p) for p in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


# ------------------------------------------------------------------------ measurements, each a process
def measure_open(data: str) -> dict:
    from minwa.data.shards import ShardDataset  # torch comes with it: imported before the baseline

    base = _status()["VmRSS"]
    t0 = time.perf_counter()
    ds = ShardDataset(data)
    seconds = time.perf_counter() - t0
    mem = _status()
    return {"seconds": round(seconds, 3), "samples": len(ds), "shards": len(ds.tars), "classes": len(ds.classes),
            "index_mb": round(ds.index.nbytes / _MB, 1), "base_rss_mb": round(base, 1),
            "rss_mb": round(mem["VmRSS"], 1), "peak_rss_mb": round(mem["VmHWM"], 1),
            "own_peak_mb": round(mem["VmHWM"] - base, 1)}


def measure_order(n: int, ranks: int, batch_per_rank: int) -> dict:
    base = _status()["VmRSS"]
    t0 = time.perf_counter()
    order = ordering.epoch_permutation(n, 0, 0)
    t1 = time.perf_counter()
    batch = ranks * batch_per_rank
    nb = ordering.num_batches(n, batch, drop_last=True)
    total = 0
    for r in range(ranks):  # each rank's part written out (a copy), as a rank holding its epoch would
        total += np.ascontiguousarray(ordering.rank_epoch(order, batch, r, ranks)).size
    t2 = time.perf_counter()
    if total != nb * batch:
        raise MinwaError(f"the {ranks} ranks' parts hold {total:,} samples, not the epoch's {nb * batch:,}")
    mem = _status()
    return {"permutation_s": round(t1 - t0, 3), "partition_s": round(t2 - t1, 3), "seconds": round(t2 - t0, 3),
            "per_rank_s": round((t1 - t0) + (t2 - t1) / ranks, 4), "global_batch": batch, "batches": nb,
            "samples_per_rank": total // ranks, "base_rss_mb": round(base, 1), "peak_rss_mb": round(mem["VmHWM"], 1),
            "own_peak_mb": round(mem["VmHWM"] - base, 1)}


def measure_loader(data: str, workers: int, batch_size: int, samples: int) -> dict:
    from minwa.data import decode as dec  # torch: only in this process
    from minwa.data.config import DataConfig
    from minwa.data.loader import build_loader
    from minwa.data.shards import ShardDataset

    from minwa.data.workers import empty_images, hwc

    ds = ShardDataset(data)
    tiny = [ds.encoded(i) for i in range(min(len(ds), 256))]
    h, w = ds.image_size() or (224, 224)
    row = hwc(empty_images((1, ds.channels, h, w))).numpy()[0]  # as the reader's batch rows

    def pixels(d: bytes):  # what the reader does with a sample's bytes: decode, then resize into the batch
        img = dec.decode(d, ds.channels, min(h, w))
        dec.resize_chw(img, dec.square_box(*img.shape[:2], None), h, w, row)

    tiny_decode_us = per_item_us(lambda d: dec.decode(d, ds.channels), tiny, passes=5, pick=statistics.median)
    pixel_us = per_item_us(pixels, tiny, passes=5, pick=statistics.median)
    cfg = DataConfig(cache="none", workers=workers, batch_size=batch_size, scale=0)
    t0 = time.perf_counter()
    loader = build_loader(cfg, ds, train=True)
    it = iter(loader)
    first = next(it)
    startup = time.perf_counter() - t0
    pids = _children()
    cpu0 = _self_cpu_s() + sum(map(_cpu_s, pids))
    n, t1 = 0, time.perf_counter()
    limit = samples or len(ds)
    for batch in it:
        n += len(batch.labels)
        if n >= limit:
            break
    seconds = time.perf_counter() - t1
    cpu = _self_cpu_s() + sum(map(_cpu_s, pids)) - cpu0
    per_worker = [_rollup(p) for p in pids]
    main = _rollup()
    del it, first, batch
    cpu_us = cpu / max(1, n) * 1e6
    return {"startup_s": round(startup, 3), "samples": n, "seconds": round(seconds, 3),
            "samples_per_s": round(n / seconds, 1) if seconds > 0 else None, "workers": workers,
            "batch_size": batch_size, "image": list(loader.image_size), "cpu_us_per_sample": round(cpu_us, 1),
            "tiny_decode_us": tiny_decode_us, "pixel_us": pixel_us, "overhead_us": round(cpu_us - pixel_us, 1),
            "main_memory": main, "worker_memory": per_worker}


MEASURES = {"open": measure_open, "order": measure_order, "loader": measure_loader}


def _in_fresh_process(what: str, **kwargs) -> dict:
    """``MEASURES[what](**kwargs)`` in a new Python process; its last line of output is the result."""
    proc = subprocess.run([sys.executable, "-m", "minwa.benchmarks.scale21k", what, json.dumps(kwargs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise MinwaError(f"the {what} measurement failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ yardstick
def decode_yardstick() -> dict:
    """Microseconds to decode a 224 x 224 q90 JPEG, and a 500 x 375 one for 224 px (DCT scaling), cut
    from real photographs (scikit-image's, as the other benches' corpus)."""
    from PIL import Image  # Pillow and torch (decode): only when the bench runs

    from minwa.benchmarks.corpus import corpus_image, load_photos
    from minwa.data import decode as dec

    photos = list(load_photos().values())
    rng = np.random.default_rng(0)
    big = [corpus_image(photos[k % len(photos)], rng) for k in range(16)]
    small = []
    for data in big:
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).resize((224, 224), Image.BICUBIC).save(buf, format="JPEG", quality=90)
        small.append(buf.getvalue())
    return {"decode_224_us": per_item_us(lambda d: dec.decode(d, 3), small, passes=5, pick=statistics.median),
            "decode_for_224_us": per_item_us(lambda d: dec.decode(d, 3, min_side=224), big, passes=5,
                                             pick=statistics.median),
            "jpeg_224_kb": round(float(np.mean([len(d) for d in small])) / 1000, 1)}


# ------------------------------------------------------------------------------------------------ run
def _data(cfg: Scale21kBenchConfig, scratch: Path | None, say) -> Path:
    """The pack to measure: ``cfg.data``, or the synthetic one (made unless already complete)."""
    from minwa.synth.imagenet21k import make_imagenet21k

    if cfg.data:
        return Path(cfg.data)
    folder = (scratch or Path(cfg.work)) / f"data-{cfg.samples}-{cfg.classes}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if (m.get("num_samples"), m.get("num_classes")) == (cfg.samples, cfg.classes):
            return folder
        raise MinwaError(f"{folder} holds another pack; delete it or name it with --data")
    say(f"making {cfg.samples:,} samples in {cfg.classes:,} classes in {folder}")
    make_imagenet21k(folder, samples=cfg.samples, classes=cfg.classes, progress=not cfg.json)
    return folder


def _goals(r: dict) -> list[dict]:
    opened, order, loader = r["open"], r["order"], r["loader"]
    share = loader["overhead_us"] / r["decode"]["decode_224_us"]
    return [
        {"goal": "open (manifest and indices)", "measured": f"{opened['seconds']:.2f} s", "target": "<= 5 s",
         "pass": opened["seconds"] <= GOALS["open_s"]},
        {"goal": "open: peak resident memory", "measured": f"{opened['peak_rss_mb'] / 1024:.2f} GiB",
         "target": "<= 2 GiB", "pass": opened["peak_rss_mb"] / 1024 <= GOALS["open_peak_gib"]},
        {"goal": f"epoch permutation + partition into {r['config']['ranks']:,} ranks", "measured": f"{order['seconds']:.2f} s",
         "target": "<= 2 s", "pass": order["seconds"] <= GOALS["order_s"]},
        {"goal": "loader overhead per sample / 224 px decode",
         "measured": f"{loader['overhead_us']:.1f} / {r['decode']['decode_224_us']:.0f} us = {share:.1%}",
         "target": "<= 5%", "pass": share <= GOALS["overhead_share"]},
    ]


def _median_run(runs: list[dict]) -> dict:
    """The run with the median time, with every run's seconds and the highest peak beside it."""
    best = sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2]
    return {**best, "runs_s": [x["seconds"] for x in runs], "peak_rss_mb": max(x["peak_rss_mb"] for x in runs)}


def run(cfg: Scale21kBenchConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    if cfg.quick:
        defaults = Scale21kBenchConfig()
        cfg = dataclasses.replace(cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)})
    console = Console(stderr=cfg.json)
    t0 = time.perf_counter()

    def say(line: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:6.0f}s[/dim] {line}", highlight=False)

    with tempfile.TemporaryDirectory(prefix="minwa-scale21k-") as tmp:
        data = _data(cfg, Path(tmp) if cfg.quick else None, say)
        say(f"opening {data} in {cfg.repeats} fresh processes" + (", the first with its indices evicted from the "
                                                                   "page cache" if cfg.cold else ""))
        runs = []
        for k in range(cfg.repeats):
            if cfg.cold and k == 0:
                evict(data, "idx")
            runs.append(_in_fresh_process("open", data=str(data)))
        opened = {**_median_run(runs), "first_s": runs[0]["seconds"], "cold": cfg.cold}
        n = opened["samples"]
        say(f"one epoch's permutation of {n:,} and its partition into {cfg.ranks:,} ranks")
        order = _median_run([_in_fresh_process("order", n=n, ranks=cfg.ranks, batch_per_rank=cfg.batch_per_rank)
                             for _ in range(cfg.repeats)])
        args = dict(data=str(data), workers=cfg.workers, batch_size=cfg.batch_size, samples=cfg.loader_samples)
        cold = None
        if cfg.cold:
            say(f"the loader, {cfg.workers} workers, {cfg.loader_samples or n:,} samples, the shards evicted from "
                "the page cache first (random reads from disk)")
            evict(data, "tar")
            cold = _in_fresh_process("loader", **args)
        say(f"the loader again, the same samples{' (their pages now cached)' if cfg.cold else ''}")
        loader = _in_fresh_process("loader", **args)
        say("the yardstick: decoding 224 px JPEGs")
        result = {"config": dataclasses.asdict(cfg), "data": str(data), "open": opened, "order": order,
                  "loader": loader, "loader_cold": cold, "decode": decode_yardstick(),
                  "machine": {"cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
                              "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                              "python": platform.python_version()}}
    result["goals"] = _goals(result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(cfg.work) / "results.json", result)
    if cfg.json:
        print(json.dumps(result, indent=2))
        return 0
    show(result, console, Table)
    console.print(f"results: {Path(cfg.work) / 'results.json'}", highlight=False)
    return 0


def show(r: dict, console, Table) -> None:
    o, d, lo = r["order"], r["open"], r["loader"]
    console.print(f"{d['samples']:,} samples in {d['classes']:,} classes, {d['shards']:,} shards ({r['data']})",
                  highlight=False)
    table = Table(title="bookkeeping at this size")
    for c in ("measure", "figure"):
        table.add_column(c)
    rows = [
        ("open: seconds (each run" + (", the first cold)" if d["cold"] else ")"), ", ".join(f"{s:.2f}" for s in d["runs_s"])),
        ("open: peak resident / own share / index", f"{d['peak_rss_mb']:,.0f} / {d['own_peak_mb']:,.0f} / "
                                                    f"{d['index_mb']:,.0f} MiB"),
        ("permutation + partition (each run)", f"{o['permutation_s']:.2f} + {o['partition_s']:.2f} s "
                                               f"({', '.join(f'{s:.2f}' for s in o['runs_s'])})"),
        ("order: peak resident / own share", f"{o['peak_rss_mb']:,.0f} / {o['own_peak_mb']:,.0f} MiB"),
        ("loader start-up (build + first batch)", f"{lo['startup_s']:.2f} s"),
        *([("loader from disk (shards evicted first)", f"{r['loader_cold']['samples_per_s']:,.0f} samples/s, start-up "
            f"{r['loader_cold']['startup_s']:.2f} s, {r['loader_cold']['cpu_us_per_sample']:.0f} us CPU a sample")]
          if r["loader_cold"] else []),
        ("loader steady rate", f"{lo['samples_per_s']:,.0f} samples/s ({lo['workers']} workers, "
                               f"{lo['image'][0]}x{lo['image'][1]} px)"),
        ("loader CPU per sample (all processes)", f"{lo['cpu_us_per_sample']:.1f} us, of which pixel work "
                                                  f"{lo['pixel_us']:.1f} us (decode alone {lo['tiny_decode_us']:.1f})"),
        ("worker memory (Rss = anonymous + shard pages / Pss, MiB)",
         "; ".join(f"{w['rss_mb']:,.0f} = {w['anon_mb']:,.0f} + {w['file_mb']:,.0f} / {w['pss_mb']:,.0f}"
                   for w in lo["worker_memory"])),
        ("224 px JPEG decode / 500x375 for 224 px", f"{r['decode']['decode_224_us']:.0f} / "
                                                    f"{r['decode']['decode_for_224_us']:.0f} us"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    goals = Table(title="goals")
    for c in ("goal", "measured", "target", ""):
        goals.add_column(c)
    for g in r["goals"]:
        goals.add_row(g["goal"], g["measured"], g["target"], "[green]PASS[/green]" if g["pass"] else "[red]FAIL[/red]")
    console.print(goals)


if __name__ == "__main__":  # one measurement in a fresh process: python -m minwa.benchmarks.scale21k WHAT ARGS
    print(json.dumps(MEASURES[sys.argv[1]](**json.loads(sys.argv[2]))))
