"""`minwa bench throughput`: training-step images/s and MFU, JPEG shards against data already on the device.

One run builds a real :class:`minwa.train.Trainer` (model, ``deepimage`` augmentation, SGD, bf16 autocast)
and times ``Trainer.train_step`` on up to three sources of batches, interleaved over ``--repeats``
rounds so that drift hits them alike:

- ``synthetic``: random uint8 S×S images already on the device (a few rotating sets), through the real
  augmenter and step: the ceiling where loading costs nothing.
- ``real``: ``build_loader`` streaming the JPEG shards (``--workers`` decode processes, ``cache=none``),
  with a thread that keeps ``--prefetch`` batches ready on the device (on CUDA their host-to-device
  copies run on a side stream), so loading overlaps compute. The workers decode ahead while the other
  paths are timed (up to ``workers * 2 + 1`` batches in shared slots, plus the thread's), so each real
  round first drains that many batches untimed: the timed steps see the decoders' sustained rate, not a
  full buffer (``real_drained_batches_per_round``).
- ``device_cache`` (``--cache device``): the shards decoded once into one uint8 tensor on the device.
- ``jpeg_cache`` (``--cache jpeg``, CUDA): the JPEG bytes held in host memory, decoded per batch on the
  GPU by nvJPEG (``data.cache=jpeg``). ``--cache all`` times both caches.

MFU = 3 × forward FLOPs per image (``forward_flops_per_image``) × images/s / the peak for the step's
precision on the device (``minwa.benchmarks.peak.training_peak``: the vendor's figure for a known GPU,
else the best sustained large matmul measured in the same run); an MFU above 100% sets ``peak_suspect``. On CUDA the GPU idle
fraction is 1 − (sum of per-step CUDA-event times) / wall time: the gaps between steps where the GPU
waits for the host (a batch not ready, a copy not done, kernels not yet launched).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import queue
import statistics
import threading
import time
from pathlib import Path

import torch

from minwa.benchmarks.peak import SUSPECT, slow_bf16_note, training_peak
from minwa.errors import MinwaError

PATHS = ("synthetic", "real", "device_cache", "jpeg_cache")


def add_arguments(p):
    p.add_argument("--model", default="deepimage16", help="registry model (default deepimage16, Table 2)")
    p.add_argument("--size", type=int, default=224, help="C: the crop fed to the network (default 224)")
    p.add_argument("--scale", type=int, default=0, help="S: the loader's image side (default round(C*256/224))")
    p.add_argument("--batch", type=int, default=256, help="images per step")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per round and path")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each path's first round")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the median round counts")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (as model.compile=true)")
    p.add_argument("--augment", default="deepimage", help="augmentation preset (default deepimage)")
    p.add_argument("--shards", help="packed folder of JPEG shards (default: the --make-corpus one)")
    p.add_argument("--make-corpus", type=int, default=0, metavar="N", help="first make N photos and pack them")
    p.add_argument("--work", default="runs/bench-throughput", help="folder for the corpus, shards and run files")
    p.add_argument("--workers", type=int, default=0, help="decode processes (default: cores - 1, at least 1)")
    p.add_argument("--prefetch", type=int, default=2, help="batches held ready on the device (0: no thread)")
    p.add_argument("--cache", default="none", choices=["none", "device", "jpeg", "all"],
                   help="also time the device cache of decoded pixels (device), of JPEG bytes (jpeg) or both")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                   help="let cuDNN pick the fastest convolution algorithms (CUDA only)")
    p.add_argument("--peak-n", type=int, default=0,
                   help="largest matmul side for a measured peak (default 16384 on CUDA, 4096 on CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# ------------------------------------------------------------------------------------------ sources
class Prefetcher:
    """Pulls batches from ``source`` in a thread, ``depth`` ahead, so decoding hand-over and the host→device
    copy overlap the step. On CUDA the copies are issued on a side stream and the consumer's stream waits
    on an event, which keeps the step's stream free of copy work."""

    _END = object()

    def __init__(self, source, depth: int, device: torch.device):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.device = device
        self.stop = threading.Event()
        self.source = source
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        it = iter(self.source)
        try:
            if self.stream is not None:
                torch.cuda.set_device(self.device)
            with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
                for batch in it:
                    event = None
                    if self.stream is not None:
                        event = torch.cuda.Event()
                        event.record(self.stream)
                    if not self._put((batch, event)):
                        break
            self._put((self._END, None))
        except BaseException as e:  # handed to the consumer, which raises it
            self._put((e, None))
        finally:
            if hasattr(it, "close"):
                it.close()  # shuts the loader's worker processes down

    def __iter__(self):
        return self

    def __next__(self):
        batch, event = self.queue.get()
        if batch is self._END:
            raise StopIteration
        if isinstance(batch, BaseException):
            raise batch
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for t in batch:
                t.record_stream(current)  # the side stream's allocations are in use on this stream too
        return batch

    def close(self):
        self.stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
        self.thread.join(timeout=30)


def endless(loader):
    """The loader's batches, epoch after epoch (each epoch restarts its workers: counted by the caller)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def synthetic_batches(trainer, sets: int = 4):
    """Random uint8 S×S batches already on the device, rotating over ``sets`` buffers (so repeated steps do
    not read one buffer from cache), with fresh sample indices so every step draws new augmentations."""
    from minwa.data.loader import Batch

    b, dev = trainer.global_batch, trainer.device
    g = torch.Generator().manual_seed(0)
    shape = (b, trainer.in_chans, trainer.scale, trainer.scale)
    images = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(dev) for _ in range(sets)]
    labels = torch.randint(0, len(trainer.classes), (b,), generator=g).to(dev)
    k = 0
    while True:
        yield Batch(images[k % sets], labels, torch.arange(k * b, (k + 1) * b, device=dev))
        k += 1


# ------------------------------------------------------------------------------------------- timing
class PathTimer:
    """Times ``trainer.train_step`` on one batch source: warm-up once, then rounds of ``steps`` steps."""

    def __init__(self, name: str, trainer, batches, warmup: int, epoch_len: int = 0):
        self.name, self.trainer, self.batches = name, trainer, batches
        self.cuda = trainer.device.type == "cuda"
        self.rates: list[float] = []
        self.busy: list[float] = []
        self.step_ms: list[float] = []
        self.epoch_len, self.pulled, self.restarts_timed = epoch_len, 0, 0
        for _ in range(warmup):
            trainer.train_step(self._next())
        self._sync()

    def _next(self):
        self.pulled += 1
        return next(self.batches)

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.trainer.device)

    def round(self, steps: int, drain: int = 0) -> float:
        """Images/s over ``steps`` timed steps, after pulling ``drain`` batches untimed (and unused).

        With ``epoch_len`` (a streamed source, whose workers restart each epoch) the timed steps are kept
        off an epoch's start where they fit: the drain then runs on past the restart and its lead."""
        E, p = self.epoch_len, self.pulled
        if E and drain and drain + steps <= E:
            start = p + drain
            restart = start - start % E  # the last epoch start at or before the first timed batch
            if start % E + steps > E:  # the timed steps would span a restart: after it, past a new lead
                start = restart + E + drain
            elif p < restart < start < restart + drain:  # a restart during the drain: drain its new lead
                start = restart + drain
            drain = start - p
        for _ in range(drain):
            self._next()
        if E and self.pulled % E + steps > E:
            self.restarts_timed += 1
        events = []
        self._sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            batch = self._next()  # waits for its copy on the side stream before the start event
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            self.trainer.train_step(batch)
            if self.cuda:
                end.record()
                events.append((start, end))
        self._sync()
        wall = time.perf_counter() - t0
        self.rates.append(steps * self.trainer.global_batch / wall)
        self.step_ms.append(wall / steps * 1e3)
        if self.cuda:
            self.busy.append(sum(s.elapsed_time(e) for s, e in events) / 1e3 / wall)
        return self.rates[-1]

    def summary(self, train_flops: float, peak: float) -> dict:
        rate = statistics.median(self.rates)
        idle = None if not self.busy else max(0.0, 1.0 - statistics.median(self.busy))
        return {"images_per_s": round(rate, 2), "step_ms": round(statistics.median(self.step_ms), 3),
                "mfu": train_flops * rate / peak, "gpu_idle_fraction": idle,
                "rounds_images_per_s": [round(r, 2) for r in self.rates]}


# ---------------------------------------------------------------------------------------------- run
def build_trainer(args, shards: Path, device: torch.device):
    from minwa.augment.config import AugmentConfig
    from minwa.data.config import DataConfig
    from minwa.models.config import ModelConfig
    from minwa.train import Trainer
    from minwa.train.config import TrainConfig

    scale = args.scale or round(args.size * 256 / 224)
    if args.size > scale:
        raise MinwaError(f"--size {args.size} is larger than --scale {scale}")
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    cfg = TrainConfig(
        recipe="throughput", out=str(Path(args.work) / "run"), overwrite=True, epochs=1e6, precision=args.precision,
        device=str(device), eval_every=0, log_every=10**9,
        data=DataConfig(train=str(shards), scale=scale, crop=args.size, batch_size=args.batch, workers=workers,
                        cache="none", val_fraction=0),  # no validation: the whole set streams
        augment=AugmentConfig(preset=args.augment),
        model=ModelConfig(name=args.model, channels_last=args.channels_last, compile=args.compile),
    )  # fmt: skip
    return Trainer(cfg)


def flops_per_image(trainer) -> float:
    """Forward FLOPs per C×C image, counted on a CPU twin of the model (the counter feeds CPU tensors)."""
    from minwa.benchmarks.train import forward_flops_per_image
    from minwa.models import create_model
    from minwa.train.trainer import model_kwargs

    twin = create_model(trainer.cfg.model.name, num_classes=len(trainer.classes), in_chans=trainer.in_chans,
                        **model_kwargs(trainer.cfg.model, trainer.crop))
    return forward_flops_per_image(twin, trainer.in_chans, trainer.crop)


def run(args) -> int:
    from minwa.benchmarks.loader import prepare
    from minwa.data import build_loader, open_dataset
    from minwa.utils.device import resolve_device

    if min(args.steps, args.repeats, args.batch) < 1 or args.warmup < 0 or args.prefetch < 0:
        raise MinwaError("--steps, --repeats and --batch must be at least 1, --warmup and --prefetch at least 0")
    t_bench = time.perf_counter()
    device = resolve_device(args.device)
    shards = prepare(args)
    if open_dataset(shards).channels != 3:
        raise MinwaError(f"the throughput benchmark needs colour photographs; {shards} holds grey images")
    peak = training_peak(args.precision, device, max_side=args.peak_n)
    trainer = build_trainer(args, shards, device)
    if device.type == "cuda":  # after the Trainer, which turns autotuning on for itself
        torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    fwd = flops_per_image(trainer)
    train_flops = 3 * fwd  # forward + backward ≈ 3× forward

    t = time.perf_counter()
    sources = {"synthetic": synthetic_batches(trainer)}
    real = endless(trainer.loader)
    sources["real"] = Prefetcher(real, args.prefetch, device) if args.prefetch else real
    cache_seconds = {}
    for kind in ("device", "jpeg"):
        if args.cache in (kind, "all"):
            t_cache = time.perf_counter()
            centre = dataclasses.replace(trainer.cfg.data, cache=kind, square="centre")  # caches hold centre squares
            cached = build_loader(centre, trainer.train_ds, train=True, device=str(device))
            cache_seconds[f"{kind}_cache_build_seconds"] = round(time.perf_counter() - t_cache, 2)
            sources[f"{kind}_cache"] = endless(cached)
    from minwa.data.workers import ring_size

    drain = ring_size(trainer.cfg.data.workers, trainer.cfg.data.prefetch) + args.prefetch  # decoded ahead, at most
    timers = {}
    try:
        for name, src in sources.items():
            timers[name] = PathTimer(name, trainer, src, args.warmup,
                                     epoch_len=trainer.steps_per_epoch if name == "real" else 0)
        for r in range(args.repeats):
            for name, timer in timers.items():
                rate = timer.round(args.steps, drain if name == "real" else 0)
                if not args.json:
                    print(f"round {r + 1}: {name:12s} {rate:10.1f} images/s", flush=True)
    finally:
        if isinstance(sources["real"], Prefetcher):
            sources["real"].close()
    timed_seconds = time.perf_counter() - t

    paths = {name: timer.summary(train_flops, peak.flop_s) for name, timer in timers.items()}
    result = {
        "model": args.model, "size": trainer.crop, "scale": trainer.scale, "batch": trainer.global_batch,
        "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
        "augment": args.augment, "workers": trainer.cfg.data.workers, "prefetch": args.prefetch,
        "device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None,
        "matmul_peak_flop_s": peak.flop_s, "peak_source": peak.source, "peak_measured_flop_s": peak.measured,
        "peak_suspect": any(p["mfu"] > 1.0 for p in paths.values()), "precision_note": slow_bf16_note(peak),
        "forward_flops_per_image": fwd, "train_flops_per_image": train_flops,
        "paths": paths,
    }  # fmt: skip
    for name, p in paths.items():
        result[f"{name}_img_s"] = p["images_per_s"]
        result[f"mfu_{name}"] = p["mfu"]
        result[f"gpu_idle_fraction_{name}"] = p["gpu_idle_fraction"]
    syn = timers["synthetic"].rates
    for name in PATHS[1:]:
        if name in timers:  # median of per-round ratios: each round's pair ran back to back
            result[f"{name}_over_synthetic"] = round(statistics.median(
                a / b for a, b in zip(timers[name].rates, syn)), 4)
    result.update(
        shards=str(shards), corpus_images=len(trainer.train_ds), batches_per_epoch=trainer.steps_per_epoch,
        # epoch starts inside the real path's steps: each restarts the decode workers (rare on ImageNet)
        real_epoch_restarts=timers["real"].pulled // trainer.steps_per_epoch,
        real_epoch_restarts_in_timed_steps=timers["real"].restarts_timed, real_drained_batches_per_round=drain,
        steps=args.steps, warmup=args.warmup, repeats=args.repeats, setup_seconds=round(trainer.setup_seconds, 2),
        **cache_seconds,
        timed_seconds=round(timed_seconds, 2), bench_seconds=round(time.perf_counter() - t_bench, 2),
        cpus=os.cpu_count(), python=platform.python_version(),
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from minwa.benchmarks.loader import _cpu_name

    return _cpu_name()


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} training step, {result['size']} px from {result['scale']}, batch "
                        f"{result['batch']}, {result['precision']}, {result['augment']} augmentation, "
                        f"{result['device_name']}")
    for c in ("path", "images/s", "ms/step", "MFU", "vs synthetic", "GPU idle"):
        table.add_column(c, justify="right")
    for name, p in result["paths"].items():
        ratio = result.get(f"{name}_over_synthetic", 1.0 if name == "synthetic" else None)
        idle = p["gpu_idle_fraction"]
        table.add_row(name, f"{p['images_per_s']:.1f}", f"{p['step_ms']:.1f}", f"{p['mfu']:.1%}",
                      f"{ratio:.1%}" if ratio is not None else "", "n/a" if idle is None else f"{idle:.1%}")
    Console().print(table)
    if result["real_epoch_restarts_in_timed_steps"]:
        print(f"note: the corpus is {result['batches_per_epoch']} batches long, so the real path restarted its "
              f"workers {result['real_epoch_restarts_in_timed_steps']} time(s) inside timed steps; use a larger "
              "--make-corpus to avoid that")
    print(f"{result['forward_flops_per_image'] / 1e9:.3f} GFLOP/image forward (×3 per training image); "
          f"{result['precision']} peak {result['matmul_peak_flop_s'] / 1e12:.2f} TFLOP/s ({result['peak_source']}); "
          f"torch {result['torch']}")
    if result["peak_suspect"]:
        print(SUSPECT)
    if result["precision_note"]:
        print(result["precision_note"])
