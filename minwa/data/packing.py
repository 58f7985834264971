"""``pack(src, out)``: any source into shards, in parallel processes, resumable, nothing half-written.

The plan is fixed before any work: the samples are shuffled by ``seed`` and cut into shards of
``shard_size`` (a sample's key is its position in that order). Each worker process writes whole shards:
``.tar`` then ``.idx`` (each written to a temporary name and renamed when complete), then the shard's
``.json`` record. ``manifest.json`` is removed first and written last. So an interrupted pack (Ctrl-C,
SIGKILL, power loss) leaves no manifest (``verify`` and ``open_dataset`` refuse the folder), and running
the same command again keeps every shard whose record matches the plan and writes only the rest.

Encoding: Fashion-MNIST/IDX pixels are stored losslessly as 8-bit grayscale PNG; photos keep their
original JPEG bytes when they need no change, and are otherwise re-encoded as RGB JPEG at ``quality``
(see ``decode.prepare_for_pack``). The contents of every shard depend only on the source, the settings
and the seed, never on the number of workers, nor on how many machines share the work: with ``part``
(``minwa.data.parts``) this process writes only part K of N of the same plan and a part manifest, and
``minwa.data.merge`` joins the parts into the manifest a single pack writes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from minwa.data import decode as dec
from minwa.data.index import index_bytes
from minwa.data.parts import Part, hold_parts, is_part_file, write_part_manifest
from minwa.data.shards import FORMAT, SAFE_SHARD, VERSION, TarShardWriter, shard_name
from minwa.data.sources import ImageDataset, open_dataset
from minwa.errors import MinwaError, require_path
from minwa.utils.atomic import atomic_open, atomic_write_bytes, atomic_write_json
from minwa.utils.folder_lock import LOCK_NAME, hold_folder
from minwa.utils.oserrors import NoSpace
from minwa.utils.output import check_name_fits, prepare_output_folder

DEFAULT_MAX_SIDE = 512
DEFAULT_SHARD_SIZE = 5000


def pack_permutation(n: int, seed: int) -> np.ndarray:
    """The order of samples across shards (a stream apart from the training epochs' permutations)."""
    ss = np.random.SeedSequence([int(seed) & (2**64 - 1), 0x7061636B])  # "pack"
    return np.random.Generator(np.random.PCG64(ss)).permutation(n).astype(np.int64)


def _plan_id(dataset: ImageDataset, settings: dict) -> str:
    """Names what a shard holds; the format version is part of it, so re-running a pack over shards of an
    older format rewrites them (with per-sample checksums) instead of keeping them."""
    text = json.dumps({"source": dataset.fingerprint(), "n": len(dataset), "settings": settings, "format": VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- one shard, anywhere
_WORK: dict = {}


def _init_worker(dataset, out, order, settings, plan):
    _WORK.update(dataset=dataset, out=Path(out), order=order, settings=settings, plan=plan)


def _write_shard(k: int) -> dict:
    ds: ImageDataset = _WORK["dataset"]
    out: Path = _WORK["out"]
    order, settings, plan = _WORK["order"], _WORK["settings"], _WORK["plan"]
    size = settings["shard_size"]
    name = shard_name(k)
    rejected, hist = [], {}
    keys = range(k * size, min((k + 1) * size, len(order)))
    writer = None
    try:
        with atomic_open(out / f"{name}.tar", "wb") as f:
            writer = TarShardWriter(f)
            _fill_shard(writer, ds, order, keys, settings, rejected, hist)
            index = writer.close()
            tar_sha, tar_bytes = writer.sha.hexdigest(), writer.pos
    except NoSpace as e:  # the whole shard's size, estimated from the part that was written
        done = len(writer.rows) if writer else 0
        if not done:
            raise
        raise NoSpace(e.path, writer.pos * len(keys) // done, "about ") from None
    return finish_shard(out, k, index, tar_sha, tar_bytes, plan, len(ds.classes), rejected, hist)


def finish_shard(out: Path, k: int, index: np.ndarray, tar_sha: str, tar_bytes: int, plan: str, num_classes: int,
                 rejected: list, hist: dict) -> dict:
    """After shard ``k``'s tar: write its ``.idx`` and its ``.json`` record (the record a part manifest and
    ``shard_manifest`` read); returns the record. ``hist``: {(height, width): samples}."""
    name = shard_name(k)
    idx = index_bytes(index)
    atomic_write_bytes(out / f"{name}.idx", idx)
    record = {
        "name": f"{name}.tar", "index": f"{name}.idx", "num_samples": int(len(index)),
        "bytes": tar_bytes, "sha256": tar_sha, "index_sha256": hashlib.sha256(idx).hexdigest(),
        "plan": plan, "rejected": rejected,
        "sizes": [[h, w, c] for (h, w), c in sorted(hist.items())],
        "class_counts": np.bincount(index["label"], minlength=num_classes).tolist(),
    }  # fmt: skip
    atomic_write_json(out / f"{name}.json", record)
    return record


def _fill_shard(writer: TarShardWriter, ds: ImageDataset, order, keys, settings, rejected: list, hist: dict) -> None:
    for key in keys:
        i = int(order[key])
        try:
            data, ext, h, w = ds.pack_item(i, max_side=settings["max_side"], quality=settings["quality"])
        except dec.Rejected as e:
            rejected.append({"path": ds.source(i), "reason": str(e)})
            continue
        writer.add(key, data, ext, int(ds.labels[i]), h, w, i)
        hist[(h, w)] = hist.get((h, w), 0) + 1


def _done_record(out: Path, k: int, plan: str) -> dict | None:
    """The shard's record if it was completed for this very plan (and its files are all there)."""
    name = shard_name(k)
    try:
        record = json.loads((out / f"{name}.json").read_text())
        ok = (
            record.get("plan") == plan
            and (out / f"{name}.tar").stat().st_size == record["bytes"]
            and (out / f"{name}.idx").is_file()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if ok else None


def _is_temporary(p: Path, part: Part | None = None) -> bool:
    """A temporary file of an unfinished write; with ``part``, only one of that part's own files (the other
    parts may be writing theirs into the same folder right now)."""
    return p.name.startswith(".") and p.name.endswith(".tmp") and (part is None or part.owns_file(p.name))


def _remove_temporaries(out: Path, part: Part | None = None) -> None:
    """Delete the temporary files of shards that were being written (workers stopped mid-write)."""
    for p in out.iterdir():
        if _is_temporary(p, part):
            p.unlink(missing_ok=True)


def _prepare_out(out: Path, num_shards: int, part: Part | None = None) -> None:
    """Make ``out`` ours: refuse a foreign non-empty folder, drop the manifest, temporary files and
    shards beyond the new plan. A whole pack also drops part manifests (it supersedes them); a part drops
    only its own manifest and temporary files."""
    entries = [p for p in out.iterdir()]
    ours = lambda p: (SAFE_SHARD.match(p.name) or p.name in ("manifest.json", LOCK_NAME) or _is_temporary(p)  # noqa: E731
                      or is_part_file(p.name))
    foreign = [p.name for p in entries if not ours(p)]
    if foreign:
        raise MinwaError(f"output folder {out} already holds other files ({', '.join(sorted(foreign)[:3])}...); choose an empty or new folder")
    stale = {"manifest.json", part.manifest_name} if part else {"manifest.json"}
    for p in entries:
        if p.name in stale or _is_temporary(p, part) or (part is None and p.name.startswith("part-")):
            p.unlink(missing_ok=True)
        elif SAFE_SHARD.match(p.name) and int(p.name[6:].split(".")[0]) >= num_shards:
            p.unlink(missing_ok=True)


def _refuse_out_inside(out: Path, source: Path) -> None:
    if out.resolve() == source.resolve() or (source.is_dir() and out.resolve().is_relative_to(source.resolve())):
        raise MinwaError(f"output {out} is inside the source {source}; choose a folder outside it")


def pack(
    src,
    out,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    quality: int = 90,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 0,
    seed: int = 0,
    split: str | None = None,
    progress: bool = True,
    part: Part | None = None,
) -> dict:
    """Pack ``src`` (any source ``open_dataset`` reads) into shards in ``out``; returns the manifest.

    ``max_side``: an image whose shorter side is larger is re-encoded with that shorter side (0 = never);
    ``shard_size``: samples per shard; ``workers``: packing processes (0 = one per CPU core this process
    may use). Inputs that cannot be packed are listed in ``manifest["rejected"]``; the pack still succeeds.
    ``out`` is checked writable before the source is read and held by this pack until it ends.
    ``part``: write only that part of the plan and return its part manifest (``minwa.data.parts``);
    ``minwa.data.merge.merge(out)`` then joins the parts.
    """
    out = Path(out).expanduser()
    if not 1 <= int(quality) <= 100:
        raise MinwaError(f"quality must be 1..100, got {quality}")
    if int(shard_size) < 1:
        raise MinwaError(f"shard size must be at least 1 sample, got {shard_size}")
    if int(max_side) < 0:
        raise MinwaError(f"max side must be 0 (no limit) or positive, got {max_side}")
    settings = {"max_side": int(max_side), "quality": int(quality), "shard_size": int(shard_size), "seed": int(seed)}
    check_name_fits(out, "output folder")
    _refuse_out_inside(out, src.path if isinstance(src, ImageDataset) else require_path(src, "data"))
    prepare_output_folder(out, "output folder")
    command, lock = (f"minwa pack --part {part}", part.lock_name) if part else ("minwa pack", LOCK_NAME)
    with hold_folder(out, command, name=lock), hold_parts(out, command, [] if part else None):
        dataset = src if isinstance(src, ImageDataset) else open_dataset(src, split=split)
        _refuse_out_inside(out, dataset.path)
        return _pack_into(dataset, out, settings, int(workers), progress, part)


def _pack_into(dataset: ImageDataset, out: Path, settings: dict, workers: int, progress: bool,
               part: Part | None = None) -> dict:
    n = len(dataset)
    num_shards = -(-n // settings["shard_size"]) if n else 0
    plan = _plan_id(dataset, settings)
    _prepare_out(out, num_shards, part)
    order = pack_permutation(n, settings["seed"])
    mine = part.shards(num_shards) if part else range(num_shards)

    records = ShardRecords(len(dataset.classes), keep_counts=part is not None)
    todo = []
    for k in mine:
        rec = _done_record(out, k, plan)
        if rec is None:
            todo.append(k)
        else:
            records[k] = rec
    workers = workers or len(os.sched_getaffinity(0))  # the cores this process may use (a SLURM task's)
    workers = max(1, min(workers, len(todo)))
    t0 = time.perf_counter()
    bar = ShardProgress(progress, len(mine), len(records), f"packing {dataset.describe()}" + (f", {part.describe()}" if part else ""))
    try:
        with bar:
            _write_shards(todo, records, workers, bar, (dataset, out, order, settings, plan))
    except NoSpace as e:  # the rest of the pack, estimated from the shards' sizes
        _remove_temporaries(out, part)
        per_shard = np.mean([r["bytes"] for r in records.values()]) if records else e.needed
        if not per_shard:
            raise
        raise NoSpace(e.path, int(per_shard * (len(mine) - len(records))), "about ") from None
    except BaseException:
        _remove_temporaries(out, part)
        raise
    if part:
        return write_part_manifest(out, part, plan=plan, settings=settings, source=source_info(dataset),
                                   num_shards=num_shards, records=[records[k] for k in mine],
                                   seconds=time.perf_counter() - t0)
    manifest = shard_manifest(source_info(dataset), settings, [records[k] for k in range(num_shards)], records.counts)
    manifest["pack_seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


class ShardRecords(dict):
    """The shards' records by shard number, as a pack collects them. For a whole pack, each record's class
    counts (a list over every class) are added to ``counts`` and dropped as it arrives: kept, they grew as
    shards x classes (2,840 x 21,841 for ImageNet-21k: 0.8 GB of the packing process, docs/BENCHMARKS.md
    §16). A part keeps them (``counts`` None): its manifest lists them, and the merge adds them up."""

    def __init__(self, num_classes: int, keep_counts: bool = False):
        super().__init__()
        self.counts = None if keep_counts else np.zeros(num_classes, np.int64)

    def __setitem__(self, k: int, record: dict) -> None:
        if self.counts is not None:
            record = dict(record)
            self.counts += np.asarray(record.pop("class_counts"), np.int64)
        super().__setitem__(k, record)


def _write_shards(todo: list[int], records: dict, workers: int, bar, work: tuple) -> None:
    """Write the shards ``todo`` into ``records``, in this process or in ``workers`` processes."""
    if workers == 1:
        _init_worker(*work)
        for k in todo:
            records[k] = _write_shard(k)
            bar.advance()
    elif todo:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        with ctx.Pool(workers, initializer=_init_worker, initargs=work) as pool:
            for rec in pool.imap_unordered(_write_shard, todo):
                records[int(rec["name"][6:11])] = rec
                bar.advance()


def source_info(dataset: ImageDataset) -> dict:
    """What the manifest says about the source, apart from the shards (a part manifest carries it, so the
    merge writes the manifest without opening the source)."""
    return {"classes": list(dataset.classes), "channels": int(dataset.channels), "skipped": list(dataset.skipped),
            "source": {"kind": dataset.kind, "path": str(dataset.path), "split": dataset.split,
                       "num_inputs": len(dataset) + len(dataset.skipped)}}


def shard_manifest(source: dict, settings: dict, records: list[dict], counts: np.ndarray | None = None) -> dict:
    """``manifest.json`` of the shards ``records`` (in shard order) of a source (``source_info``); ``counts``:
    their samples per class, when already added up (``ShardRecords``), else from the records."""
    sizes: dict[tuple[int, int], int] = {}
    if counts is None:
        counts = np.zeros(len(source["classes"]), np.int64)
        for r in records:
            counts += np.asarray(r["class_counts"], np.int64)
    for r in records:
        for h, w, c in r["sizes"]:
            sizes[(h, w)] = sizes.get((h, w), 0) + c
    keep = ("name", "index", "num_samples", "bytes", "sha256", "index_sha256")
    rejected = list(source["skipped"]) + [x for r in records for x in r["rejected"]]
    from minwa import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "num_samples": int(sum(r["num_samples"] for r in records)),
        "num_classes": len(source["classes"]),
        "classes": list(source["classes"]),
        "class_counts": counts.tolist(),
        "channels": int(source["channels"]),
        "image_size": list(next(iter(sizes))) if len(sizes) == 1 else None,
        "shards": [{k: r[k] for k in keep} for r in records],
        "settings": settings,
        "source": dict(source["source"]),
        "rejected": rejected,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "minwa_version": __version__,
    }  # fmt: skip


class ShardProgress:
    """A rich progress bar over shards when asked for and attached to a terminal."""

    def __init__(self, enabled: bool, total: int, done: int, title: str):
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("shards"), TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task(title, total=total, completed=done)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def advance(self):
        if self.bar:
            self.bar.advance(self.task)
