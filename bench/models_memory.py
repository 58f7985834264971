"""Parameter counts (1,000 classes) and peak memory per image at 224 px, for every registered model.

Peak memory is measured on CPU with ``torch.distributed._tools.mem_tracker.MemTracker``, which follows
every tensor storage created under a dispatch mode (parameters, gradients, activations, temporaries) and
records the peak of live bytes. Per-image memory is the marginal cost of one more image:
``(peak(batch 4) − peak(batch 2)) / 2`` — weights and gradients cancel out (batch 1 is avoided: with
one image the peak can fall at a different moment of the step, e.g. while gradients are allocated). "train" is one forward + backward
(fp32, model in train mode); "infer" is a forward under ``torch.inference_mode``.

    .venv/bin/python bench/models_memory.py            # markdown tables on stdout
    .venv/bin/python bench/models_memory.py --models deepimage16,resnet50 --variants
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from minwa.models import count_parameters, create_model, list_models

SIZE = 224
# the 28-px family members are sized by their FC head; build them for 224 px inputs here
KNOBS_224 = {"deepimage-tiny": {"img_size": SIZE}, "alexnet-tiny": {"img_size": SIZE}}


def peak_bytes(name: str, batch: int, train: bool, **kw) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    model = create_model(name, 1000, 3, **{**KNOBS_224.get(name, {}), **kw})
    model.train(train)
    x = torch.randn(batch, 3, SIZE, SIZE)
    mt = MemTracker()
    mt.track_external(model)
    with mt:
        if train:
            model(x).sum().backward()
        else:
            with torch.inference_mode():
                model(x)
    return int(mt.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


def per_image(name: str, train: bool, **kw) -> float:
    return (peak_bytes(name, 4, train, **kw) - peak_bytes(name, 2, train, **kw)) / 2 / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated names (default: all registered)")
    p.add_argument("--variants", action="store_true", help="also in-place off / activation checkpointing on")
    args = p.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or list_models()
    torch.set_num_threads(2)
    print("| model | parameters (1,000 classes) | train MiB/image | inference MiB/image |")
    print("|---|---:|---:|---:|")
    for name in names:
        t = time.perf_counter()
        row = [name, f"{count_parameters(name, 1000):,}", f"{per_image(name, True):.1f}", f"{per_image(name, False):.1f}"]
        print("| " + " | ".join(row) + " |", flush=True)
        print(f"  ({time.perf_counter() - t:.0f}s)", file=sys.stderr)
    if args.variants:
        print("\n| model | default (in-place ReLU) | in-place off | activation checkpointing |")
        print("|---|---:|---:|---:|")
        for name in names:
            row = [name, per_image(name, True), per_image(name, True, inplace=False),
                   per_image(name, True, checkpointing=True)]
            print(f"| {row[0]} | " + " | ".join(f"{v:.1f}" for v in row[1:]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
