"""Classification metrics, accumulated batch by batch so the softmax of a whole test set is never held.

Top-k error (ILSVRC's measure), mean per-class accuracy (the fine-grained benchmarks' measure: each
class weighs the same however many test images it has) and the confusion matrix (rows: true class,
columns: top-1 prediction).
"""

from __future__ import annotations

import numpy as np
import torch


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (n,): the true label is among the ``k`` highest scores (k capped at the class count)."""
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


class Accumulator:
    """Running counts for one way of combining views (one row of the report)."""

    def __init__(self, num_classes: int, topk: int = 5, confusion: bool = False):
        self.k, self.topk = num_classes, topk
        self.n = self.top1 = self.topk_hits = 0
        self.confusion = np.zeros((num_classes, num_classes), np.int64) if confusion else None

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        pred = probs.argmax(dim=1)
        self.n += len(labels)
        self.top1 += int((pred == labels).sum())
        self.topk_hits += int(topk_correct(probs, labels, self.topk).sum())
        if self.confusion is not None:
            np.add.at(self.confusion, (labels.numpy(), pred.numpy()), 1)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1 / max(self.n, 1)

    @property
    def topk_error(self) -> float:
        return 1.0 - self.topk_hits / max(self.n, 1)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no test images)."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    acc = per_class_accuracy(confusion)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
