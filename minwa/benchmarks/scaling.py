"""`minwa bench scaling`: images/s, speed-up and efficiency for 1, 2, ... N processes per strategy.

The paper's Figure 2: the same training step (model, per-rank slice of 64 images as "slices = 64",
SGD with momentum) timed with 1 process (strategy none) and with n processes under torchrun for each
strategy; speed-up = images/s(n) / images/s(1), efficiency = speed-up / n. Inputs are random uint8
images already on the device, so the figure measures compute + communication, not the loader.

Also reported: each strategy's overhead on ONE rank (a 1-process group with the strategy applied), which
is the cost of FSDP/DDP/DTensor bookkeeping itself. On a CPU machine gloo's collectives (reduce-scatter is
built from all-reduce) and a shared 2-core CPU mean no real scaling: the numbers are reported as measured.
Each configuration is a separate torchrun launch of this module (``python -m minwa.benchmarks.scaling
--worker --config bench.json ...``); rank 0 writes its timing to a JSON file that the driver collects.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from minwa import config as config_io
from minwa.benchmarks.config import ScalingBenchConfig
from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.parallel import ParallelConfig, ParallelDims, init_distributed, parallelize, shutdown
from minwa.utils.atomic import atomic_save_figure, atomic_write_json
from minwa.utils.device import resolve_device
from minwa.utils.device_caps import resolve_precision


def _default_procs(device: str) -> list[int]:
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    top = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    procs, n = [], 1
    while n <= top:
        procs.append(n)
        n *= 2
    if procs[-1] != top:
        procs.append(top)
    return procs


def _launch(cfg_file: Path, threads: int, nproc: int, strategy: str, result: Path, force_group: bool) -> dict:
    """One torchrun launch of the worker; the settings travel as the bench's config file (``cfg_file``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
           "--rdzv_endpoint=localhost:0", "-m", "minwa.benchmarks.scaling", "--worker", "--config", str(cfg_file),
           "--strategy", strategy, "--result", str(result)]
    if force_group:
        cmd.append("--force-group")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)  # torchrun sets 1 only for several processes: be explicit
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if not result.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise MinwaError(f"scaling run ({strategy}, {nproc} processes) failed:\n" + "\n".join(tail))
    return json.loads(result.read_text())


def run(cfg: ScalingBenchConfig) -> int:
    procs = list(cfg.procs) or _default_procs(cfg.runtime.device)
    threads = max(1, cfg.runtime.threads)
    rows, overhead = [], {}
    with tempfile.TemporaryDirectory(prefix="minwa-scaling-") as tmp:
        tmp = Path(tmp)
        cfg_file = tmp / "bench.json"
        atomic_write_json(cfg_file, config_io.to_dict(cfg))

        def launch(nproc: int, strategy: str, name: str, force_group: bool = False) -> dict:
            return _launch(cfg_file, threads, nproc, strategy, tmp / f"{name}.json", force_group)

        base = launch(1, "none", "base")
        rows.append({"strategy": "none", **base})
        for s in cfg.strategies:
            if cfg.overhead:
                one = launch(1, s, f"{s}-1", force_group=True)
                overhead[s] = {"images_per_s": one["images_per_s"],
                               "relative_to_none": one["images_per_s"] / base["images_per_s"]}
            for n in procs:
                if n == 1:
                    continue
                rows.append({"strategy": s, **launch(n, s, f"{s}-{n}")})
    for r in rows:
        r["speedup"] = r["images_per_s"] / base["images_per_s"]
        r["efficiency"] = r["speedup"] / r["processes"]
    report = {"model": cfg.model, "device": base["device"], "backend": rows[-1].get("backend", ""),
              "batch_per_rank": cfg.batch_per_rank, "precision": base["precision"], "steps": cfg.steps,
              "threads_per_process": threads,
              "host": os.uname().nodename, "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "rows": rows, "one_rank_overhead": overhead}
    if cfg.out:
        _write(Path(cfg.out), report)
    if cfg.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def _print_table(report: dict) -> None:
    print(f"{report['model']} on {report['device']} ({report['backend'] or 'no backend'}), "
          f"{report['batch_per_rank']} images per rank per step, {report['precision']}")
    print(f"{'strategy':<10} {'procs':>5} {'images/s':>10} {'speed-up':>9} {'efficiency':>10}")
    for r in report["rows"]:
        print(f"{r['strategy']:<10} {r['processes']:>5} {r['images_per_s']:>10.1f} {r['speedup']:>8.2f}x "
              f"{r['efficiency']:>9.0%}")
    for s, o in report["one_rank_overhead"].items():
        print(f"1-rank {s}: {o['images_per_s']:.1f} images/s = {o['relative_to_none']:.2f}x of plain (strategy overhead)")


def _write(out: Path, report: dict) -> None:
    atomic_write_json(out / "results.json", report)
    import matplotlib  # heavy (~0.5 s), only when a figure is written; the Agg backend before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    top = max(r["processes"] for r in report["rows"])
    ax.plot([1, top], [1, top], "k--", lw=1, label="linear")
    for s in sorted({r["strategy"] for r in report["rows"]} - {"none"}):
        pts = [(1, 1.0)] + [(r["processes"], r["speedup"]) for r in report["rows"] if r["strategy"] == s]
        ax.plot(*zip(*pts), "o-", label=s)
    ax.set_xlabel("processes")
    ax.set_ylabel("speed-up of images/s")
    ax.set_title(f"{report['model']} on {report['device']}")
    ax.legend()
    atomic_save_figure(fig, out / "scaling.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# --- the worker, one per rank under torchrun ---

def _worker(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--config", required=True, help="the driver's ScalingBenchConfig as JSON")
    p.add_argument("--strategy", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--force-group", action="store_true", help="apply the strategy even on one rank")
    w = p.parse_args(argv)
    a = config_io.load(ScalingBenchConfig(), w.config)
    torch.set_num_threads(max(1, a.runtime.threads))

    cfg = ParallelConfig(strategy=w.strategy if w.strategy != "none" else "auto")
    if w.force_group:  # one rank, but with the strategy's machinery: its overhead
        dev = resolve_device(a.runtime.device, 0)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=dev if dev.type == "cuda" else None)
        dims = ParallelDims(0, 1, 0, dev, w.strategy, backend, 1)
    else:
        dims = init_distributed(cfg, a.runtime.device)
    kwargs = {"num_classes": a.num_classes}
    if a.in_chans:
        kwargs["in_chans"] = a.in_chans
    if a.img_size:
        kwargs["img_size"] = a.img_size
    torch.manual_seed(0)
    model = create_model(a.model, **kwargs)
    size = a.img_size or model.default_scale
    chans = a.in_chans or model.in_chans
    precision = resolve_precision(a.runtime.precision, dims.device)
    bf16 = precision == "bf16"
    model = parallelize(model, dims, cfg, param_dtype=torch.bfloat16 if bf16 else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(dims.rank)
    x8 = torch.randint(0, 256, (a.batch_per_rank, chans, size, size), generator=gen, dtype=torch.uint8).to(dims.device)
    y = torch.randint(0, a.num_classes, (a.batch_per_rank,), generator=gen).to(dims.device)
    global_batch = a.batch_per_rank * dims.world_size
    autocast = bf16 and dims.strategy in ("none", "butterfly")

    def one_step():
        opt.zero_grad(set_to_none=True)
        x = x8.float().div_(255)
        with torch.autocast(dims.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x).float(), y, reduction="sum") / global_batch
        loss.backward()
        opt.step()

    def sync():
        if dims.device.type == "cuda":
            torch.cuda.synchronize(dims.device)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    for _ in range(a.warmup):
        one_step()
    sync()
    times = []
    for _ in range(max(1, a.repeats)):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            one_step()
        sync()
        times.append(time.perf_counter() - t0)
    dt = min(times)
    if dims.is_main:
        name = torch.cuda.get_device_name(dims.device) if dims.device.type == "cuda" else "cpu"
        atomic_write_json(w.result, {"processes": dims.world_size, "images_per_s": global_batch * a.steps / dt,
                                     "step_s": dt / a.steps, "device": name, "backend": dims.backend,
                                     "precision": precision})
    shutdown(exit_code=0)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker(sys.argv[1:])
    else:
        print("run `minwa bench scaling` (this module is also its torchrun worker)", file=sys.stderr)
        raise SystemExit(2)
