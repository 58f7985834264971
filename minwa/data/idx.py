"""IDX files (the MNIST / Fashion-MNIST format), read straight into numpy without any image decoding.

Format: magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, then the array. Files may be
gzip-compressed (``.gz``, detected by content, not by name). A folder is recognised as an IDX source
when it holds ``train-images-idx3-ubyte[.gz]`` (and/or the ``t10k-`` test files).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from minwa.errors import MinwaError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_file(folder: Path, split: str, what: str) -> Path | None:
    """``folder/<prefix>-<what>-idx?-ubyte[.gz]`` (what = images | labels), or None."""
    prefix = SPLIT_PREFIX[split]
    for pattern in (f"{prefix}-{what}-idx?-ubyte", f"{prefix}-{what}-idx?-ubyte.gz", f"{prefix}-{what}.idx?-ubyte*"):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and any(find_idx_file(folder, s, "images") for s in SPLIT_PREFIX)


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzip or plain); a damaged file is a one-line MinwaError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise MinwaError(f"IDX file {path} is corrupt: cannot decompress it ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or not 1 <= raw[3] <= 4:
        raise MinwaError(f"IDX file {path} is corrupt: it does not start with an IDX header")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MinwaError(f"IDX file {path} is corrupt: its header is cut short")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise MinwaError(
            f"IDX file {path} is corrupt: header says {shape} ({need:,} bytes of data) but it holds "
            f"{len(raw) - header:,} bytes"
        )
    arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else arr


def load_idx_split(folder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W uint8, labels N int64) of ``split`` (train | test) in an IDX folder."""
    folder = Path(folder)
    if split not in SPLIT_PREFIX:
        raise MinwaError(f"IDX split must be 'train' or 'test', got '{split}'")
    img_path = find_idx_file(folder, split, "images")
    lab_path = find_idx_file(folder, split, "labels")
    if img_path is None or lab_path is None:
        prefix = SPLIT_PREFIX[split]
        raise MinwaError(f"{folder} has no {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] files for the '{split}' split")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise MinwaError(f"IDX file {img_path} is corrupt: expected N x H x W uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise MinwaError(f"IDX file {lab_path} does not match {img_path.name}: {labels.shape} labels for {len(images):,} images")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 255):
        raise MinwaError(f"IDX file {lab_path} is corrupt: labels outside 0..255")
    return images, labels


def class_names(folder: Path, num_classes: int) -> list[str]:
    """``classes.txt`` beside the files (one name a line) if present; else Fashion-MNIST's names (the
    default data set), or digits for a folder whose path says MNIST but not Fashion."""
    listed = folder / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif "fashion" not in str(folder).lower() and "mnist" in str(folder).lower():
        names = MNIST_CLASSES
    else:
        names = FASHION_MNIST_CLASSES
    return list(names) if num_classes <= len(names) else [str(i) for i in range(num_classes)]
