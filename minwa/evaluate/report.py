"""The evaluation report: numbers as a dataclass, shown as rich tables, saved as JSON and a confusion PNG."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from minwa.evaluate.metrics import per_class_accuracy
from minwa.utils.atomic import atomic_save_figure, atomic_write_json


@dataclass
class EvalReport:
    top1_error: float  # of the requested combination (all members, scales and flips)
    topk_error: float  # at the largest k asked for
    topk: list[int]  # every k reported (1 always among them)
    mean_class_accuracy: float
    images: int
    classes: list[str]
    per_class: list[dict]  # class, images, accuracy, confused_with, confused_count
    confusion: list[list[int]]  # rows: true class, columns: top-1 prediction
    rows: list[dict]  # breakdown: name, members, scales, flip, top1_error, topk_error, topk_errors
    members: list[dict]  # name, model, scale, crop
    settings: dict
    seconds: float
    images_per_s: float
    topk_errors: dict = field(default_factory=dict)  # str(k) -> top-k error, every k asked for
    names: list[str] = field(default_factory=list)  # how each class is shown (minwa.wordnet.display_name)
    hierarchy: dict = field(default_factory=dict)  # --hierarchy's summary (metrics.HierarchyTally), else {}
    files: dict = field(default_factory=dict)

    @property
    def top1_accuracy(self) -> float:
        return 1.0 - self.top1_error

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top1_accuracy"] = self.top1_accuracy
        return _json_safe(d)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def per_class_rows(confusion: np.ndarray, classes: list[str]) -> list[dict]:
    acc = per_class_accuracy(confusion)
    rows = []
    for i, name in enumerate(classes):
        off = confusion[i].copy()
        off[i] = -1
        j = int(off.argmax()) if len(off) > 1 else i
        rows.append({"class": name, "images": int(confusion[i].sum()), "accuracy": float(acc[i]),
                     "confused_with": classes[j] if j != i and off[j] > 0 else "",
                     "confused_count": int(max(off[j], 0)) if j != i else 0})
    return rows


def print_report(report: EvalReport, console=None) -> None:
    """The tables and the summary line. A top-k error is shown only with more than k classes (with k or
    fewer it is always 0%, and says nothing): one line says which were left out."""
    console = console or Console()
    names = dict(zip(report.classes, report.names or report.classes))
    ks = [k for k in report.topk if k > 1 and len(report.classes) > k]
    if len(report.rows) > 1:
        t = Table(title="views and members combined (softmax averaged)")
        t.add_column("combination")
        for k in [1, *ks]:
            t.add_column(f"top-{k} error", justify="right")
        for r in report.rows:
            t.add_row(r["name"], *(f"{_error(r, k):.2%}" for k in [1, *ks]))
        console.print(t)
    t = Table(title=f"per class ({report.images:,} images)")
    for col, just in (("class", "left"), ("images", "right"), ("accuracy", "right"), ("most confused with", "left")):
        t.add_column(col, justify=just)
    for r in report.per_class:
        acc = "-" if not math.isfinite(r["accuracy"]) else f"{r['accuracy']:.2%}"
        conf = f"{names[r['confused_with']]} ({r['confused_count']})" if r["confused_with"] else ""
        t.add_row(names[r["class"]], f"{r['images']:,}", acc, conf)
    console.print(t)
    if report.hierarchy:
        print_hierarchy(report.hierarchy, console)
    errors = "".join(f"top-{k} error {report.topk_errors[str(k)]:.2%}  " for k in ks)
    console.print(f"top-1 error {report.top1_error:.2%}  {errors}"
                  f"mean per-class accuracy {report.mean_class_accuracy:.2%}  "
                  f"({report.images:,} images, {report.seconds:.1f}s, {report.images_per_s:,.0f} images/s)")
    left = [k for k in report.topk if k > 1 and k not in ks]
    if left:
        console.print(f"(top-{', top-'.join(map(str, left))} not shown: with {len(report.classes)} classes "
                      f"any {left[0]} guesses hold the truth, so the error is 0)")
    for what, path in report.files.items():
        console.print(f"{what}: {path}")


def _error(row: dict, k: int) -> float:
    return row["top1_error"] if k == 1 else row["topk_errors"][str(k)]


def print_hierarchy(h: dict, console) -> None:
    """``--hierarchy``: how often the tree's answer is right and how specific it is, then where top-1 errs."""
    console.print(f"hierarchy (WordNet, answer = the most specific synset holding {h['threshold']:.0%}): "
                  f"answers right {h['answer_accuracy']:.2%}, {h['single_label_answers']:.1%} of them a single "
                  f"label, {h['mean_labels_per_answer']:.1f} labels per answer on average")
    if h["mistakes_by_common_ancestor"]:
        parts = [f"{m['name'] or 'nothing in common'} {m['count']}" for m in h["mistakes_by_common_ancestor"]]
        console.print(f"top-1 mistakes ({h['top1_mistakes']:,}) by the lowest synset above both prediction and "
                      f"truth: {', '.join(parts)}")
    if h["internal_labels"]:
        console.print(f"{len(h['internal_labels'])} labels are also ancestors of other labels: each counts as a "
                      f"leaf of its own ('the label itself') under its synset, toward no finer label")


def save_confusion_png(confusion: np.ndarray, classes: list[str], path, title: str = "") -> Path:
    """Row-normalised confusion matrix (counts written in the cells for up to 20 classes)."""
    import matplotlib  # heavy (~0.3 s): only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    support = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    frac = confusion / support
    size = min(4 + 0.45 * k, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= 50:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_outputs(report: EvalReport, out) -> EvalReport:
    """``out/confusion.png`` and ``out/eval.json`` (written atomically, JSON last)."""
    out = Path(out)
    png = save_confusion_png(np.asarray(report.confusion), report.names or report.classes, out / "confusion.png",
                             f"top-1 error {report.top1_error:.2%}")
    report.files = {"confusion matrix": str(png), "metrics": str(out / "eval.json")}
    atomic_write_json(out / "eval.json", report.to_dict())
    return report
