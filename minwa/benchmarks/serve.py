"""`minwa bench serve`: `minwa serve` under load on loopback, against itself without batching and against
the same model's offline batched throughput.

For each model (registry name @ crop, random weights, saved as a checkpoint): the offline ceiling first —
``predict`` over the corpus files in batches of ``max_batch`` (the eval path: decode, resize, crop, one
forward pass per batch), then a real server (``python -m minwa serve``) with dynamic batching under 1, 8,
32, 128 closed-loop clients, the same with ``--max-batch 1``, an open-loop load at half the peak rate (p99
against p50 there), and a soak at the peak: no request may fail and the server's resident memory may grow
by at most 5% (the medians of its first and last tenth, sampled twice a second). Clients and server share
the machine, as they do on loopback; the clients are hand-written HTTP/1.1 on asyncio
(``minwa.benchmarks.serve_load``) so they take little of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from minwa.benchmarks.config import ServeBenchConfig
from minwa.benchmarks.corpus import make_corpus
from minwa.benchmarks.loader import _cpu_name
from minwa.benchmarks.serve_load import closed_loop, open_loop
from minwa.errors import MinwaError
from minwa.evaluate import predict
from minwa.evaluate.ensemble import load_members
from minwa.models import create_model
from minwa.models.checkpoint import save_checkpoint
from minwa.utils.atomic import atomic_write_text

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _checkpoint(work: Path, spec: str, num_classes: int) -> Path:
    name, crop = spec.split("@")
    path = work / "ckpt" / f"{name}-{crop}"
    if not path.with_suffix(".json").is_file():
        torch.manual_seed(0)
        model = create_model(name, num_classes, 3)
        save_checkpoint(path, model, {"model": name, "num_classes": num_classes, "in_chans": 3,
                                      "classes": [f"class{i:04d}" for i in range(num_classes)],
                                      "scale": round(int(crop) * 256 / 224), "crop": int(crop),
                                      "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    return path.with_suffix(".safetensors")


def _offline(ckpt: Path, files: list[Path], cfg: ServeBenchConfig) -> float:
    """Images/s of ``predict`` (decode + the eval path) in batches of ``max_batch``; the second pass counts."""
    rt = cfg.runtime
    members = load_members([str(ckpt)], rt.device if rt.device != "auto" else "cpu")
    run = lambda: predict([str(ckpt)], files, batch_size=cfg.max_batch, members=members,  # noqa: E731
                          device=rt.device, precision=rt.precision)
    run()
    t0 = time.perf_counter()
    run()
    return len(files) / (time.perf_counter() - t0)


class Server:
    """``python -m minwa serve CKPT --port 0`` as users run it; ``url`` once it is ready."""

    def __init__(self, ckpt: Path, cfg: ServeBenchConfig, max_batch: int):
        rt = cfg.runtime
        argv = [sys.executable, "-m", "minwa", "serve", str(ckpt), "--port", "0", "--max-batch", str(max_batch),
                "--max-delay-ms", str(cfg.max_delay_ms), "--instances", str(cfg.instances),
                "--set", f"max_queue={max(1024, 2 * max(cfg.clients))}",
                "--set", f"runtime.device={rt.device}", "--set", f"runtime.precision={rt.precision}",
                "--set", f"runtime.threads={rt.threads}"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if m := re.search(r"at http://([\d.]+):(\d+)/ ", line):
                self.host, self.port = m.group(1), int(m.group(2))
                break
        else:
            raise MinwaError(f"minwa serve did not start: {self.proc.stderr.read().strip()[-300:]}")
        deadline = time.time() + 300
        while not self._ready():
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise MinwaError("minwa serve did not become ready within 300 s")
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/v1/models", timeout=30) as r:
            described = json.load(r)
        self.instances, self.threads_per_instance = described["instances"], described["threads_per_instance"]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/readyz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RssSampler:
    """The server's resident memory every ``every`` seconds while in use. ``start_end()``: the medians of the
    first and the last tenth of the samples — one reading at each end would take the allocator's
    moment-to-moment swing (a few % with batches of changing size) for growth; a leak still shows."""

    def __init__(self, server: Server, every: float = 0.5):
        self.server, self.every, self.samples = server, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(self.server.rss_mb())
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def start_end(self) -> tuple[float, float]:
        k = max(1, len(self.samples) // 10)
        return float(np.median(self.samples[:k])), float(np.median(self.samples[-k:]))


def _levels(server: Server, bodies, clients, cfg, say) -> dict:
    out = {}
    for c in clients:
        out[c] = asyncio.run(closed_loop(server.host, server.port, bodies, c, cfg.seconds, cfg.max_seconds)).summary()
        say(f"    {c:4d} clients  {_row(out[c])}")
    return out


def _row(r: dict) -> str:
    return (f"{r['images_per_s']:8.2f} images/s  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms"
            f"  failed {r['failed']}{' ' + str(r['errors']) if r['failed'] else ''}  ({r['requests']} in {r['seconds']} s)")


def bench_model(spec: str, files: list[Path], bodies: list[bytes], cfg: ServeBenchConfig, say) -> dict:
    ckpt = _checkpoint(Path(cfg.work), spec, cfg.num_classes)
    say(f"{spec}: offline ceiling (predict, batches of {cfg.max_batch})")
    offline = _offline(ckpt, files, cfg)
    say(f"    {offline:8.2f} images/s")
    result = {"model": spec, "offline_images_per_s": round(offline, 2)}
    say(f"{spec}: dynamic batching (max_batch {cfg.max_batch}, max_delay {cfg.max_delay_ms} ms)")
    server = Server(ckpt, cfg, cfg.max_batch)
    result["instances"], result["threads_per_instance"] = server.instances, server.threads_per_instance
    say(f"    {server.instances} model instance(s), {server.threads_per_instance} thread(s) each")
    try:
        result["dynamic"] = _levels(server, bodies, cfg.clients, cfg, say)
        peak_c = max(result["dynamic"], key=lambda c: result["dynamic"][c]["images_per_s"])
        peak = result["dynamic"][peak_c]["images_per_s"]
        if cfg.half_peak:
            seconds = min(max(cfg.half_peak, cfg.half_peak_requests / (peak / 2)), cfg.max_seconds)
            say(f"{spec}: open loop at half the peak ({peak / 2:.2f} requests/s for {seconds:.0f} s)")
            half = asyncio.run(open_loop(server.host, server.port, bodies, peak / 2, seconds)).summary()
            result["half_peak"] = {**half, "rate": round(peak / 2, 2)}
            say(f"    {_row(half)}")
        if cfg.soak:
            say(f"{spec}: soak, {cfg.soak:g} s at the peak ({peak_c} clients)")
            with RssSampler(server) as rss:
                soak = asyncio.run(closed_loop(server.host, server.port, bodies, peak_c, cfg.soak, cfg.soak * 3)).summary()
            rss0, rss1 = rss.start_end()
            result["soak"] = {**soak, "clients": peak_c, "rss_start_mb": round(rss0, 1), "rss_end_mb": round(rss1, 1),
                              "rss_max_mb": round(max(rss.samples), 1), "rss_growth": round(rss1 / rss0 - 1, 4)}
            say(f"    {_row(soak)}  RSS {rss0:.0f} -> {rss1:.0f} MB ({rss1 / rss0 - 1:+.1%})")
    finally:
        server.stop()
    say(f"{spec}: max_batch 1")
    server = Server(ckpt, cfg, 1)
    try:
        result["max_batch_1"] = _levels(server, bodies, cfg.single_clients, cfg, say)
    finally:
        server.stop()
    result["goals"] = goals(result)
    return result


def goals(r: dict) -> dict:
    """The issue's goals, each True/False (None where not measured)."""
    dyn, one = r.get("dynamic", {}), r.get("max_batch_1", {})
    at32 = dyn.get(32, {}).get("images_per_s")
    half, soak = r.get("half_peak"), r.get("soak")
    return {
        "dynamic_at_32_ge_2x_max_batch_1": at32 >= 2 * one[32]["images_per_s"] if at32 and 32 in one else None,
        "dynamic_at_32_ge_60pct_offline": at32 >= 0.6 * r["offline_images_per_s"] if at32 else None,
        "p99_le_3x_p50_at_half_peak": half["p99_ms"] <= 3 * half["p50_ms"] if half and half["p50_ms"] else None,
        "soak_no_failures": soak["failed"] == 0 if soak else None,
        "soak_rss_growth_le_5pct": soak["rss_growth"] <= 0.05 if soak else None,
    }


def run(cfg: ServeBenchConfig) -> int:
    if cfg.quick:
        cfg.seconds, cfg.soak, cfg.half_peak = min(cfg.seconds, 3.0), min(cfg.soak, 10.0), min(cfg.half_peak, 8.0)
        cfg.half_peak_requests = min(cfg.half_peak_requests, 40)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    work = Path(cfg.work)
    files = sorted(make_corpus(work / "corpus", cfg.images).rglob("*.jpg"))[: cfg.images]
    bodies = [f.read_bytes() for f in files]
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if cfg.json else (lambda *a: print(*a, flush=True))
    machine = {"cpu": _cpu_name(), "cores": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
               "python": platform.python_version(), "torch": torch.__version__}
    say(f"{len(files)} JPEGs (500x375) on {machine['cores']} cores ({machine['cpu']}), load {machine['load_avg_at_start']}")
    results = [bench_model(spec, files, bodies, cfg, say) for spec in cfg.models]
    report = {"machine": {**machine, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
              "settings": {"max_batch": cfg.max_batch, "max_delay_ms": cfg.max_delay_ms, "instances": cfg.instances,
                           "seconds": cfg.seconds, "soak": cfg.soak, "half_peak": cfg.half_peak,
                           "half_peak_requests": cfg.half_peak_requests, "threads": cfg.runtime.threads},
              "models": results}
    atomic_write_text(work / "results.json", json.dumps(report, indent=2) + "\n")
    if cfg.json:
        print(json.dumps(report, indent=2))
        return 0
    for r in results:
        print(f"{r['model']} goals: " + ", ".join(f"{k} {'met' if v else 'NOT met' if v is False else 'n/a'}"
                                                 for k, v in r["goals"].items()))
    print(f"results: {work / 'results.json'}")
    return 0

