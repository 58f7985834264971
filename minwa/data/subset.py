"""Views of part of any data set: a class subset, and a held-out validation split.

``select_classes`` (``data.classes``): some classes, labels renumbered 0..k-1 in the order they are named,
for fine-tuning experiments and for training on part of a large label set. ``hold_out`` (``data.val_fraction``):
a validation split cut from the training set when no validation set is given, stratified by class and
drawn from a seed, so a resumed run or another rank cuts the same one.
"""

from __future__ import annotations

import functools

import numpy as np

from minwa.data.sources import ImageDataset
from minwa.errors import MinwaError


_HOLD_OUT_DOMAIN = 0x686F6C64  # "hold": keeps this draw apart from the epoch order of the same seed


class Subset(ImageDataset):
    """Samples ``index`` of ``base`` (in that order) with labels ``labels`` among ``classes``."""

    def __init__(self, base: ImageDataset, index: np.ndarray, labels: np.ndarray, classes: list[str]):
        self.base = base
        self.path = base.path
        self.split = base.split
        self.kind = base.kind
        self.channels = base.channels
        self.skipped = []
        self.classes = list(classes)
        self.index = np.asarray(index, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if hasattr(base, "size_of"):  # only sources that know their images' sizes without decoding have it
            self.size_of = functools.partial(_size_of, base, self.index)

    def image(self, i: int, min_side: int | None = None) -> np.ndarray:
        return self.base.image(int(self.index[i]), min_side=min_side)

    def image_size(self):
        return self.base.image_size()

    def pixels(self):
        px = self.base.pixels()
        return None if px is None else px[self.index]

    def source(self, i: int) -> str:
        return self.base.source(int(self.index[i]))

    def check_unchanged(self) -> None:
        """The base's check that its files are still the ones it opened (shards), where it has one."""
        check = getattr(self.base, "check_unchanged", None)
        if check is not None:
            check()

    def fingerprint(self) -> str:
        return f"{self.base.fingerprint()}:{','.join(self.classes)}:{len(self)}"

    def describe(self) -> str:
        return f"{len(self):,} images, {len(self.classes)} classes of {self.base.describe()}"


def _size_of(base, index: np.ndarray, i: int) -> tuple[int, int]:
    return base.size_of(int(index[i]))


class ClassSubset(Subset):
    def __init__(self, base: ImageDataset, classes: list[str]):
        unknown = [c for c in classes if c not in base.classes]
        if unknown:
            raise MinwaError(f"classes {', '.join(map(repr, unknown))} are not in {base.path} "
                             f"(it has: {', '.join(base.classes)})")
        old_to_new = np.full(len(base.classes), -1, dtype=np.int64)
        for new, name in enumerate(classes):
            old_to_new[base.classes.index(name)] = new
        mapped = old_to_new[np.asarray(base.labels, dtype=np.int64)]
        index = np.flatnonzero(mapped >= 0)
        super().__init__(base, index, mapped[index], classes)


def select_classes(dataset: ImageDataset, classes: list[str] | None) -> ImageDataset:
    return ClassSubset(dataset, classes) if classes else dataset


def held_out_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The sample indices to hold out, sorted: from each class ``round(fraction * n)`` of its ``n`` samples,
    at least one when it has two or more, never all, drawn by a permutation of (seed, class)."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(max(int(np.floor(fraction * len(members) + 0.5)), 1 if len(members) >= 2 else 0), len(members) - 1)
        gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & (2**64 - 1), int(c), _HOLD_OUT_DOMAIN])))
        picked.append(members[gen.permutation(len(members))[:k]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def hold_out(dataset: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(the rest, the held-out part) of ``dataset``: ``held_out_indices`` per class, both with its classes."""
    out = held_out_indices(dataset.labels, fraction, seed)
    if len(out) == 0:
        raise MinwaError(f"data.val_fraction={fraction} holds out nothing of {dataset.path} ({len(dataset)} images): "
                         "no class has two images; give a validation set (--val) or set data.val_fraction=0")
    keep = np.setdiff1d(np.arange(len(dataset), dtype=np.int64), out, assume_unique=True)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    return (Subset(dataset, keep, labels[keep], dataset.classes), Subset(dataset, out, labels[out], dataset.classes))
