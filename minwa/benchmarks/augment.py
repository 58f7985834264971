"""`minwa bench augment`: the fused Table 1 engine vs an Albumentations 2.x pipeline, side by side.

Both turn the same S x S uint8 photographs (real ones from scikit-image, shorter side resized to S,
default 512) into normalised float C x C crops (default 224) with the Deep Image transforms:

- ``minwa_img_s``: ``Augmenter(preset)`` on batches of ``batch_size`` on ``runtime.device`` with ``cores``
  torch/numba threads (on a CPU: the fused numba kernel when numba is installed, else PyTorch ops).
- ``albumentations_img_s``: the nearest equivalents, one image at a time, in ``cores`` worker
  processes (OpenCV single-threaded in each): RandomCrop, HorizontalFlip, Rotate(+-10, p=0.5),
  OpticalDistortion(0.25, p=0.5), RGBShift(+-20), a vignette written as an Albumentations transform
  (p=0.5), Normalize.
  The batch is handed as ``layout``: ``nhwc`` (default) is the photographs' own H x W x C memory seen
  as N x C x H x W through ``permute`` (no copy: the very bytes the peer reads, and what a JPEG decoder
  produces); ``nchw`` is a contiguous planar copy. Every call returns a fresh output tensor.
- ``minwa_nchw_img_s`` (with ``layout = nhwc``): the same on the planar copy.
- ``minwa_reuse_img_s``: ``Augmenter(..., reuse_output=True)``: one output tensor overwritten by every
  batch, as a trainer that consumes each batch before the next may use it.
- ``minwa_torch_img_s`` (CPU, with numba installed): the same engine forced onto its PyTorch path.

Rounds interleave the contestants so that a shared machine's drift hits them alike; each figure is the
median over rounds and ``ratio`` the median of per-round ratios. Start-up (numba compilation, worker
pools, CUDA context) is excluded for every contestant alike.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import statistics
import time

import numpy as np
import torch

from rich.console import Console
from rich.table import Table

from minwa.augment import AugmentConfig, Augmenter, cpu_kernel
from minwa.augment.preview import resize_short_side
from minwa.benchmarks.config import AugmentBenchConfig
from minwa.errors import MinwaError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "retina")


def photos(scale: int) -> np.ndarray:
    """uint8 (K, S, S, 3): scikit-image's sample photographs, shorter side resized to S, centre square."""
    try:  # scikit-image: a dev dependency, for the photographs only
        from skimage import data
    except ImportError:
        raise MinwaError("bench augment needs scikit-image for its photographs (pip install -e '.[dev]')") from None
    out = []
    for name in PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo this scikit-image install lacks (or would download)
            continue
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[:, :, :3]
        out.append(resize_short_side(np.ascontiguousarray(img), scale))
    if not out:
        raise MinwaError("scikit-image has none of its sample photographs here")
    return np.stack(out)


# -------------------------------------------------------------------------------- the Albumentations peer
_PEER: dict = {}


def _vignette_class():
    import albumentations as A  # the peer: a dev dependency, imported only when it runs

    class Vignette(A.ImageOnlyTransform):
        """minwa's vignette (smoothstep falloff beyond a random radius, random strength) for Albumentations."""

        def __init__(self, max_strength=0.6, max_radius=0.8, p=0.5):
            super().__init__(p=p)
            self.max_strength, self.max_radius = max_strength, max_radius

        def get_params_dependent_on_data(self, params, data):
            return {"strength": self.py_random.uniform(0.015, self.max_strength),
                    "radius": self.py_random.uniform(0.0, self.max_radius)}

        def apply(self, img, strength=0.3, radius=0.5, **params):
            h, w = img.shape[:2]
            yy = (np.arange(h, dtype=np.float32) * 2 + 1) / h - 1
            xx = (np.arange(w, dtype=np.float32) * 2 + 1) / w - 1
            rho = np.sqrt((yy[:, None] ** 2 + xx[None, :] ** 2) * 0.5)
            t = np.clip((rho - radius) / max(1 - radius, 1e-3), 0, 1)
            mask = 1 - strength * t * t * (3 - 2 * t)
            return np.clip(img.astype(np.float32) * mask[:, :, None], 0, 255).astype(np.uint8)

    return Vignette


def albumentations_pipeline(crop: int):
    import albumentations as A  # the peer and its OpenCV: dev dependencies
    import cv2

    return A.Compose([
        A.RandomCrop(crop, crop),
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=10, p=0.5, border_mode=cv2.BORDER_REFLECT_101),
        A.OpticalDistortion(distort_limit=0.25, p=0.5),
        A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=1.0),
        _vignette_class()(p=0.5),
        A.Normalize(mean=MEAN, std=STD),
    ])


def _peer_init(images: np.ndarray, crop: int) -> None:
    import cv2  # the peer's OpenCV: a dev dependency

    cv2.setNumThreads(1)
    _PEER["images"] = images
    _PEER["pipe"] = albumentations_pipeline(crop)


def _peer_work(span: tuple[int, int]) -> int:
    images, pipe = _PEER["images"], _PEER["pipe"]
    for i in range(*span):
        pipe(image=images[i % len(images)])
    return span[1] - span[0]


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    step = max(1, n // (parts * 4))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


# ------------------------------------------------------------------------------------------ the runner
def _time_minwa(aug, batch, idx, images: int, device: torch.device, epoch0: int) -> float:
    """Images/s of ``aug`` over ``images`` images."""
    steps = max(1, images // len(batch))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for e in range(steps):
        out = aug(batch, idx, epoch0 + e, 0)
    sync()
    dt = time.perf_counter() - t0
    del out
    return steps * len(batch) / dt


def run(cfg: AugmentBenchConfig) -> int:
    device = torch.device(cfg.runtime.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MinwaError(f"device {cfg.runtime.device} is not available here")
    cores = cfg.cores or os.cpu_count() or 1
    torch.set_num_threads(cores)
    skip = set(cfg.skip)
    images = cfg.images or (65536 if device.type == "cuda" else 1024)

    pics = photos(cfg.scale)
    reps = -(-cfg.batch_size // len(pics))
    hwc = torch.from_numpy(np.ascontiguousarray(np.tile(pics, (reps, 1, 1, 1))[: cfg.batch_size])).to(device)
    planar = hwc.permute(0, 3, 1, 2).contiguous()
    batch = hwc.permute(0, 3, 1, 2) if cfg.layout == "nhwc" else planar
    idx = torch.arange(cfg.batch_size, device=device)
    aug_cfg = AugmentConfig(preset=cfg.preset)

    contestants = {"minwa": Augmenter(aug_cfg, cfg.crop, MEAN, STD, backend=cfg.backend)}
    inputs = {"minwa": batch}
    if cfg.layout == "nhwc" and "nchw" not in skip:
        contestants["minwa_nchw"], inputs["minwa_nchw"] = contestants["minwa"], planar
    contestants["minwa_reuse"] = Augmenter(aug_cfg, cfg.crop, MEAN, STD, backend=cfg.backend, reuse_output=True)
    inputs["minwa_reuse"] = batch
    if device.type == "cpu" and cpu_kernel.available() and cfg.backend != "torch" and "torch" not in skip:
        contestants["minwa_torch"] = Augmenter(aug_cfg, cfg.crop, MEAN, STD, backend="torch")
        inputs["minwa_torch"] = planar
    t0 = time.perf_counter()
    for name, aug in contestants.items():
        aug(inputs[name], idx, 0, 0)  # compile / warm up
    warmup_s = time.perf_counter() - t0

    pool = None
    if "albumentations" not in skip:
        try:  # albumentations: the peer, a dev dependency
            import albumentations
        except ImportError:
            raise MinwaError("bench augment needs albumentations 2.x for its peer (pip install -e '.[dev]'), "
                             "or --set skip=[albumentations]") from None
        pool = mp.get_context("fork").Pool(cores, initializer=_peer_init, initargs=(pics, cfg.crop))
        pool.map(_peer_work, [(0, 4)] * cores)  # warm up every worker

    rates: dict[str, list[float]] = {name: [] for name in contestants}
    if pool is not None:
        rates["albumentations"] = []
    try:
        for r in range(cfg.rounds):
            for name, aug in contestants.items():
                rates[name].append(_time_minwa(aug, inputs[name], idx, images if name != "minwa_torch" else images // 4,
                                               device, 1 + r * 1000))
            if pool is not None:
                n = images if device.type == "cpu" else min(images, 4096)
                t0 = time.perf_counter()
                done = sum(pool.map(_peer_work, _spans(n, cores)))
                rates["albumentations"].append(done / (time.perf_counter() - t0))
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    report = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cores": cores, "preset": cfg.preset, "scale": cfg.scale, "crop": cfg.crop,
        "batch_size": cfg.batch_size, "layout": cfg.layout, "images_per_round": images, "rounds": cfg.rounds,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "minwa_backend": "numba" if contestants["minwa"].uses_kernel(batch) else "torch",
        "minwa_warmup_s": round(warmup_s, 2),
        "torch": torch.__version__, "platform": platform.platform(),
    }
    for name, vals in rates.items():
        report[f"{name}_img_s"] = round(statistics.median(vals), 1)
    if pool is not None:
        report["albumentations"] = albumentations.__version__
        for key, name in (("ratio", "minwa"), ("ratio_nchw", "minwa_nchw"), ("ratio_reuse", "minwa_reuse")):
            if name not in rates:
                continue
            report[key] = round(statistics.median(m / a for m, a in zip(rates[name], rates["albumentations"])), 2)
    if cfg.json:
        print(json.dumps(report))
    else:
        table = Table(title=f"augment {cfg.preset}: {cfg.scale} -> {cfg.crop}, {report['device']}, {cores} cores")
        table.add_column("contestant")
        table.add_column("images/s", justify="right")
        for name in rates:
            table.add_row(name, f"{report[f'{name}_img_s']:,.0f}")
        Console().print(table)
        if "ratio" in report:
            print(f"minwa / albumentations = {report['ratio']:.2f}x ({cfg.layout} input), with reused output "
                  f"{report['ratio_reuse']:.2f}x (medians of per-round ratios)")
    return 0
