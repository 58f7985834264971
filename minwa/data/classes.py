"""Matching class lists between data sets by name (an ImageFolder sorts its classes; IDX files do not)."""

from __future__ import annotations

import numpy as np

from minwa.errors import MinwaError


def label_map(source: list[str], target: list[str]) -> np.ndarray | None:
    """Array ``m`` with ``m[i]`` = the index in ``target`` of ``source[i]``; ``None`` when already equal.

    A source class missing from ``target`` is an error: its images could never be scored right.
    """
    source, target = list(source), list(target)
    if source == target:
        return None
    where = {name: i for i, name in enumerate(target)}
    missing = [name for name in source if name not in where]
    if missing:
        raise MinwaError(f"the data's classes {', '.join(map(repr, missing[:3]))} are not among the model's "
                         f"{len(target)} classes ({', '.join(target[:3])}, ...)")
    return np.array([where[name] for name in source], dtype=np.int64)
