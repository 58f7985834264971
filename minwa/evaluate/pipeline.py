"""``evaluate(cfg)`` and ``predict(ckpts, images)``: the multi-scale / flip / dense / ensemble test path.

Both run the same code: checkpoints become ensemble members, every image is seen at every test scale
(each member's own training scale when none are given), mirrored too with ``flip``, and the softmax
outputs are averaged — over a member's views, then over members. ``evaluate`` also scores every partial
combination (each scale alone, with flips, all scales, the ensemble) in the same pass, so one run gives
the paper's single-scale / multi-scale / fused table.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from minwa.data.decode import MAX_PIXELS
from minwa.errors import MinwaError
from minwa.evaluate.config import EvalConfig, check, topk_list
from minwa.evaluate.ensemble import (Member, ensemble_probs, load_members, mean_probs, prepare, view_probs)
from minwa.evaluate.metrics import Accumulator, HierarchyTally, mean_class_accuracy
from minwa.evaluate.preprocess import read
from minwa.evaluate.report import EvalReport, per_class_rows
from minwa.utils.device import resolve_device
from minwa.utils.words import plural
from minwa.utils.device_caps import resolve_precision
from minwa.wordnet.database import WordNet
from minwa.wordnet.hierarchy import Hierarchy
from minwa.wordnet.names import display_names


def _views(scales, flip):
    return [(s, f) for s in scales for f in ((False, True) if flip else (False,))]


def combination_rows(members: list[Member], scales_of: dict, flip: bool) -> list[dict]:
    """Every combination worth a row: each scale alone, with its mirror, all scales, and the ensemble.
    The last row is the requested combination (everything averaged)."""
    rows = []
    for m in members:
        scales = scales_of[m.name]
        member_rows = []
        for s in scales:
            member_rows.append({"name": f"{m.name} @{s}", "member": m.name, "views": [(s, False)]})
            if flip:
                member_rows.append({"name": f"{m.name} @{s} +flip", "member": m.name, "views": [(s, False), (s, True)]})
        if len(scales) > 1:
            label = ",".join(map(str, scales))
            member_rows.append({"name": f"{m.name} @{label}", "member": m.name, "views": _views(scales, False)})
            if flip:
                member_rows.append({"name": f"{m.name} @{label} +flip", "member": m.name, "views": _views(scales, True)})
        rows += member_rows
    if len(members) > 1:
        rows.append({"name": "ensemble (" + " + ".join(m.name for m in members) + ")", "member": None, "views": None})
    return rows


def _auto_split(path) -> str | None:
    """The held-out split of a source: IDX → ``test``; a root of split folders → ``val`` (else ``test``)."""
    from minwa.data import idx as idxfmt

    p = Path(path)
    if p.is_dir() and idxfmt.is_idx_folder(p):
        return "test"
    if p.is_dir() and not (p / "manifest.json").is_file():
        for name in ("val", "validation", "test"):
            if (p / name).is_dir():
                return name
    return None


def _open_eval_data(cfg: EvalConfig, members: list[Member]):
    from minwa.data import open_dataset

    path = cfg.data or default_eval_data(cfg.ckpts[0] if cfg.ckpts else None, members[0].meta)
    return open_dataset(path, split=cfg.split or _auto_split(path))


def default_eval_data(ckpt, meta: dict) -> str:
    """The data a checkpoint validated on: its recorded ``data.val`` (a relative path is tried against the
    directory training ran in, the run folder and here), else the run folder's ``held_out.csv``."""
    data = (meta.get("config") or {}).get("data") or {}
    run = Path(ckpt) if ckpt and Path(ckpt).is_dir() else Path(ckpt).parent if ckpt else None
    val = data.get("val") or ""
    if val:
        for base in _bases(run, (meta.get("config") or {}).get("out")):
            if (base / val).exists():
                return str(base / val)
    elif run is not None and (run / "held_out.csv").is_file():
        return str(run / "held_out.csv")
    where = f" ({val} is not found from here or from the run folder)" if val else ""
    raise MinwaError(f"no evaluation data: pass --data PATH{where}")


def _bases(run: Path | None, out) -> list[Path]:
    """Where a relative path from the run's config may start: the directory training ran in (the run folder
    less its recorded relative ``out``), the run folder, the current directory."""
    bases = []
    if run is not None:
        run = Path(os.path.abspath(run))
        n = len(Path(out).parts) if out and not Path(out).is_absolute() else 0
        if n and run.parts[-n:] == Path(out).parts:
            bases.append(Path(*run.parts[:-n]))
        bases.append(run)
    return bases + [Path.cwd()]


def upsampling_note(dataset, scales) -> str | None:
    """Shards keep the shorter side at most ``max_side`` (their manifest says): a larger test scale only
    upsamples them."""
    max_side = int(((getattr(dataset, "manifest", None) or {}).get("settings") or {}).get("max_side") or 0)
    top = max(scales)
    if max_side and top > max_side:
        return (f"test scale {top} exceeds the {max_side} px shorter side the shards in {dataset.path} were "
                f"packed at: those views are upsampled (pack at --max-side {top} or more for real detail)")
    return None


def checkpoint_labels(dataset, members: list[Member]) -> np.ndarray:
    """The data's labels as the checkpoint's class indices. Classes are matched by name, so data that hold
    some of the checkpoint's classes, in any order (a labels file sorts its names; a fine-tuned model keeps
    the order its classes were named in), are scored right; a class the checkpoint lacks is one sentence."""
    classes = members[0].classes
    labels = np.asarray(dataset.labels, dtype=np.int64)
    ds_classes = list(getattr(dataset, "classes", []) or [])
    if not ds_classes or not members[0].meta.get("classes") or ds_classes == classes:
        return labels
    where = {c: i for i, c in enumerate(classes)}
    missing = [c for c in ds_classes if c not in where]
    if missing:
        raise MinwaError(f"the data's {len(ds_classes)} classes differ from the checkpoint's {len(classes)} "
                         f"({plural(len(missing), 'class')} not in the checkpoint: {', '.join(missing[:3])}"
                         f"{'...' if len(missing) > 3 else ''}; checkpoint: {', '.join(classes[:3])}...)")
    return np.asarray([where[c] for c in ds_classes], dtype=np.int64)[labels]


def evaluate(cfg: EvalConfig, *, members: list[Member] | None = None, dataset=None,
             progress: bool = False, member_scales: dict | None = None) -> EvalReport:
    """Score checkpoints (``cfg.ckpts``) or in-memory ``members`` on ``cfg.data`` (or ``dataset``).

    ``progress`` shows a progress bar over the batches (on stderr), for long evaluations.
    ``member_scales`` (member name -> test scales) gives members trained at different scales their own
    test scales in one pass (a low- and a high-resolution model fused); others take ``cfg.scales``.
    """
    t0 = time.perf_counter()
    check(cfg)
    rt = cfg.runtime
    if rt.threads:
        torch.set_num_threads(rt.threads)
    device = resolve_device(rt.device)
    precision = resolve_precision(rt.precision, device)
    members = members or load_members(cfg.ckpts, device)
    prepare(members, device, rt.channels_last)
    dataset = dataset if dataset is not None else _open_eval_data(cfg, members)
    classes = members[0].classes
    tally = HierarchyTally(_hierarchy(classes, cfg.wordnet), cfg.hierarchy_threshold) if cfg.hierarchy else None
    names = class_names(members, cfg.wordnet)
    labels_all = checkpoint_labels(dataset, members)
    k = len(classes)
    scales_of = {m.name: list((member_scales or {}).get(m.name) or cfg.scales) or [m.scale] for m in members}
    note = upsampling_note(dataset, [s for ss in scales_of.values() for s in ss])
    if note:
        print(f"warning: {note}", file=sys.stderr)
    rows = combination_rows(members, scales_of, cfg.flip)
    ks = topk_list(cfg.topk)
    accs = [Accumulator(k, ks, confusion=True) for _ in rows]
    n = len(dataset) if not cfg.limit else min(cfg.limit, len(dataset))
    if n == 0:
        raise MinwaError("the evaluation data hold no images")
    min_side = max(max(s) for s in scales_of.values())
    pixels = dataset.pixels() if hasattr(dataset, "pixels") else None  # IDX: one array, no per-image calls
    bar = _progress_bar(progress, n)
    for start in (bar.track(range(0, n, cfg.batch_size), total=-(-n // cfg.batch_size), description="evaluate")
                  if bar else range(0, n, cfg.batch_size)):
        idx = range(start, min(start + cfg.batch_size, n))
        images = pixels[idx.start:idx.stop] if pixels is not None else [dataset.image(i, min_side=min_side) for i in idx]
        labels = torch.as_tensor(labels_all[start:start + len(idx)], dtype=torch.int64)
        if int(labels.max()) >= k:
            raise MinwaError(f"label {int(labels.max())} is out of range for the checkpoint's {k} classes")
        probs_of, member_final = batch_probs(members, images, scales_of, cfg.flip, cfg.dense, device, precision,
                                             rt.channels_last)
        for row, acc in zip(rows, accs):
            if row["member"] is None:
                p = ensemble_probs([member_final[m.name] for m in members])
            else:
                p = mean_probs(probs_of[row["member"]], row["views"])
            acc.update(p, labels)
        if tally is not None:
            tally.update(p, labels)  # the last row's: the requested combination
    if bar:
        bar.stop()
    seconds = time.perf_counter() - t0
    final = accs[-1]
    confusion = final.confusion
    return EvalReport(
        top1_error=final.top1_error, topk_error=final.topk_error, topk=ks, topk_errors=final.errors, names=names,
        hierarchy=tally.summary() if tally else {},
        mean_class_accuracy=mean_class_accuracy(confusion), images=n, classes=classes,
        per_class=per_class_rows(confusion, classes), confusion=confusion.tolist(),
        rows=[{"name": r["name"], "member": r["member"], "views": r["views"], "top1_error": a.top1_error,
               "topk_error": a.topk_error, "topk_errors": a.errors, "mean_class_accuracy": mean_class_accuracy(a.confusion)}
              for r, a in zip(rows, accs)],
        members=[{"name": m.name, "model": m.meta.get("model"), "scale": m.scale, "crop": m.crop,
                  "test_scales": scales_of[m.name]} for m in members],
        settings={"data": str(getattr(dataset, "path", cfg.data)), "split": cfg.split, "flip": cfg.flip,
                  "dense": cfg.dense, "precision": precision, "device": str(device), "topk": ks},
        seconds=seconds, images_per_s=n / seconds,
    )


def class_names(members: list[Member], wordnet: str = "") -> list[str]:
    """How the classes are shown (``minwa.wordnet.display_name``); a note on stderr when WordNet ids stay
    unnamed because WordNet's files are missing."""
    names, note = display_names(members[0].classes, wordnet, members[0].meta.get("class_descriptions"))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return names


def _hierarchy(classes: list[str], wordnet: str = "") -> Hierarchy:
    """The WordNet tree above the classes, for ``--hierarchy`` (missing WordNet files: one sentence, exit 2)."""
    wn = WordNet(wordnet)
    try:
        return Hierarchy(classes, wn)
    finally:
        wn.close()


def _progress_bar(enabled: bool, n: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    return bar




def batch_probs(members: list[Member], images, scales_of: dict, flip: bool, dense: bool, device, precision: str,
                channels_last: bool = True) -> tuple[dict, dict]:
    """For one batch of images: each member's softmax per view, and each member's mean over its views."""
    probs_of = {m.name: view_probs(m, images, scales_of[m.name], flip, dense, device, precision, channels_last)
                for m in members}
    return probs_of, {name: mean_probs(vp, vp.keys()) for name, vp in probs_of.items()}


def predict(ckpts, images, topk: int = 5, *, scales=(), flip: bool = False, dense: bool = False,
            device: str = "auto", precision: str = "auto", members: list[Member] | None = None,
            max_pixels: int = MAX_PIXELS, batch_size: int = 256, hierarchy: float = 0.0,
            wordnet: str = "") -> list[dict]:
    """Top-k classes with probabilities for each image (a path or a uint8 H×W×C array), through the same
    scale/flip/ensemble averaging as :func:`evaluate`, ``batch_size`` images read and run at a time;
    image files over ``max_pixels`` are refused. Each class comes with its display ``name`` (WordNet's words
    for a WordNet id, read from ``wordnet``). ``hierarchy`` > 0 adds, per image, the most specific WordNet
    synset holding at least that much probability and the likeliest labels beneath it."""
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    members = members or load_members(ckpts, dev)
    prepare(members, dev)
    classes = members[0].classes
    tree = _hierarchy(classes, wordnet) if hierarchy else None
    names = class_names(members, wordnet)
    scales_of = {m.name: list(scales) or [m.scale] for m in members}
    # decoded as evaluate decodes a folder of files (RGB, shorter side >= the largest scale); a grey model's
    # luma is taken after the resize, as for every other input (minwa.evaluate.preprocess)
    min_side = max(max(s) for s in scales_of.values())
    images = list(images)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        arrays = [im if isinstance(im, np.ndarray) else read(im, min_side, max_pixels)
                  for im in chunk]
        _, member_final = batch_probs(members, arrays, scales_of, flip, dense, dev, precision)
        probs = ensemble_probs(list(member_final.values())).float().cpu()
        top = probs.topk(min(topk, len(classes)), dim=1)
        answers = tree.answers(probs, hierarchy) if tree else []
        for i, im in enumerate(chunk):
            name = str(im) if not isinstance(im, np.ndarray) else f"array {start + i}"
            result = {"image": name, "top": [_entry(classes, names, int(j), float(p))
                                             for p, j in zip(top.values[i], top.indices[i])]}
            if tree:
                result["hierarchy"] = {**answers[i].to_dict(), "threshold": hierarchy,
                                       "beneath": [_entry(classes, names, j, p)
                                                   for j, p in tree.beneath(answers[i], probs[i])]}
            results.append(result)
    return results


def _entry(classes, names, j: int, p: float) -> dict:
    return {"class": classes[j], "name": names[j], "index": j, "probability": p}
