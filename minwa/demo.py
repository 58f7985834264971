"""The main job end to end, on Fashion-MNIST: pack → train → evaluate → checkpoint → predict.

``run_demo(data, out)`` is what ``make demo`` and ``minwa demo`` run: the training split is packed into
shards (reused when a sound pack is already there), the default recipe trains from the shards, the
checkpoint is evaluated on the 10,000 test images (top-1/top-5 error, mean per-class accuracy, per-class
table, confusion matrix), and a few test images written as PNG files are classified by ``predict``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

from minwa import config as config_io
from minwa.data import open_dataset, pack, verify
from minwa.errors import MinwaError, require_path
from minwa.evaluate import EvalConfig, evaluate, predict, print_report, write_outputs
from minwa.train import train
from minwa.train.recipes import get_recipe
from minwa.utils.atomic import atomic_open, atomic_write_json


@dataclass
class DemoResult:
    out: Path
    checkpoint: Path
    test_accuracy: float
    seconds: float
    pack_seconds: float
    train_seconds: float
    eval_seconds: float


def _sound_pack(shards: Path) -> bool:
    return (shards / "manifest.json").is_file() and not verify(shards)


def write_sample_images(dataset, folder: Path, count: int = 5) -> list[Path]:
    """Save ``count`` test images (spread over the set) as PNG files, named by index and true class."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        i = (k * 1999) % len(dataset)
        img = dataset.image(i)
        label = dataset.classes[int(dataset.labels[i])].replace("/", "-").replace(" ", "_")
        path = folder / f"test{i:05d}_{label}.png"
        with atomic_open(path, "wb") as f:
            Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(f, format="PNG")
        paths.append(path)
    return paths


def print_predictions(results: list[dict], console) -> None:
    """One row per image: its file name, then the top-k classes with their probabilities."""
    table = Table(title=f"predictions (top-{max(len(r['top']) for r in results)})")
    table.add_column("image", no_wrap=True)
    table.add_column("classes, most likely first")
    for r in results:
        table.add_row(Path(r["image"]).name, ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"]))
    console.print(table)


def run_demo(data: str, out: str = "runs/demo", overrides: list[str] | None = None, progress: bool = True,
             console=None) -> DemoResult:
    console = console or Console()
    t0 = time.perf_counter()
    data_path = require_path(data, "Fashion-MNIST folder (--data)")
    test_set = open_dataset(str(data_path), split="test")  # fails early, in one sentence, on a bad folder
    out_dir = Path(out)
    shards = out_dir / "shards"

    console.rule("[bold]1. pack the training set into shards")
    t = time.perf_counter()
    if _sound_pack(shards):
        console.print(f"reusing the verified pack in {shards}")
    else:
        pack(str(data_path), str(shards), split="train", progress=progress)
    pack_seconds = time.perf_counter() - t

    console.rule("[bold]2. train the default recipe")
    cfg = config_io.load(get_recipe("fashion"), None,
                         [f"data.train={shards}", f"data.val={data_path}", f"out={out_dir / 'run'}",
                          "overwrite=true"] + list(overrides or []))  # a demo run again replaces its own run
    result = train(cfg, progress=progress)
    if result.checkpoint is None:
        raise MinwaError("training finished without a checkpoint")

    console.rule("[bold]3. evaluate on the 10,000 test images")
    t = time.perf_counter()
    report = evaluate(EvalConfig(data=str(data_path), ckpts=[str(result.checkpoint)], flip=True,
                                 out=str(out_dir / "eval")), progress=progress)
    write_outputs(report, out_dir / "eval")
    print_report(report, console)
    eval_seconds = time.perf_counter() - t

    console.rule("[bold]4. predict a few test images")
    samples = write_sample_images(test_set, out_dir / "samples")
    print_predictions(predict([str(result.checkpoint)], [str(p) for p in samples], topk=5, flip=True), console)

    seconds = time.perf_counter() - t0
    acc = report.top1_accuracy
    summary = {"test_accuracy": acc, "top5_accuracy": 1 - report.topk_error,
               "mean_per_class_accuracy": report.mean_class_accuracy, "seconds": seconds,
               "pack_seconds": pack_seconds, "train_seconds": result.train_seconds, "eval_seconds": eval_seconds,
               "checkpoint": str(result.checkpoint)}
    atomic_write_json(out_dir / "summary.json", summary)
    console.rule("[bold]done")
    console.print(f"test accuracy {acc:.2%} (top-5 {1 - report.topk_error:.2%}) in {seconds:.0f} s "
                  f"(pack {pack_seconds:.0f} s, train {result.train_seconds:.0f} s); run folder {out_dir}")
    return DemoResult(out_dir, result.checkpoint, acc, seconds, pack_seconds, result.train_seconds, eval_seconds)


def summary(out: str) -> dict:
    return json.loads((Path(out) / "summary.json").read_text())
