"""A record of which samples a run used (its ``held_out.csv``), written so that it reads back as data.

``listing_csv`` writes ``path,label`` rows naming each sample by its source, made absolute: a raw image
file, or a sample inside a data set (``<shards>/shard-00000.tar:<key>``, ``<idx folder>:train[12]``).
``open_labels_file`` reads any labels file: rows naming image files give a ``LabelFileDataset``; rows
naming samples of packed shards or IDX files give those samples of that data set, so ``minwa eval --data
RUN/held_out.csv`` scores exactly the images the run validated on, whatever the run trained from.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from minwa.data.sources import ImageDataset, LabelFileDataset, open_dataset, read_label_rows
from minwa.data.subset import Subset
from minwa.errors import MinwaError

_IDX_SAMPLE = re.compile(r"(?P<split>\w+)\[\d+\]")


def listing_csv(dataset: ImageDataset) -> str:
    """``path,label`` rows (a header first) naming every sample of ``dataset`` by its absolute source."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["path", "label"])
    rows.writerows([os.path.abspath(dataset.source(i)), dataset.classes[int(y)]] for i, y in enumerate(dataset.labels))
    return out.getvalue()


def _container(name: str, base: Path) -> tuple[Path, str | None, str] | None:
    """(data set folder, split, the sample's name within it) when ``name`` is a sample of packed shards or
    IDX files, a relative one found from ``base`` or else from here; None for anything else (an image file)."""
    left, sep, right = name.rpartition(":")
    if not sep or not left:
        return None
    where = Path(left) if Path(left).is_absolute() or not (base / left).exists() else base / left
    if where.suffix == ".tar" and where.parent.is_dir():
        return where.parent, None, f"/{where.name}:{right}"
    if (m := _IDX_SAMPLE.fullmatch(right)) and where.is_dir():
        return where, m["split"], f":{right}"
    return None


def open_labels_file(path: Path) -> ImageDataset:
    """The images a labels file names, with their labels (see the module's docstring)."""
    rows = read_label_rows(path)
    first = _container(rows[0][1], path.parent) if rows else None
    if first is None:
        return LabelFileDataset(path, rows)
    folder, split, _ = first
    base = open_dataset(folder, split=split)
    where = {base.source(i)[len(str(base.path)):]: i for i in range(len(base))}
    index = []
    for lineno, name, _ in rows:
        got = _container(name, path.parent)
        i = where.get(got[2]) if got is not None and got[:2] == (folder, split) else None
        if i is None:
            raise MinwaError(f"{path} line {lineno} names {name}, which is not a sample of {folder}")
        index.append(i)
    named = {label for _, _, label in rows}
    classes = [c for c in base.classes if c in named] if named <= set(base.classes) else sorted(named)
    number = {c: k for k, c in enumerate(classes)}
    return Subset(base, np.asarray(index), np.asarray([number[label] for _, _, label in rows]), classes)
