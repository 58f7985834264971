"""`minwa bench highres`: the paper's high-resolution claims (seeds/002 §4.2, §5) shown on photographs.

One run, plain Python calls from JPEG folders to a table:

1. data: ``make_small_objects`` (Fashion-MNIST items pasted small on real wallpaper photographs) in
   ``work/data-<train>-<test>-s<seed>``, reused when its README.json says it is complete; or ``data``.
2. ``minwa.data.pack`` of both splits, shorter side kept up to the largest test scale.
3. three models of one family (``model``), each trained for the same ``budget_s`` seconds:
   ``low`` (``low_scale``/``low_crop``, the ``deepimage`` augmentation), ``high`` (``high_scale``/
   ``high_crop``, ``deepimage``) and ``flipcrop`` (high scale, flips and random crops only).
   How the budget is spent: the same wall-clock seconds per model (validation excluded), so the cheaper
   low-resolution model sees more epochs. Each model's one-cycle schedule is stretched over the epochs its
   measured speed fits into the budget (a few timed steps first), so no run is cut off at a high learning
   rate; ``time_budget_s`` still stops it at the budget.
4. ``minwa.evaluate.evaluate`` of low + high together, each at its own test scales, with flips, then again
   dense (whole images): every row (model @ scale, + multi-scale, + flip, + dense, fused) in two passes.
5. robustness: ``high`` against ``flipcrop`` on the test set corrupted at graded severities
   (``minwa.evaluate.robustness``), curves in robustness.png.
6. a reading: each claim with the numbers that decide it, "within noise" when the difference is under two
   standard errors of the test set's size. Nothing is stated that the numbers do not say.

The high-resolution run is profiled per batch (time waiting for the loader, in the augmenter, in the rest
of the step), from the real training run, by wrapping the trainer's loader and augmenter.
``quick``: ``make test``'s pipeline check (``QUICK``): 2,000 small photographs whose items fill half the
picture or more, 8 epochs per model, small scales (40/32 and 80/64); it must learn, not only run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from minwa import config as config_io
from minwa.augment import AugmentConfig
from minwa.benchmarks.config import HighresBenchConfig
from minwa.benchmarks.throughput import endless
from minwa.data import open_dataset, pack
from minwa.data.config import DataConfig
from minwa.errors import MinwaError
from minwa.evaluate import EvalConfig, evaluate
from minwa.evaluate.robustness import plot_robustness, robustness_curves
from minwa.models.config import ModelConfig
from minwa.synth.small_objects import make_small_objects
from minwa.train import Trainer
from minwa.train.config import TrainConfig
from minwa.train.recipes import photos
from minwa.utils.atomic import atomic_write_json
from minwa.utils.device import resolve_device

# quick: the values `make test` runs with (fields still at their full-run defaults take these)
# (photo-net needs 32 px at least: a 4-px stem and three 2x pools)
# A pipeline check that must learn: items 50-80% of the picture (the issue's 8-20% stay at chance for
# hundreds of steps, docs/BENCHMARKS.md §11), 2,000 photographs of 128 px (quick to make; the largest
# test scale is 96), 8 epochs per model whatever the machine's speed.
QUICK = dict(train_images=2000, test_images=200, short_side=128, object_side=[0.5, 0.8], epochs=8.0,
             batch_size=16, low_scale=40, low_crop=32, high_scale=80, high_crop=64, low_test_scales=[32, 40, 48],
             high_test_scales=[64, 80, 96], robust_limit=100)
CALIBRATE = (2, 6, 3.0)  # warm-up steps, then at least 6 timed steps and 3 s: each schedule's size


def resolve_quick(cfg: HighresBenchConfig) -> HighresBenchConfig:
    """``cfg`` with the quick values filled in where ``quick`` is on and a field was left at its default."""
    if not cfg.quick:
        return cfg
    defaults = HighresBenchConfig()
    return dataclasses.replace(cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)})


# ------------------------------------------------------------------------------------------------ data
def prepare_data(cfg: HighresBenchConfig, work: Path, say) -> tuple[Path, Path]:
    """The packed train and test shards; the data set made first unless ``cfg.data`` names one."""
    src = Path(cfg.data) if cfg.data else work / data_folder(cfg)
    if not cfg.data and not _complete(src, cfg):
        say(f"making {cfg.train_images} + {cfg.test_images} small-object photographs in {src}")
        make_small_objects(src, train=cfg.train_images, test=cfg.test_images, seed=cfg.seed, progress=False,
                           overwrite=True, short_side=cfg.short_side, object_side=tuple(cfg.object_side))
    for split in ("train", "test"):
        if not (src / split).is_dir():
            raise MinwaError(f"{src} has no {split}/ folder (an ImageFolder with train/ and test/ is needed)")
    max_side = max(cfg.low_test_scales + cfg.high_test_scales + [cfg.high_scale])
    shards = {}
    for split in ("train", "test"):
        shards[split] = work / "shards" / split
        pack(src / split, shards[split], max_side=max_side, seed=cfg.seed, progress=False)  # kept if already packed
    return shards["train"], shards["test"]


def data_folder(cfg: HighresBenchConfig) -> str:
    """The made data set's folder name: its counts and seed, and its geometry where not the issue's."""
    name = f"data-{cfg.train_images}-{cfg.test_images}-s{cfg.seed}"
    issue = HighresBenchConfig()
    if cfg.short_side != issue.short_side or list(cfg.object_side) != issue.object_side:
        name += f"-{cfg.short_side}px-items{cfg.object_side[0]:g}-{cfg.object_side[1]:g}"
    return name


def _complete(folder: Path, cfg: HighresBenchConfig) -> bool:
    """make_small_objects writes README.json last: present with these settings = complete."""
    try:
        made = json.loads((folder / "README.json").read_text())
    except (OSError, ValueError):
        return False
    return (made.get("seed") == cfg.seed and made.get("counts") == {"train": cfg.train_images, "test": cfg.test_images}
            and made.get("short_side") == cfg.short_side
            and [float(x) for x in made.get("object_side_fraction") or []] == [float(x) for x in cfg.object_side])


# ----------------------------------------------------------------------------------------------- train
# the two augmentations compared: Table 1's, and flips with random crops only (AugmentConfig's random_crop)
AUGMENTS = {"deepimage": lambda: AugmentConfig().with_preset("deepimage"),
            "flips+crops": lambda: dataclasses.replace(AugmentConfig().with_preset("none"), flip=True)}


def train_config(cfg: HighresBenchConfig, name: str, shards: Path, scale: int, crop: int, augment: str,
                 epochs: float) -> TrainConfig:
    """The ``photos`` recipe at (scale, crop) with ``augment``, no validation, ``cfg.train`` applied last.

    Training squares are the photographs' central squares (``data.square = "centre"``), where the data set
    puts every item: the recipe's random square along the long side cut off part or all of many items (in
    a 16:9 photograph a square at one end leaves out 39% of the central square)."""
    base = photos()
    run = dataclasses.replace(
        base, recipe=f"highres-{name}", out=str(Path(cfg.work) / "runs" / name), overwrite=True, seed=cfg.seed,
        epochs=epochs, time_budget_s=0.0 if cfg.epochs > 0 else cfg.budget_s, eval_every=0.0, save_every=0.0,
        log_every=10**6,
        runtime=cfg.runtime,
        data=dataclasses.replace(base.data, train=str(shards), val="", val_fraction=0.0, scale=scale, crop=crop,
                                 batch_size=cfg.batch_size, seed=cfg.seed, square="centre"),
        augment=AUGMENTS[augment](), model=ModelConfig(name=cfg.model))
    return config_io.merge(run, cfg.train)


def calibrate(train_cfg) -> float:
    """Training images/s of ``train_cfg`` over a few steps (one warm-up), to size its schedule."""
    warmup, steps, seconds = CALIBRATE
    trainer = Trainer(dataclasses.replace(train_cfg, epochs=1e6), report=False)
    try:
        batches = endless(trainer.loader)
        for _ in range(warmup):
            trainer.train_step(next(batches))
        t, n = time.perf_counter(), 0
        while n < steps or time.perf_counter() - t < seconds:
            trainer.train_step(next(batches))
            n += 1
        return n * trainer.global_batch / (time.perf_counter() - t)
    finally:
        trainer.close()


class Timed:
    """Calls of ``obj`` timed into ``seconds``; attributes pass through (``augmenter.eval`` untimed)."""

    def __init__(self, obj, seconds: list, sync):
        self._obj, self._seconds, self._sync = obj, seconds, sync

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        out = self._obj(*args, **kwargs)
        self._sync()
        self._seconds.append(time.perf_counter() - t)
        return out

    def __getattr__(self, name):
        return getattr(self._obj, name)


class TimedLoader:
    """The trainer's loader, timing each wait for a batch and each step between two batches."""

    def __init__(self, loader, waits: list, steps: list, sync):
        self._loader, self._waits, self._steps, self._sync = loader, waits, steps, sync

    def __iter__(self):
        it = iter(self._loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            handed = time.perf_counter()
            self._waits.append(handed - t)
            yield batch
            self._sync()
            self._steps.append(time.perf_counter() - handed)

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def profile_summary(waits, augment, steps, batch: int) -> dict:
    """Median milliseconds per batch of each phase (the first batch, warm-up, left out) and the slowest."""
    phases = {"loader_wait": waits[1:len(steps)], "augment": augment[1:len(steps)],
              "model_step": [s - a for s, a in zip(steps[1:], augment[1:])]}
    ms = {k: round(1e3 * statistics.median(v), 2) for k, v in phases.items() if v}
    return {"batch": batch, "batches": len(steps), "median_ms": ms,
            "images_per_s": {k: round(batch / (v / 1e3), 1) for k, v in ms.items() if v > 0},
            "bottleneck": max(ms, key=ms.get) if ms else None}


def train_model(cfg: HighresBenchConfig, name: str, shards: Path, scale: int, crop: int, augment: str,
                n_train: int, profile: bool, say) -> dict:
    """One model for ``cfg.budget_s`` seconds, its schedule spanning the epochs its measured speed fits;
    or, with ``cfg.epochs``, for that many epochs."""
    probe = train_config(cfg, name, shards, scale, crop, augment, epochs=1.0)
    if cfg.epochs > 0:
        rate, epochs = None, cfg.epochs
        say(f"{name}: {scale}/{crop}, {augment}, {epochs:g} epochs")
    else:
        rate = calibrate(probe)
        epochs = max(1.0, round(cfg.budget_s * rate / n_train, 2))
        say(f"{name}: {scale}/{crop}, {augment}, {rate:.0f} images/s measured -> {epochs:g} epochs in {cfg.budget_s:g} s")
    trainer = Trainer(dataclasses.replace(probe, epochs=epochs), report=False)
    waits, augmenting, steps = [], [], []
    if profile:
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        trainer.loader = TimedLoader(trainer.loader, waits, steps, sync)
        trainer.augmenter = Timed(trainer.augmenter, augmenting, sync)
    try:
        r = trainer.fit()
    finally:
        trainer.close()
    out = {"scale": scale, "crop": crop, "augment": augment, "checkpoint": str(r.checkpoint),
           "calibrated_images_per_s": None if rate is None else round(rate, 1), "planned_epochs": epochs, "epochs": round(r.epochs, 2),
           "train_seconds": round(r.train_seconds, 1), "images_per_s": round(r.images_per_s, 1)}
    if profile:
        out["profile"] = profile_summary(waits, augmenting, steps, trainer.global_batch)
    return out


# -------------------------------------------------------------------------------------------- evaluate
def evaluate_models(cfg: HighresBenchConfig, runs: dict, test: Path, device: str) -> list[dict]:
    """Every row for low + high: single scales, multi-scale, +flip, fused; then the same dense."""
    scales = {"low": cfg.low_test_scales, "high": cfg.high_test_scales}
    ckpts = [runs["low"]["checkpoint"], runs["high"]["checkpoint"]]
    rows = []
    for dense in ((False, True) if cfg.dense else (False,)):
        ecfg = EvalConfig(data=str(test), ckpts=ckpts, flip=cfg.flip, dense=dense, batch_size=64,
                          limit=cfg.eval_limit, runtime=dataclasses.replace(cfg.runtime, device=device))
        report = evaluate(ecfg, member_scales=scales)
        for row in report.rows:
            rows.append({"name": row["name"] + (" +dense" if dense else ""), "member": row["member"] or "fused",
                         "dense": dense, "views": len(row["views"]) if row["views"] else None,
                         "top1_error": row["top1_error"], "top5_error": row["topk_error"],
                         "mean_class_accuracy": row["mean_class_accuracy"], "images": report.images})
    return rows


def table_rows(rows: list[dict], cfg: HighresBenchConfig) -> list[dict]:
    """The paper's layout: per model its single scales, all scales, + flip, + dense; then fused."""
    keep = []
    for member, scales in (("low", cfg.low_test_scales), ("high", cfg.high_test_scales)):
        multi = ",".join(map(str, scales))
        wanted = [f"{member} @{s}" for s in scales] + [f"{member} @{multi}"] * (len(scales) > 1)
        if cfg.flip:
            wanted.append(f"{member} @{multi if len(scales) > 1 else scales[0]} +flip")
        if cfg.dense:
            wanted.append(wanted[-1] + " +dense")
        keep += [r for w in wanted for r in rows if r["name"] == w]
    keep += [r for r in rows if r["member"] == "fused"]
    return keep


def best_row(rows: list[dict], member: str, dense: bool = False) -> dict:
    """The member's everything-averaged row (all its scales, with flips when on) of one pass."""
    return [r for r in rows if r["member"] == member and r["dense"] == dense][-1]


# --------------------------------------------------------------------------------------------- reading
def _compare(claim: str, err_a: float, err_b: float, n: int, a: str, b: str) -> dict:
    """``a`` against ``b`` on top-1 error: held when a is lower by more than two standard errors."""
    se = math.sqrt(max(err_a * (1 - err_a) + err_b * (1 - err_b), 1e-12) / max(n, 1))
    diff = err_b - err_a  # positive: a has the lower error
    held = True if diff > 2 * se else False if diff < -2 * se else None
    verdict = {True: "held", False: "did not hold", None: "within noise"}[held]
    return {"claim": claim, "held": held, "difference_points": round(100 * diff, 2), "two_se_points": round(200 * se, 2),
            "text": f"{claim}: {verdict} ({a} top-1 error {err_a:.1%} vs {b} {err_b:.1%}, "
                    f"{'+' if diff >= 0 else ''}{100 * diff:.1f} points for {a}; 2 s.e. = {200 * se:.1f})"}


def reading(rows: list[dict], runs: dict, robust: dict | None) -> list[dict]:
    """What held and what did not, each from the numbers in ``rows`` and ``robust``."""
    n = rows[0]["images"]
    low, high = best_row(rows, "low"), best_row(rows, "high")
    out = [_compare("training on higher resolution improves accuracy", high["top1_error"], low["top1_error"], n,
                    "high", "low")]
    same = "epochs" if runs["low"]["calibrated_images_per_s"] is None else "time"
    out[-1]["text"] += (f"; in the same {same} low trained {runs['low']['epochs']:g} epochs "
                        f"({runs['low']['train_seconds']:g} s), high {runs['high']['epochs']:g} ({runs['high']['train_seconds']:g} s)")
    fused = [r for r in rows if r["member"] == "fused" and not r["dense"]]
    if fused:
        best = min((low, high), key=lambda r: r["top1_error"])
        out.append(_compare("the fused low + high model beats the better one alone", fused[0]["top1_error"],
                            best["top1_error"], n, "fused", best["member"]))
    for member in ("low", "high"):
        single = next(r for r in rows if r["member"] == member and not r["dense"] and r["views"] == 1)
        multi = best_row(rows, member)
        if multi is not single:
            out.append(_compare(f"multi-scale (+flip) testing helps {member}", multi["top1_error"],
                                single["top1_error"], n, multi["name"], single["name"]))
        dense = [r for r in rows if r["member"] == member and r["dense"]]
        if dense:
            out.append(_compare(f"dense (whole image) testing helps {member}", dense[-1]["top1_error"],
                                multi["top1_error"], n, "dense", "centre crops"))
    if robust:
        out += robust_reading(robust)
    return out


def robust_reading(robust: dict) -> list[dict]:
    """The augmented model against flips + crops only, per family: mean accuracy over the corrupted
    severities (severity 0, the clean set, left out)."""
    acc, sev = robust["accuracy"], robust["severities"]
    corrupted = [j for j, s in enumerate(sev) if s != 0]
    out = []
    for family in robust["families"]:
        a, b = (statistics.mean(acc[m][family][j] for j in corrupted) for m in ("high", "flipcrop"))
        out.append(_compare(f"deepimage augmentation is more robust to {family}", 1 - a, 1 - b, robust["images"],
                            "deepimage", "flips+crops"))
    return out


# ------------------------------------------------------------------------------------------------- run
def run(cfg: HighresBenchConfig) -> int:
    cfg = resolve_quick(cfg)
    t0 = time.perf_counter()
    console = Console(stderr=cfg.json)
    work = Path(cfg.work)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    device = str(resolve_device(cfg.runtime.device))

    def say(line: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:6.0f}s[/dim] {line}", highlight=False)

    train, test = prepare_data(cfg, work, say)
    n_train = len(open_dataset(train))
    times = {"data_s": round(time.perf_counter() - t0, 1)}
    runs = {}
    for name, scale, crop, augment in (("low", cfg.low_scale, cfg.low_crop, "deepimage"),
                                      ("high", cfg.high_scale, cfg.high_crop, "deepimage"),
                                      ("flipcrop", cfg.high_scale, cfg.high_crop, "flips+crops")):
        runs[name] = train_model(cfg, name, train, scale, crop, augment, n_train, profile=name == "high", say=say)
    times["train_s"] = round(time.perf_counter() - t0 - times["data_s"], 1)
    say("evaluating low and high at their test scales" + (", flipped" if cfg.flip else "")
        + (", then dense" if cfg.dense else ""))
    rows = evaluate_models(cfg, runs, test, device)
    robust = None
    if cfg.robustness:
        say("robustness: high (deepimage) vs flipcrop under corruptions")
        robust = robustness_curves({"high": runs["high"]["checkpoint"], "flipcrop": runs["flipcrop"]["checkpoint"]},
                                   open_dataset(test), scale=cfg.high_scale, limit=cfg.robust_limit or None,
                                   device=device, threads=cfg.runtime.threads, precision=cfg.runtime.precision)
        robust["png"] = str(plot_robustness(robust, work / "robustness.png",
                                            title="deepimage vs flips+crops only, same budget"))
    times["total_s"] = round(time.perf_counter() - t0, 1)
    result = {"config": dataclasses.asdict(cfg), "device": device, "threads": torch.get_num_threads(),
              "runs": runs, "table": table_rows(rows, cfg), "rows": rows, "robustness": robust,
              "reading": reading(rows, runs, robust), "seconds": times}
    atomic_write_json(work / "results.json", result)
    if cfg.json:
        print(json.dumps(result, indent=2))
    else:
        show(result, console, work)
    return 0


def show(result: dict, console: Console, work: Path) -> None:
    runs = result["runs"]
    table = Table(title=f"small objects, {result['table'][0]['images']} test images: one model per scale, then fused")
    for c in ("", "top-1 error", "top-5 error", "mean per-class acc."):
        table.add_column(c, justify="right" if c else "left")
    for r in result["table"]:
        table.add_row(r["name"], f"{r['top1_error']:.1%}", f"{r['top5_error']:.1%}", f"{r['mean_class_accuracy']:.1%}")
    console.print(table)
    for name, r in runs.items():
        console.print(f"{name}: {r['scale']}/{r['crop']} {r['augment']}, {r['epochs']:g} epochs in "
                      f"{r['train_seconds']:g} s, {r['images_per_s']:g} images/s", highlight=False)
    prof = runs["high"].get("profile")
    if prof and prof["median_ms"]:
        ms = ", ".join(f"{k} {v:g} ms" for k, v in prof["median_ms"].items())
        console.print(f"high-resolution profile, per batch of {prof['batch']} (median): {ms}; "
                      f"bottleneck: {prof['bottleneck']}", highlight=False)
    console.print("[bold]what held and what did not[/bold]")
    for line in result["reading"]:
        console.print(f"- {line['text']}", highlight=False)
    console.print(f"results: {work / 'results.json'}" + (f", curves: {result['robustness']['png']}"
                                                         if result["robustness"] else ""), highlight=False)
