"""The models behind the service: checkpoints loaded as ensemble members, uploads decoded as ``predict``
decodes files, and probabilities computed by the eval path itself (``batch_probs``, then the ensemble
mean), so the service answers exactly what ``minwa predict`` answers for the same file. Images of any
sizes go into one call: ``view_probs`` resizes and crops each to the network input before stacking."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from minwa.evaluate.preprocess import read_bytes
from minwa.errors import MinwaError
from minwa.evaluate.ensemble import ensemble_probs, load_members, prepare
from minwa.evaluate.pipeline import batch_probs, class_names
from minwa.serve.config import MAX_SCALE, ServeConfig
from minwa.utils.device import resolve_device
from minwa.utils.device_caps import resolve_precision


class Engine:
    """Members on their device, ready to answer ``probs(images, scales, flip)`` for a batch of images."""

    def __init__(self, cfg: ServeConfig, members=None):
        rt = cfg.runtime
        if rt.threads:
            torch.set_num_threads(rt.threads)
        self.device = resolve_device(rt.device)
        self.precision = resolve_precision(rt.precision, self.device)
        self.channels_last = rt.channels_last
        self.members = members or load_members(cfg.ckpts, self.device)
        prepare(self.members, self.device, rt.channels_last)
        self.classes = self.members[0].classes
        self.class_names = class_names(self.members, cfg.wordnet)  # WordNet's words for WordNet ids
        self.channels = 1 if all(m.in_chans == 1 for m in self.members) else 3  # as predict reads files
        self.max_pixels = cfg.max_pixels
        self.default_scales = tuple(cfg.scales)
        # instances side by side split the CPU threads; a batch that starts alone takes them all (``probs``).
        # A request that arrives mid-batch then starts at once instead of waiting for the batch to end: on 2
        # cores this halves deepimage16's tail at half load and lifts its peak (BENCHMARKS §13)
        self.cpu_threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        self.instances = cfg.instances or (2 if self.cpu_threads >= 2 else 1)
        self.instance_threads = max(1, self.cpu_threads // self.instances) if self.cpu_threads else 0
        self._busy, self._busy_lock = 0, threading.Lock()

    def enter_instance(self) -> None:
        """Called first in each thread that runs the model: its share of the CPU threads (per thread in
        torch's OpenMP pool, so instances side by side do not oversubscribe the cores)."""
        if self.instance_threads:
            torch.set_num_threads(self.instance_threads)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def decode(self, data: bytes, scales: tuple[int, ...] = ()) -> np.ndarray:
        """An upload as H×W×C uint8 decoded as ``predict`` decodes a file (RGB, shorter side >= the largest test
        scale), or one sentence (``MinwaError``) saying why it is not an image."""
        min_side = max(scales) if scales else max(m.scale for m in self.members)
        return read_bytes(data, min_side, self.max_pixels, what="the uploaded image")

    def check_scales(self, scales) -> tuple[int, ...]:
        """Test scales a request may ask for: each at least every member's crop, at most ``MAX_SCALE``."""
        scales = tuple(scales) or self.default_scales
        smallest = max(m.crop for m in self.members)
        bad = [s for s in scales if not smallest <= s <= MAX_SCALE]
        if bad:
            raise MinwaError(f"scales must be between the model's crop {smallest} and {MAX_SCALE}, got {bad[0]}")
        return scales

    def probs(self, images: list[np.ndarray], scales: tuple[int, ...], flip: bool) -> torch.Tensor:
        """Ensemble softmax (n, K) of images of any sizes: each member's views averaged, then the members."""
        scales_of = self._scales_of(scales)
        with self._busy_lock:
            self._busy += 1
            alone = self._busy == 1
        try:
            if self.instance_threads:  # a batch that starts alone takes every thread, else its share
                torch.set_num_threads(self.cpu_threads if alone else self.instance_threads)
            return self._probs(images, scales_of, flip)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _scales_of(self, scales) -> dict:
        return {m.name: list(scales) or [m.scale] for m in self.members}

    def _probs(self, images, scales_of, flip) -> torch.Tensor:
        _, member_final = batch_probs(self.members, images, scales_of, flip, False, self.device, self.precision,
                                      self.channels_last)
        return ensemble_probs(list(member_final.values()))

    def top(self, probs: torch.Tensor, k: int) -> list[dict]:
        """The ``k`` most probable classes of one image, as ``predict`` lists them."""
        top = probs.topk(min(k, len(self.classes)))
        return [{"class": self.classes[j], "name": self.class_names[j], "index": int(j), "probability": float(p)}
                for p, j in zip(top.values, top.indices)]

    def warm_up(self, max_batch: int, budget_s: float) -> list[tuple[int, int]]:
        """Run every batch size a batcher can form (1, ``max_batch``, then 2, 3, ...) at each thread count a
        batch may get, until ``budget_s`` has passed; the (size, threads) pairs run.

        Why every size: torch's CPU kernels (oneDNN) and cuDNN choose and build their code per input shape
        and thread count, and keep it. Left to the first requests, each new batch size costs its first
        user tens of milliseconds and adds to resident memory for minutes into serving (resnet50 at
        max_batch 8, 2 instances: +18% over 200 s at 32 clients; BENCHMARKS §13), which would hide a leak."""
        side = max(max(self.default_scales or (m.scale,)) for m in self.members)
        image = np.random.default_rng(0).integers(0, 256, (side, side, self.channels), dtype=np.uint8)
        counts = sorted({self.cpu_threads, self.instance_threads}, reverse=True) if self.cpu_threads else [0]
        scales_of = self._scales_of(self.default_scales)
        done, t0 = [], time.perf_counter()
        for n in dict.fromkeys([1, max_batch, *range(2, max_batch)]):
            for threads in counts:
                if threads:
                    torch.set_num_threads(threads)
                self._probs([image] * n, scales_of, False)
                done.append((n, threads))
            if time.perf_counter() - t0 >= budget_s:
                break
        self.enter_instance()
        return done

    def describe(self) -> dict:
        """``GET /v1/models``: each member's model, geometry and recorded metrics, and the shared classes."""
        return {
            "classes": self.classes,
            "device": str(self.device), "precision": self.precision,
            "instances": self.instances, "threads_per_instance": self.instance_threads or None,
            "models": [{"name": m.name, "model": m.meta.get("model"), "num_classes": len(m.classes),
                        "in_chans": m.in_chans, "scale": m.scale, "crop": m.crop, "mean": m.mean, "std": m.std,
                        "metrics": m.meta.get("metrics") or {}} for m in self.members],
        }
