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
from torch.utils.flop_counter import FlopCounterMode

from minwa.benchmarks.peak import Peak, mfu_fields, mfu_line, training_peak
from minwa.errors import MinwaError

PEER = Path(__file__).resolve().parents[2] / "bench" / "peer_train.py"


def add_arguments(p):
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST IDX folder")
    p.add_argument("--recipe", default="fashion")
    p.add_argument("--target", type=float, default=0.94, help="test accuracy to reach (0..1); the run is not cut short")
    p.add_argument("--thresholds", default="0.92,0.93,0.94", help="also report the time to each of these")
    p.add_argument("--budget", type=float, default=600.0, help="seconds of training at most, per contestant")
    p.add_argument("--epochs", type=float, help="override the recipe's epochs")
    p.add_argument("--peer-epochs", type=int, default=5)
    p.add_argument("--no-peer", action="store_true", help="skip the plain PyTorch script")
    p.add_argument("--pack", action="store_true", help="pack to shards first and train from them (timed apart)")
    p.add_argument("--out", default="runs/bench-train")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def forward_flops_per_image(model: torch.nn.Module, in_chans: int, size: int) -> float:
    x = torch.randn(8, in_chans, size, size, dtype=next(model.parameters()).dtype)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    model.train(was)
    return fc.get_total_flops() / 8


def run_minwa(args) -> tuple[dict, Peak]:
    # imported here: the CLI imports every bench module to build its parser, and minwa.train takes seconds
    from minwa import config as config_io
    from minwa.train import Trainer
    from minwa.train.recipes import get_recipe

    cfg = get_recipe(args.recipe)
    over = [f"out={args.out}/minwa", "overwrite=true", f"time_budget_s={args.budget}", "target_accuracy=0",
            f"data.train={args.data}", f"data.val={args.data}"]
    if args.epochs:
        over.append(f"epochs={args.epochs}")
    pack_seconds = None
    if args.pack:
        from minwa.data import pack

        t = time.perf_counter()
        pack(args.data, f"{args.out}/shards", split="train", progress=False)
        pack_seconds = time.perf_counter() - t
        over.append(f"data.train={args.out}/shards")
    cfg = config_io.load(cfg, None, over + list(args.overrides))
    trainer = Trainer(cfg, progress=not args.json)
    flops = forward_flops_per_image(trainer.model, trainer.in_chans, trainer.crop)
    peak = training_peak(trainer.precision, trainer.device)  # before training, in the precision "auto" became
    r = trainer.fit()
    curve = [{"epoch": round(h["epoch"], 3), "time": round(h["time"], 1), "test_acc": h["val_acc"]}
             for h in r.history if h.get("kind") == "val" and "val_acc" in h]
    train_flops = 3 * flops * r.images_per_s  # forward + backward ≈ 3× forward
    return {"seconds_to_target": first_time(curve, args.target), "seconds_to": times_to(curve, args), "final_accuracy": r.val_accuracy,
            "best_accuracy": r.best_accuracy, "images_per_s": r.images_per_s, "train_seconds": r.train_seconds,
            "setup_seconds": r.setup_seconds, "pack_seconds": pack_seconds, "epochs": r.epochs,
            "forward_flops_per_image": flops, "achieved_flop_s": train_flops, "curve": curve,
            "precision": trainer.precision, "model": cfg.model.name, "device": str(trainer.device),
            **mfu_fields(train_flops, peak)}, peak


def first_time(curve: list[dict], target: float) -> float | None:
    """Wall time (validation included) at the first evaluation reaching ``target``."""
    return next((c["time"] for c in curve if c["test_acc"] >= target), None)


def times_to(curve: list[dict], args) -> dict:
    return {t: first_time(curve, float(t)) for t in args.thresholds.split(",") if t}


def run_peer(args) -> dict:
    if not PEER.is_file():
        raise MinwaError(f"the peer script {PEER} is missing (it lives in the source tree's bench/ folder)")
    cmd = [sys.executable, str(PEER), "--data", args.data, "--epochs", str(args.peer_epochs),
           "--time-budget", str(args.budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MinwaError(f"the peer script failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    final = next(line for line in lines if line.get("final"))
    final["curve"] = [line for line in lines if not line.get("final")]
    final["seconds_to_target"] = first_time(final["curve"], args.target)
    final["seconds_to"] = times_to(final["curve"], args)
    return final


def run(args) -> int:
    t = time.perf_counter()
    result = {"recipe": args.recipe, "target": args.target, "budget_s": args.budget,
              "threads": torch.get_num_threads()}
    minwa, peak = run_minwa(args)
    result.update(minwa)
    if not args.no_peer:
        result["peer"] = run_peer(args)
    result["bench_seconds"] = time.perf_counter() - t
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"time to accuracy on Fashion-MNIST's 10,000 test images ({args.recipe})")
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
