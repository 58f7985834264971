"""``make_small_objects``: a labelled set of high-resolution colour photographs in which the object is small.

Deep Image's claims (high resolution helps; low- and high-resolution models complement each other) are about
large photographs with small objects, and no such labelled set can be downloaded here. So it is made from
real parts: a random crop, rescale and flip of a real photograph (``backgrounds``), with one real
Fashion-MNIST item pasted on it at a random place, size (8-20% of the shorter side) and tint, its own
intensity as its alpha mask; the item's class is the image's class. The place is random within the image's
central square: minwa trains on squares and tests on the centre one (and dense testing sees the whole
picture), so an item anywhere along a 16:9 image's long side would fall outside the tested square in about
one image in five — label noise in training and an error floor no model can pass. Train images use train photographs and
train items, test images test photographs and test items.

Every image is planned here from ``(seed, split, index)`` alone and rendered by whichever worker gets it,
so the files are byte-identical for any number of workers. Work goes to workers one source photograph
at a time, so each worker decodes a photograph once per batch of images on it.
"""

from __future__ import annotations

import colorsys
import csv
import io
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from minwa import __version__
from minwa.data import idx as idxfmt
from minwa.errors import MinwaError
from minwa.synth.backgrounds import Picture, find_pictures, open_picture, split_pictures
from minwa.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from minwa.utils.output import prepare_output_folder

FASHION = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
OBJECT_SIDE = (0.08, 0.20)  # the pasted item's side, as a fraction of the image's shorter side
ASPECTS = (1.0, 5 / 4, 4 / 3, 3 / 2, 16 / 9)  # long side / short side, as cameras and screens make them
PORTRAIT = 0.3  # share of non-square images taller than wide
CROP = (0.35, 1.0)  # crop side, as a fraction of the largest crop of that aspect the photograph holds
QUALITY = 90
CHUNK = 256  # images per worker task (all on one photograph)
BOX_FIELDS = ("path", "split", "class", "label", "item", "width", "height", "x", "y", "side",
              "x0", "y0", "x1", "y1", "tint", "background")


@dataclass
class SmallObjectsResult:
    out: Path
    train_dir: Path
    test_dir: Path
    manifest: Path
    boxes: Path
    counts: dict = field(default_factory=dict)  # split -> images
    sources: dict = field(default_factory=dict)  # split -> background files
    seconds: float = 0.0


def class_folder(name: str) -> str:
    """A class name as a folder name ("T-shirt/top" -> "T-shirt-top", as the demo names its samples)."""
    return name.replace("/", "-").replace(" ", "_")


def _plan(split: str, i: int, seed: int, short_side: int, pictures: list[Picture], items_by_class,
          classes: list[str], object_side: tuple[float, float] = OBJECT_SIDE) -> dict:
    """Everything random about image ``i`` of ``split``, drawn from (seed, split, i) alone."""
    rng = np.random.default_rng([seed, SPLITS.index(split), i])
    label = i % len(classes)
    item = int(items_by_class[label][rng.integers(len(items_by_class[label]))])
    pic = pictures[int(rng.integers(len(pictures)))]
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    long_side = round(short_side * aspect)
    w, h = (short_side, long_side) if rng.random() < PORTRAIT else (long_side, short_side)
    # the crop, as fractions of the photograph (independent of the size it is decoded at)
    fit = min(pic.width / w, pic.height / h)
    frac = rng.uniform(*CROP)
    cw, ch = w * fit * frac / pic.width, h * fit * frac / pic.height
    cx, cy = rng.uniform(0, 1 - cw), rng.uniform(0, 1 - ch)
    lo, hi = math.ceil(object_side[0] * short_side), math.floor(object_side[1] * short_side)
    side = int(rng.integers(lo, hi + 1))
    left, top = (w - short_side) // 2, (h - short_side) // 2  # the central square (the test's centre crop)
    hue, sat, val = rng.random(), rng.uniform(0.25, 1.0), rng.uniform(0.55, 1.0)
    return {
        "path": f"{split}/{class_folder(classes[label])}/{split}{i:06d}.jpg", "split": split,
        "class": classes[label], "label": label, "item": item, "width": w, "height": h,
        "x": left + int(rng.integers(0, short_side - side + 1)), "y": top + int(rng.integers(0, short_side - side + 1)),
        "side": side,
        "tint": "#%02x%02x%02x" % tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)),
        "flip": bool(rng.random() < 0.5), "crop": (cx, cy, cx + cw, cy + ch), "background": str(pic.path),
    }  # fmt: skip


def _tight_box(item: np.ndarray, plan: dict) -> tuple[int, int, int, int]:
    """The box of the item's visible pixels in the image (the pasted square minus its empty margin)."""
    ys, xs = np.nonzero(item > 32)
    if not len(xs):
        return plan["x"], plan["y"], plan["x"] + plan["side"], plan["y"] + plan["side"]
    s = plan["side"] / item.shape[0]
    return (plan["x"] + math.floor(xs.min() * s), plan["y"] + math.floor(ys.min() * s),
            plan["x"] + math.ceil((xs.max() + 1) * s), plan["y"] + math.ceil((ys.max() + 1) * s))


def render(photo: Image.Image, item: np.ndarray, plan: dict) -> bytes:
    """The JPEG of one planned image: the crop of ``photo``, then the item pasted with its intensity as alpha."""
    pw, ph = photo.size
    x0, y0, x1, y1 = plan["crop"]
    box = (x0 * pw, y0 * ph, x1 * pw, y1 * ph)  # reducing_gap: a box average first when it shrinks 2x+ (2x faster)
    img = photo.resize((plan["width"], plan["height"]), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    if plan["flip"]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    s, x, y = plan["side"], plan["x"], plan["y"]
    a = np.asarray(Image.fromarray(item).resize((s, s), Image.Resampling.BICUBIC), dtype=np.float32)[..., None] / 255
    alpha = np.clip(2 * a, 0, 1)  # the item's faint inner texture stays opaque; its black surround is clear
    tint = np.array([int(plan["tint"][k:k + 2], 16) for k in (1, 3, 5)], dtype=np.float32)
    colour = tint * (0.35 + 0.65 * a)  # shading from the item's own intensity
    arr = np.array(img)
    region = arr[y:y + s, x:x + s].astype(np.float32)
    arr[y:y + s, x:x + s] = np.rint(region * (1 - alpha) + colour * alpha).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def _render_task(task) -> int:
    """One worker task: images that share one background photograph, decoded once."""
    out, path, min_side, jobs = task
    photo = open_picture(path, min_side)
    for plan, item in jobs:
        atomic_write_bytes(out / plan["path"], render(photo, item, plan))
    return len(jobs)


def make_small_objects(out, *, train: int = 20000, test: int = 5000, seed: int = 0, workers: int = 0,
                       short_side: int = 512, progress: bool = True, overwrite: bool = False,
                       fashion=FASHION, backgrounds=None, object_side: tuple[float, float] = OBJECT_SIDE
                       ) -> SmallObjectsResult:
    """Write ``out/train/<class>/*.jpg``, ``out/test/<class>/*.jpg``, ``out/boxes.csv`` (each image's
    item, square and tight box) and ``out/README.json`` (seed, counts, which photographs went to which
    split). ``workers`` = 0: all cores. ``backgrounds``: folders of photographs to use instead of the
    installed wallpapers (and scikit-image's samples). ``object_side``: the item's side as a fraction of the
    shorter side, (low, high); larger than the default to see how accuracy depends on object size."""
    start = time.perf_counter()
    out = Path(out).expanduser()
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MinwaError(f"{out} exists and is not empty; choose a new folder or pass --overwrite")
    if train < 0 or test < 0 or short_side < 32:
        raise MinwaError(f"need --train and --test >= 0 and a shorter side >= 32 (got {train}, {test}, {short_side})")
    object_side = (float(object_side[0]), float(object_side[1]))
    if not 0 < object_side[0] <= object_side[1] <= 1 or math.floor(object_side[1] * short_side) < max(
            4, math.ceil(object_side[0] * short_side)):
        raise MinwaError(f"the object side must be fractions 0 < LOW <= HIGH <= 1 of the shorter side that leave "
                         f"it at least 4 px (got {object_side[0]:g}-{object_side[1]:g} of {short_side} px)")
    items = _fashion(fashion)
    pictures = find_pictures(backgrounds, skimage=False) if backgrounds else find_pictures()
    by_split = dict(zip(SPLITS, split_pictures(pictures, seed)))
    if not by_split["train"] or not by_split["test"]:
        raise MinwaError("no background photographs found (need at least two pictures under /usr/share/backgrounds or "
                         "/usr/share/wallpapers: apt-get install mate-backgrounds gnome-backgrounds sway-backgrounds)")
    _prepare(out)
    classes = idxfmt.FASHION_MNIST_CLASSES
    counts = {"train": int(train), "test": int(test)}
    plans, tasks = [], []
    for split in SPLITS:
        images, labels = items[split]
        by_class = [np.flatnonzero(labels == c) for c in range(len(classes))]
        split_plans = [_plan(split, i, seed, short_side, by_split[split], by_class, classes, object_side) for i in range(counts[split])]
        plans += split_plans
        tasks += _tasks(out, split_plans, images, math.ceil(short_side / CROP[0]))
    for name in {str(Path(p["path"]).parent) for p in plans}:
        (out / name).mkdir(parents=True, exist_ok=True)
    _run(tasks, workers or os.cpu_count() or 1, progress, len(plans))
    _write_boxes(out / "boxes.csv", plans, items)
    manifest = _manifest(seed, counts, short_side, by_split, classes, fashion, object_side)
    atomic_write_json(out / "README.json", manifest)
    return SmallObjectsResult(out, out / "train", out / "test", out / "README.json", out / "boxes.csv", counts,
                              manifest["sources"], time.perf_counter() - start)


def _prepare(out: Path) -> None:
    """A writable ``out`` without the splits of an earlier run (the caller allowed replacing them)."""
    prepare_output_folder(out, "data set folder")
    for name in SPLITS:
        shutil.rmtree(out / name, ignore_errors=True)


def _fashion(folder) -> dict:
    folder = Path(folder)
    if not idxfmt.is_idx_folder(folder):
        raise MinwaError(f"Fashion-MNIST not found in {folder} (apt-get install dataset-fashion-mnist)")
    return {split: idxfmt.load_idx_split(folder, split) for split in SPLITS}


def _tasks(out: Path, plans: list[dict], images: np.ndarray, min_side: int) -> list:
    by_pic: dict[str, list] = {}
    for p in plans:
        by_pic.setdefault(p["background"], []).append((p, images[p["item"]]))
    return [(out, Path(path), min_side, jobs[k:k + CHUNK]) for path, jobs in sorted(by_pic.items())
            for k in range(0, len(jobs), CHUNK)]


def _run(tasks: list, workers: int, progress: bool, total: int) -> None:
    bar = _bar(progress, total)
    if workers == 1 or len(tasks) <= 1:
        done = map(_render_task, tasks)
        for n in done:
            bar(n)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        for n in pool.imap_unordered(_render_task, tasks):
            bar(n)


def _bar(enabled: bool, total: int):
    """A one-line count on a terminal, every 2% of the images."""
    if not (enabled and total and sys.stderr.isatty()):
        return lambda n: None
    state = {"done": 0, "shown": 0, "t0": time.perf_counter()}

    def advance(n: int) -> None:
        state["done"] += n
        if state["done"] - state["shown"] >= total / 50 or state["done"] == total:
            state["shown"] = state["done"]
            dt = time.perf_counter() - state["t0"]
            end = "\n" if state["done"] == total else ""
            print(f"\rsmall-objects: {state['done']:,}/{total:,} images, {dt:.0f} s", end=end, file=sys.stderr, flush=True)

    return advance


def _write_boxes(path: Path, plans: list[dict], items: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BOX_FIELDS)
    for p in plans:
        x0, y0, x1, y1 = _tight_box(items[p["split"]][0][p["item"]], p)
        row = {**p, "x0": x0, "y0": y0, "x1": x1, "y1": y1}
        w.writerow([row[k] for k in BOX_FIELDS])
    atomic_write_text(path, buf.getvalue())


def _manifest(seed, counts, short_side, by_split, classes, fashion, object_side) -> dict:
    return {
        "what": "small-objects: Fashion-MNIST items pasted small on real photographs (minwa make-dataset)",
        "seed": seed, "counts": counts, "short_side": short_side, "aspects": [round(a, 4) for a in ASPECTS],
        "object_side_fraction": list(object_side), "object_place": "central square", "crop_fraction": list(CROP), "jpeg_quality": QUALITY,
        "classes": {class_folder(c): c for c in classes}, "fashion_mnist": str(fashion),
        "sources": {s: sorted(str(p.path) for p in by_split[s]) for s in SPLITS},
        "boxes": "boxes.csv: x,y,side = the pasted square; x0,y0,x1,y1 = the item's visible pixels",
        "minwa_version": __version__,
    }  # fmt: skip
