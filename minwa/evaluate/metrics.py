"""Classification metrics, accumulated batch by batch so the softmax of a whole test set is never held.

Top-k error (ILSVRC's measure), mean per-class accuracy (the fine-grained benchmarks' measure: each
class weighs the same however many test images it has) and the confusion matrix (rows: true class,
columns: top-1 prediction).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (n,): the true label is among the ``k`` highest scores (k capped at the class count)."""
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


class Accumulator:
    """Running counts for one way of combining views (one row of the report)."""

    def __init__(self, num_classes: int, topk=(1, 5), confusion: bool = False):
        self.k, self.topk = num_classes, sorted({1, *topk})
        self.n = 0
        self.hits = dict.fromkeys(self.topk, 0)
        self.confusion = np.zeros((num_classes, num_classes), np.int64) if confusion else None

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.n += len(labels)
        ranked = probs.topk(min(self.topk[-1], probs.shape[1]), dim=1).indices == labels[:, None]  # one sort, all k
        for k in self.topk:
            self.hits[k] += int(ranked[:, :k].any(dim=1).sum())
        if self.confusion is not None:
            np.add.at(self.confusion, (labels.numpy(), probs.argmax(dim=1).numpy()), 1)

    def error(self, k: int) -> float:
        return 1.0 - self.hits[k] / max(self.n, 1)

    @property
    def errors(self) -> dict[str, float]:
        """Top-k error per k, keyed by str(k) (as JSON keeps it)."""
        return {str(k): self.error(k) for k in self.topk}

    @property
    def top1_error(self) -> float:
        return self.error(1)

    @property
    def topk_error(self) -> float:
        """The error at the largest k asked for."""
        return self.error(self.topk[-1])


class HierarchyTally:
    """``--hierarchy``'s counts (docs/data.md): whether each image's answer — the most specific WordNet synset
    or label holding ``threshold`` of the probability — covers the truth, how many labels it spans, and,
    for each wrong top-1, the lowest synset above both the prediction and the truth ("wrong, but a dog")."""

    def __init__(self, hierarchy, threshold: float):
        self.h, self.threshold = hierarchy, threshold
        self.n = self.right = self.labels = self.single = self.wrong = 0
        self.mistakes: Counter = Counter()

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        answers = self.h.answers(probs, self.threshold)
        for a, y, p in zip(answers, labels.tolist(), probs.argmax(dim=1).tolist()):
            self.n += 1
            self.right += self.h.covers(a, y)
            self.labels += a.labels
            self.single += a.is_label
            if p != y:
                self.wrong += 1
                self.mistakes[self.h.lowest_common(p, y)] += 1

    def summary(self, most: int = 10) -> dict:
        n = max(self.n, 1)
        return {
            "threshold": self.threshold,
            "answer_accuracy": self.right / n,  # the answer is the true label or a synset above it
            "mean_labels_per_answer": self.labels / n,  # 1 = always a single label
            "single_label_answers": self.single / n,
            "top1_mistakes": self.wrong,
            "mistakes_by_common_ancestor": [
                {"wnid": self.h.nodes[i] if i is not None else "", "name": self.h.node_names[i] if i is not None else "",
                 "labels": len(self.h.under[i]) if i is not None else 0, "count": c}
                for i, c in self.mistakes.most_common(most)],
            "internal_labels": list(self.h.internal),
        }


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no test images)."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    acc = per_class_accuracy(confusion)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
