"""Data sources: one ``ImageDataset`` interface over IDX files, ImageFolder trees, ``.lst`` lists and shards.

``open_dataset(path, split)`` recognises the format from what is on disk (never from a flag), so every
command takes any of them: a packed shard folder (``manifest.json``), a Fashion-MNIST IDX folder, an
ImageFolder tree (``root/<class>/<image>``, the class folders sorted by name as torchvision does), an
MXNet-style ``.lst`` file (``index<TAB>label<TAB>path``, paths relative to the list's folder), or a labels
file (a ``.csv`` of ``path,label`` or a ``.txt`` of ``path label``; a flat folder of images holding
``labels.csv`` or ``labels.txt``), as validation sets come.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from minwa.data import decode as dec
from minwa.data import idx as idxfmt
from minwa.data.parts import unfinished_pack
from minwa.errors import MinwaError
from minwa.utils.words import plural

SPLIT_NAMES = ("train", "val", "validation", "test")


class ImageDataset:
    """Images with integer labels. Subclasses set ``path``, ``classes``, ``labels`` (int64) and
    ``channels`` (1 or 3) and implement ``image``; the rest has working defaults."""

    kind = "images"
    path: Path
    classes: list[str]
    labels: np.ndarray
    channels: int = 3
    split: str | None = None
    #: inputs seen while listing the source that can never be samples ({"path", "reason"})
    skipped: list[dict]

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int, min_side: int | None = None) -> np.ndarray:
        """Sample ``i`` decoded to HxWxC uint8; JPEGs may be decoded smaller, but the shorter side
        stays >= ``min_side``."""
        raise NotImplementedError

    def image_size(self) -> tuple[int, int] | None:
        """(height, width) when every image has that size (known without decoding), else None."""
        return None

    def pixels(self) -> np.ndarray | None:
        """All images as one N x H x W x C uint8 array when the source holds them so (IDX), else None."""
        return None

    def source(self, i: int) -> str:
        """Where sample ``i`` comes from, for messages and the manifest."""
        return f"{self.path}[{i}]"

    def pack_item(self, i: int, *, max_side: int, quality: int) -> tuple[bytes, str, int, int]:
        """(bytes, extension, height, width) to store in a shard, or ``decode.Rejected``."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Changes whenever the content of the source changes (used to resume an interrupted pack)."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} {self.path} ({plural(len(self), 'image')}, {plural(len(self.classes), 'class')})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class IdxDataset(ImageDataset):
    """Fashion-MNIST (or MNIST) IDX files: the pixel array is read once, nothing is ever decoded."""

    kind = "idx"

    def __init__(self, folder, split: str = "train"):
        self.path = Path(folder)
        self.split = split
        images, self.labels = idxfmt.load_idx_split(self.path, split)
        self._pixels = images[:, :, :, None]
        self.channels = 1
        self.classes = idxfmt.class_names(self.path, int(self.labels.max(initial=-1)) + 1)
        self.skipped = []

    def image(self, i, min_side=None):
        return self._pixels[i]

    def image_size(self):
        return tuple(self._pixels.shape[1:3])

    def pixels(self):
        return self._pixels

    def source(self, i):
        return f"{self.path}:{self.split}[{i}]"

    def pack_item(self, i, *, max_side, quality):
        h, w = self._pixels.shape[1:3]
        return dec.encode_png(self._pixels[i]), "png", h, w

    def fingerprint(self):
        files = [idxfmt.find_idx_file(self.path, self.split, w) for w in ("images", "labels")]
        return _hash([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])


class FileDataset(ImageDataset):
    """Images stored one per file (ImageFolder, ``.lst``): ``files[i]`` with label ``labels[i]``."""

    files: list[Path]
    channels = 3

    def _read(self, i) -> bytes:
        try:
            return self.files[i].read_bytes()
        except OSError as e:
            raise MinwaError(f"cannot read {self.files[i]}: {e.strerror or e}") from None

    def image(self, i, min_side=None):
        """Sample ``i`` decoded; a file that cannot be is one sentence with the reason ``pack`` gives it."""
        data = self._read(i)
        try:
            if not data:
                raise dec.Rejected(dec.EMPTY)
            return dec.decode_source(data, self.channels, min_side)
        except dec.DECODE_ERRORS as e:
            reason = dec.failure_reason(data, e)
        except Exception as e:  # Pillow raises many kinds for damaged files
            reason = f"{dec.CORRUPT} ({type(e).__name__}: {e})"
        raise MinwaError(f"cannot decode {self.files[i]}: {reason}; remove it, or `minwa pack` the folder, which "
                         "leaves out and lists every such file")

    def source(self, i):
        return str(self.files[i])

    def pack_item(self, i, *, max_side, quality):
        try:
            data = self.files[i].read_bytes()
        except OSError as e:
            raise dec.Rejected(f"unreadable file ({e.strerror or e})") from None
        return dec.prepare_for_pack(data, max_side=max_side, quality=quality, channels=self.channels)

    def fingerprint(self):
        rows = []
        for f, y in zip(self.files, self.labels.tolist()):
            try:
                st = f.stat()
                rows.append([str(f), y, st.st_size, st.st_mtime_ns])
            except OSError:
                rows.append([str(f), y, -1, -1])
        return _hash([self.classes, rows])


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class ImageFolderDataset(FileDataset):
    """``root/<class>/.../<image>``: every visible file under a class folder is a sample (a file that is
    not an image is rejected when packing, with the reason); files directly under ``root`` are skipped."""

    kind = "imagefolder"

    def __init__(self, root, split: str | None = None):
        self.path = Path(root)
        self.split = split
        class_dirs = sorted(p for p in self.path.iterdir() if p.is_dir() and _visible(p))
        if not class_dirs:
            raise MinwaError(f"{self.path} has no class folders (expected {self.path}/<class>/<image>)")
        self.classes = [p.name for p in class_dirs]
        self.files, labels = [], []
        self.skipped = [
            {"path": str(p), "reason": "not inside a class folder"}
            for p in sorted(self.path.iterdir())
            if p.is_file() and _visible(p)
        ]
        walked = {os.path.realpath(p) for p in (self.path, *class_dirs)}
        for label, d in enumerate(class_dirs):
            for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
                dirnames[:] = self._unwalked(Path(dirpath), sorted(n for n in dirnames if not n.startswith(".")), walked)
                for name in sorted(filenames):
                    if not name.startswith("."):
                        self.files.append(Path(dirpath) / name)
                        labels.append(label)
        self.labels = np.asarray(labels, dtype=np.int64)

    def _unwalked(self, parent: Path, names: list[str], walked: set[str]) -> list[str]:
        """The sub-folders not walked yet, by real path: links are followed, but none twice, so a link
        back up the tree (a loop) or to another class's folder is listed in ``skipped``, not walked
        again and again until the path is too long."""
        keep = []
        for name in names:
            real = os.path.realpath(parent / name)
            if real in walked:
                self.skipped.append({"path": str(parent / name), "reason": f"a link to a folder already included ({real})"})
            else:
                walked.add(real)
                keep.append(name)
        return keep


class ListDataset(FileDataset):
    """MXNet ``.lst``: ``index<TAB>label[<TAB>label...]<TAB>path``; the first label is the class.
    Class names come from ``classes.txt`` beside the list when present, else they are the label numbers.
    Without names for them, labels of ``max(1000, 10 x lines)`` or more are refused: one typo (label
    1000000) would otherwise make a million empty classes and a head to match."""

    kind = "lst"

    def __init__(self, lst):
        self.path = Path(lst)
        root = self.path.parent
        self.files, labels, linenos = [], [], []
        text = self.path.read_text(encoding="utf-8", errors="strict")
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            try:
                if len(cols) < 3:
                    raise ValueError
                label = float(cols[1])
                if label != int(label) or label < 0:
                    raise ValueError
            except ValueError:
                raise MinwaError(f"{self.path} line {lineno} is not 'index<TAB>label<TAB>path' with a whole, non-negative label") from None
            self.files.append(root / cols[-1])
            labels.append(int(label))
            linenos.append(lineno)
        if not self.files:
            raise MinwaError(f"{self.path} lists no images")
        self.labels = np.asarray(labels, dtype=np.int64)
        n = int(self.labels.max()) + 1
        names_file = root / "classes.txt"
        names = [s.strip() for s in names_file.read_text(encoding="utf-8").splitlines() if s.strip()] if names_file.is_file() else []
        limit = max(1000, 10 * len(self.files))
        if len(names) < n and n > limit:
            at = int(self.labels.argmax())
            raise MinwaError(f"{self.path} line {linenos[at]} has label {labels[at]}, far beyond its {len(self.files)} "
                             f"images (labels stop at {limit - 1} unless classes.txt beside it names every class)")
        self.classes = names if len(names) >= n else [str(i) for i in range(n)]
        self.skipped = []


LABEL_FILES = ("labels.csv", "labels.txt")  # a flat folder of images labelled by one of these files
_IMAGE_SUFFIXES = (".JPEG", ".jpg", ".jpeg", ".png", ".JPG", ".PNG")
_HEADER_NAMES = {"path", "file", "filename", "image", "imageid", "image_id", "name"}


class LabelFileDataset(FileDataset):
    """Images named by a labels file, as validation sets come (ImageNet's): a CSV of ``path,label`` rows,
    or a text file of ``path label`` lines (Caffe's ``val.txt``), paths relative to the file's folder; a
    header row (``path,label``, ``ImageId,PredictionString``) is skipped, and a path without a suffix finds
    its ``.JPEG``/``.jpg``/``.png`` file. A label is a class name (its first word: ImageNet's
    ``PredictionString`` holds boxes after it); classes are the names sorted as ImageFolder sorts its
    folders, so a labelled folder validates a model trained on class folders (matched by name). Whole
    numbers are class indices instead, named by ``classes.txt`` beside the file when there is one."""

    kind = "labels"

    def __init__(self, path, rows: list[tuple[int, str, str]] | None = None):
        self.path = Path(path)
        root = self.path.parent
        rows = rows if rows is not None else read_label_rows(self.path)
        if not rows:
            raise MinwaError(f"{self.path} labels no images")
        self.files = []
        for lineno, name, _ in rows:
            f = root / name
            if not f.is_file() and not f.suffix:
                f = next((g for g in (f.with_name(f.name + x) for x in _IMAGE_SUFFIXES) if g.is_file()), f)
            if not f.is_file():
                raise MinwaError(f"{self.path} line {lineno} names {name}, which is not a file in {root}")
            self.files.append(f)
        labels = [label for _, _, label in rows]
        if all(label.isdigit() for label in labels):
            n = max(int(label) for label in labels) + 1
            names_file = root / "classes.txt"
            names = [x.strip() for x in names_file.read_text(encoding="utf-8").splitlines() if x.strip()] \
                if names_file.is_file() else []
            self.classes = names if len(names) >= n else [str(i) for i in range(n)]
            self.labels = np.asarray([int(label) for label in labels], dtype=np.int64)
        else:
            self.classes = sorted(set(labels))
            where = {c: i for i, c in enumerate(self.classes)}
            self.labels = np.asarray([where[label] for label in labels], dtype=np.int64)
        self.skipped = []


def read_label_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, path, label) of every labelled line of a labels file (CSV or ``path label`` text)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MinwaError(f"cannot read labels file {path}: {getattr(e, 'strerror', None) or e}") from None
    if path.suffix.lower() == ".csv":
        lines = [(n, cols) for n, cols in enumerate(csv.reader(io.StringIO(text)), 1) if any(c.strip() for c in cols)]
    else:
        lines = [(n, line.strip().rsplit(None, 1)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    header = lines[0][1] if lines and lines[0][1] and lines[0][1][0].strip().lower() in _HEADER_NAMES else None
    if header:
        lines = lines[1:]
    first_word = header is not None and len(header) > 1 and header[1].strip().lower() == "predictionstring"
    rows = []
    for lineno, cols in lines:  # a class name may hold spaces ("Ankle boot"); ImageNet's PredictionString
        words = cols[1].split() if len(cols) >= 2 else []  # holds boxes after its first word
        label = "" if not words else words[0] if first_word else cols[1].strip()
        if not label or not cols[0].strip():
            raise MinwaError(f"{path} line {lineno} is not 'path{',' if path.suffix.lower() == '.csv' else ' '}"
                             "label'")
        rows.append((lineno, cols[0].strip(), label))
    return rows


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _split_folders(root: Path) -> list[Path]:
    dirs = [p for p in root.iterdir() if p.is_dir() and _visible(p)]
    return dirs if dirs and all(p.name.lower() in SPLIT_NAMES for p in dirs) else []


def open_dataset(path, split: str | None = None) -> ImageDataset:
    """Open any data source minwa reads; the format is recognised from the files themselves.

    ``split``: ``train`` | ``test`` for IDX folders (default train); a sub-folder name for a root
    holding ``train/``, ``val/``... folders (default train); for shards it must match the split they
    were packed from, when recorded. Anything else is a one-sentence ``MinwaError``.
    """
    from minwa.data.shards import ShardDataset

    p = Path(path).expanduser()
    if not p.exists():
        raise MinwaError(f"data not found: {p}")
    if p.is_file():
        if p.name == "manifest.json":
            return ShardDataset(p.parent, split=split)
        if p.suffix.lower() == ".lst":
            return ListDataset(p)
        if p.suffix.lower() in (".csv", ".txt"):
            from minwa.data.listing import open_labels_file

            return open_labels_file(p)
        if "-ubyte" in p.name:
            name_split = "test" if p.name.startswith("t10k") else "train"
            return IdxDataset(p.parent, split or name_split)
        raise MinwaError(f"{p} is not a data source minwa reads (a shard folder, an IDX folder, an ImageFolder tree or a .lst file)")
    if (p / "manifest.json").is_file():
        return ShardDataset(p, split=split)
    if split and (p / split / "manifest.json").is_file():
        return ShardDataset(p / split, split=split)
    if idxfmt.is_idx_folder(p):
        return IdxDataset(p, split or "train")
    splits = _split_folders(p)
    if splits:
        want = split or "train"
        chosen = [d for d in splits if d.name.lower() == want.lower()]
        if not chosen:
            raise MinwaError(f"{p} has no '{want}' folder (it has {', '.join(sorted(d.name for d in splits))})")
        return open_dataset(chosen[0], split=None)
    if split and (p / split).is_dir():
        return open_dataset(p / split, split=None)
    if unfinished := unfinished_pack(p):
        raise MinwaError(unfinished)
    if any(d.is_dir() and _visible(d) for d in p.iterdir()):
        return ImageFolderDataset(p, split=split)
    labels = [p / name for name in LABEL_FILES if (p / name).is_file()]
    if labels:
        from minwa.data.listing import open_labels_file

        return open_labels_file(labels[0])
    raise MinwaError(f"{p} is not a data source minwa reads (no manifest.json, no IDX files, no class folders, "
                     f"no {' or '.join(LABEL_FILES)})")
