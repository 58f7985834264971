"""`minwa bench train`: time to accuracy of a minwa recipe against a plain PyTorch script, one run.

minwa trains first (in this process, the recipe as ``minwa train`` would run it), then the peer
(``bench/peer_train.py``, a separate process as its users run it) with the same budget on the same
machine. Reported: wall time to the target test accuracy, final accuracy, training images/s, and for
minwa the model FLOPs per image and achieved FLOP/s against the peak of ``minwa.benchmarks.peak`` for
the recipe's precision on the training device (an MFU above 100% is flagged ``peak_suspect``). Packing
is excluded from the timed region and reported separately.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from minwa import config as config_io
from minwa.benchmarks.config import TrainBenchConfig
from minwa.benchmarks.peak import Peak, mfu_fields, mfu_line, training_peak
from minwa.data import pack
from minwa.errors import MinwaError
from minwa.train import Trainer
from minwa.train.recipes import get_recipe

PEER = Path(__file__).resolve().parents[2] / "bench" / "peer_train.py"



def forward_flops_per_image(model: torch.nn.Module, in_chans: int, size: int) -> float:
    x = torch.randn(8, in_chans, size, size, dtype=next(model.parameters()).dtype)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    model.train(was)
    return fc.get_total_flops() / 8


def run_minwa(bench: TrainBenchConfig) -> tuple[dict, Peak]:
    """The recipe trained as ``minwa train`` would, with ``bench.train``'s fields changed."""
    over = {"out": f"{bench.out}/minwa", "overwrite": True, "time_budget_s": bench.budget, "target_accuracy": 0.0,
            "data": {"train": bench.data, "val": bench.data}}
    pack_seconds = None
    if bench.pack:
        t = time.perf_counter()
        pack(bench.data, f"{bench.out}/shards", split="train", progress=False)
        pack_seconds = time.perf_counter() - t
        over["data"]["train"] = f"{bench.out}/shards"
    cfg = config_io.merge(config_io.merge(get_recipe(bench.recipe), over), bench.train)
    trainer = Trainer(cfg, progress=not bench.json)
    flops = forward_flops_per_image(trainer.model, trainer.in_chans, trainer.crop)
    peak = training_peak(trainer.precision, trainer.device)  # before training, in the precision "auto" became
    r = trainer.fit()
    curve = [{"epoch": round(h["epoch"], 3), "time": round(h["time"], 1), "test_acc": h["val_acc"]}
             for h in r.history if h.get("kind") == "val" and "val_acc" in h]
    train_flops = 3 * flops * r.images_per_s  # forward + backward ≈ 3× forward
    return {"seconds_to_target": first_time(curve, bench.target), "seconds_to": times_to(curve, bench), "final_accuracy": r.val_accuracy,
            "best_accuracy": r.best_accuracy, "images_per_s": r.images_per_s, "train_seconds": r.train_seconds,
            "setup_seconds": r.setup_seconds, "pack_seconds": pack_seconds, "epochs": r.epochs,
            "forward_flops_per_image": flops, "achieved_flop_s": train_flops, "curve": curve,
            "precision": trainer.precision, "model": cfg.model.name, "device": str(trainer.device),
            **mfu_fields(train_flops, peak)}, peak


def first_time(curve: list[dict], target: float) -> float | None:
    """Wall time (validation included) at the first evaluation reaching ``target``."""
    return next((c["time"] for c in curve if c["test_acc"] >= target), None)


def times_to(curve: list[dict], bench: TrainBenchConfig) -> dict:
    return {str(t): first_time(curve, t) for t in bench.thresholds}


def run_peer(bench: TrainBenchConfig) -> dict:
    if not PEER.is_file():
        raise MinwaError(f"the peer script {PEER} is missing (it lives in the source tree's bench/ folder)")
    cmd = [sys.executable, str(PEER), "--data", bench.data, "--epochs", str(bench.peer_epochs),
           "--time-budget", str(bench.budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MinwaError(f"the peer script failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    final = next(line for line in lines if line.get("final"))
    final["curve"] = [line for line in lines if not line.get("final")]
    final["seconds_to_target"] = first_time(final["curve"], bench.target)
    final["seconds_to"] = times_to(final["curve"], bench)
    return final


def run(bench: TrainBenchConfig) -> int:
    t = time.perf_counter()
    result = {"recipe": bench.recipe, "target": bench.target, "budget_s": bench.budget, "train": bench.train}
    minwa, peak = run_minwa(bench)
    result.update(minwa, threads=torch.get_num_threads())  # after the run set runtime.threads
    if bench.peer:
        result["peer"] = run_peer(bench)
    result["bench_seconds"] = time.perf_counter() - t
    if bench.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(title=f"time to accuracy on Fashion-MNIST's 10,000 test images ({bench.recipe})")
    thresholds = list(result["seconds_to"])
    for c in ("", *[f"s to {float(t):.0%}" for t in thresholds], "final acc", "train img/s"):
        table.add_column(c, justify="right")

    def row(name, r):
        cells = [f"{r['seconds_to'][t]:.0f}" if r["seconds_to"].get(t) else "not reached" for t in thresholds]
        table.add_row(name, *cells, f"{r['final_accuracy']:.2%}", f"{r['images_per_s']:.0f}")

    row("minwa", result)
    if "peer" in result:
        row("plain PyTorch", result["peer"])
    Console().print(table)
    print(f"minwa: {result['forward_flops_per_image'] / 1e6:.1f} MFLOP/image forward, {result['precision']}: "
          + mfu_line(result["achieved_flop_s"], peak))
    return 0
