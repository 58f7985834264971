"""A class subset of any data set, with labels renumbered 0..k-1 in the order the classes are named.

Used for fine-tuning experiments (pre-train on some classes, fine-tune on the others) and for training on
part of a large label set; ``data.classes`` in the config selects it.
"""

from __future__ import annotations

import numpy as np

from minwa.data.sources import ImageDataset
from minwa.errors import MinwaError


class ClassSubset(ImageDataset):
    def __init__(self, base: ImageDataset, classes: list[str]):
        unknown = [c for c in classes if c not in base.classes]
        if unknown:
            raise MinwaError(f"classes {', '.join(map(repr, unknown))} are not in {base.path} "
                             f"(it has: {', '.join(base.classes)})")
        self.base = base
        self.path = base.path
        self.split = base.split
        self.kind = base.kind
        self.channels = base.channels
        self.skipped = []
        self.classes = list(classes)
        old_to_new = np.full(len(base.classes), -1, dtype=np.int64)
        for new, name in enumerate(classes):
            old_to_new[base.classes.index(name)] = new
        mapped = old_to_new[np.asarray(base.labels, dtype=np.int64)]
        self.index = np.flatnonzero(mapped >= 0)
        self.labels = mapped[self.index]

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
        return f"{self.base.fingerprint()}:{','.join(self.classes)}"

    def describe(self) -> str:
        return f"{len(self.classes)} classes of {self.base.describe()}"


def select_classes(dataset: ImageDataset, classes: list[str] | None) -> ImageDataset:
    return ClassSubset(dataset, classes) if classes else dataset
