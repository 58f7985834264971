#!/usr/bin/env python3
"""Multi-scale testing and fine-tuning measured on Fashion-MNIST (real data), laid out like the paper's tables.

``--part multiscale`` (the paper's 256 px / 512 px / fused table): ``fashion-net`` trained at 28 px and at
56 px (2× upsampled), each tested alone, with flips, at both scales, and the two fused by averaging softmax.
``--part finetune`` (§5.1): ``deepimage-tiny`` (3 conv + 3 FC) pre-trained on 5 classes, fine-tuned on the
other 5 with all / fc (last three FC layers) / head (softmax only), against training from scratch on the
same budget. Writes ``OUT/multiscale_finetune.json`` and prints markdown tables.

    python bench/multiscale_finetune.py --out runs/multiscale-finetune [--epochs 8 --epochs56 3 --ft-epochs 2]
"""

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

from minwa import config as config_io
from minwa.evaluate import EvalConfig, evaluate
from minwa.train import get_recipe, train
from minwa.data.config import FASHION_MNIST
from minwa.train.recipes import finetune
from minwa.utils.atomic import atomic_write_json

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PRE, POST = CLASSES[:5], CLASSES[5:]


def run(base, overrides, reuse: bool = False):
    """Train (or, with ``reuse``, take the run folder's existing final checkpoint)."""
    cfg = config_io.load(base, None, overrides)
    final = Path(cfg.out) / "final.json"
    if reuse and final.is_file():
        meta = json.loads(final.read_text())
        return SimpleNamespace(checkpoint=final.with_suffix(".safetensors"), val_accuracy=meta["metrics"]["val_acc"]), None
    t = time.perf_counter()
    r = train(cfg)
    return r, time.perf_counter() - t


def multiscale(args, out: Path) -> dict:
    common = [f"data.train={args.data}", f"data.val={args.data}"]
    r28, s28 = run(get_recipe("fashion"), common + [f"out={out}/s28", f"epochs={args.epochs}"], args.reuse)
    r56, s56 = run(get_recipe("fashion"), common + [f"out={out}/s56", f"epochs={args.epochs56}", "data.scale=56"],
                   args.reuse)
    # dense: each network runs on the whole image at every test scale (fashion-net pools globally)
    report = evaluate(EvalConfig(data=args.data, ckpts=[str(r28.checkpoint), str(r56.checkpoint)],
                                 scales=[28, 56], flip=True, dense=True))
    rows = [{"name": r["name"], "top1_error": r["top1_error"], "top5_error": r["topk_error"]} for r in report.rows]
    return {"train_seconds": {"28": s28, "56": s56}, "rows": rows}


def finetuning(args, out: Path) -> dict:
    model = ["model.name=deepimage-tiny", f"data.train={args.data}", f"data.val={args.data}"]
    pre, _ = run(get_recipe("fashion"), model + [f"out={out}/pre5", f"epochs={args.epochs}",
                                                 "data.classes=" + ",".join(PRE)])
    post = [f"data.train={args.data}", f"data.val={args.data}", "data.classes=" + ",".join(POST),
            f"epochs={args.ft_epochs}"]
    results = {"pretrain_accuracy_5": pre.val_accuracy}
    for mode in ("all", "fc", "head"):
        r, s = run(finetune(get_recipe("fashion"), mode), post + [f"out={out}/ft-{mode}", f"init={pre.checkpoint}"])
        results[mode] = {"accuracy": r.val_accuracy, "seconds": s}
    r, s = run(get_recipe("fashion"), post + model[:1] + [f"out={out}/scratch"])
    results["scratch"] = {"accuracy": r.val_accuracy, "seconds": s}
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=FASHION_MNIST)
    p.add_argument("--out", default="runs/multiscale-finetune")
    p.add_argument("--epochs", type=float, default=8)
    p.add_argument("--epochs56", type=float, default=3)
    p.add_argument("--ft-epochs", type=float, default=2)
    p.add_argument("--part", choices=["multiscale", "finetune", "both"], default="both")
    p.add_argument("--reuse", action="store_true", help="reuse finished runs in OUT instead of training again")
    args = p.parse_args()
    out = Path(args.out)
    result = {"args": vars(args)}
    if args.part in ("multiscale", "both"):
        result["multiscale"] = multiscale(args, out)
        print("| test | top-1 error | top-5 error |\n|---|---:|---:|")
        for r in result["multiscale"]["rows"]:
            print(f"| {r['name']} | {r['top1_error']:.2%} | {r['top5_error']:.2%} |")
    if args.part in ("finetune", "both"):
        result["finetune"] = b = finetuning(args, out)
        print(f"\npre-trained on {', '.join(PRE)}: {b['pretrain_accuracy_5']:.2%}")
        print("| on the other 5 classes | test accuracy | seconds |\n|---|---:|---:|")
        for k in ("all", "fc", "head", "scratch"):
            print(f"| {k} | {b[k]['accuracy']:.2%} | {b[k]['seconds']:.0f} |")
    atomic_write_json(out / "multiscale_finetune.json", result)


if __name__ == "__main__":
    main()
