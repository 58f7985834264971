"""Worker for tests/test_parallel.py, launched with ``python -m torch.distributed.run --nproc_per_node=N``.

Trains deepimage-tiny (float64, no dropout) on real Fashion-MNIST batches for a few SGD-momentum steps
with each requested strategy and writes what the ranks observed (final weights, first-step gradient norm,
losses) to files, which the test compares with a single-process full-batch run. The test judges these
files, not the exit code. Modes:

- ``train``: every strategy in ``--strategies``; with ``--save-at K``, the first strategy also saves a
  DCP checkpoint after step K (loader position in ``extra``); then, for each of ``--resume-strategies``,
  load ``--ckpt`` (written by another world size) and run the remaining steps;
- ``kill``: rank ``--victim`` SIGKILLs itself at step 2; the survivors report what they saw;
- ``stall``: rank ``--victim`` stays alive but stops before its batch of step 3 (a hung data loader).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from parallel_common import (STRATEGIES, full_state, grad_norm, make_batches, make_model, make_optimizer,  # noqa: E402
                             step)

from minwa.errors import MinwaError  # noqa: E402
from minwa.parallel import (ParallelConfig, failure_guard, init_distributed, load_distributed, parallelize,  # noqa: E402
                            save_distributed, shutdown)
from minwa.parallel.watchdog import note_progress  # noqa: E402


def run_strategy(name, args, out: Path, mode: str):
    strategy, fc_split = STRATEGIES[name]
    cfg = ParallelConfig(strategy=strategy, fc_split=fc_split, timeout_s=args.timeout,
                         sync_batchnorm=args.bn and not name.endswith("-localbn"))
    dims = init_distributed(cfg, "cpu")
    model = parallelize(make_model(batchnorm=args.bn), dims, cfg)
    opt = make_optimizer(model)
    batches = make_batches(args.steps, dims.rank, dims.world_size)
    start = 0
    if mode == "resume":
        extra = load_distributed(args.ckpt, model, opt)
        start = extra["loader"]["position"]
    report = {"strategy": name, "world_size": dims.world_size, "rank": dims.rank, "losses": [], "start": start}
    with failure_guard(dims):
        for i in range(start, args.steps):
            if mode == "kill" and dims.rank == args.victim and i == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "stall" and dims.rank == args.victim and i == 2:
                time.sleep(10 * args.timeout)  # alive (its watchdog thread beats on) but going nowhere
            x, y = batches[i]
            note_progress()
            loss = step(model, opt, x, y, global_batch=batches.global_batch)
            if i == start:
                report["grad_norm"] = grad_norm(model)
            total = loss.detach().clone()
            dist.all_reduce(total)
            report["losses"].append(total.item())
            note_progress()
            if mode == "train" and args.save_at and i + 1 == args.save_at and name == args.strategies.split(",")[0]:
                save_distributed(out / "ckpt", model, opt, extra={"loader": {"position": i + 1}})
    state = full_state(model)
    if dims.is_main:
        from safetensors.torch import save_file

        save_file(state, str(out / f"{name}_w{dims.world_size}_{mode}.safetensors"))
        (out / f"{name}_w{dims.world_size}_{mode}.json").write_text(json.dumps(report))
    return dims


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="train", choices=["train", "kill", "stall"])
    p.add_argument("--resume-strategies", default="", help="after training: resume --ckpt with these")
    p.add_argument("--strategies", default="fsdp,butterfly,hybrid")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--save-at", type=int, default=0)
    p.add_argument("--ckpt", default="")
    p.add_argument("--victim", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--bn", action="store_true", help="the model with BatchNorm, synchronised (parallel.sync_batchnorm)")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    code = 0
    t0 = time.monotonic()
    try:
        for name in args.strategies.split(","):
            run_strategy(name, args, out, args.mode)
        for name in filter(None, args.resume_strategies.split(",")):
            run_strategy(name, args, out, "resume")
    except MinwaError as e:
        rank = os.environ.get("RANK", "?")
        (out / f"error_rank{rank}.txt").write_text(f"{e}\n{time.monotonic() - t0:.1f}")
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = 1
    shutdown(exit_code=code)


if __name__ == "__main__":
    main()
