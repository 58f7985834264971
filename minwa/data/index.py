"""The per-shard index (``shard-NNNNN.idx``): its two versions, writing it, and parsing it strictly.

The file is a ``.npy`` 1.0 array (numpy and other tools read it as is), but minwa never hands it to
``np.load``: numpy parses the header as a Python literal (``ast``, and for a damaged header even the
``tokenize`` module), so one flipped byte there made ``minwa verify`` crash with ``tokenize.TokenError``.
``index_bytes`` writes the header itself (byte for byte what ``np.save`` writes, tested) and
``parse_index`` accepts exactly that: the magic and version 1.0, the header text for a 1-D array of one
of the two index dtypes (matched as bytes, padding aside), then exactly the rows it announces. Anything
else is one sentence naming the file.

Versions (the dtype is the version tag): 1 has no checksums; 2 (written since) adds ``crc32``, the
``zlib.crc32`` of each sample's stored bytes, checked whenever a sample is read. Both are read.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from minwa.errors import MinwaError

EXTS = ("jpg", "png")
_V1_FIELDS = [("offset", "<i8"), ("size", "<i8"), ("label", "<i8"), ("key", "<i8"), ("source", "<i8"),
              ("height", "<i4"), ("width", "<i4"), ("ext", "u1")]  # fmt: skip
INDEX_DTYPES = {1: np.dtype(_V1_FIELDS), 2: np.dtype([*_V1_FIELDS, ("crc32", "<u4")])}
INDEX_VERSION = 2
INDEX_DTYPE = INDEX_DTYPES[INDEX_VERSION]
_MAGIC = b"\x93NUMPY\x01\x00"
_ALIGN = 64  # the .npy format pads magic + header to a multiple of this
# the header text of a 1-D array of dtype ``descr`` (then spaces up to the alignment and a newline)
_HEADER = re.compile(rb"\{'descr': (\[[^\]]*\]), 'fortran_order': False, 'shape': \((\d{1,15}),\), \} *\n")
_VERSION_OF_DESCR = {repr(dt.descr).encode(): v for v, dt in INDEX_DTYPES.items()}


def sample_crc(data) -> int:
    """The checksum of one sample's stored bytes (zlib's CRC-32: ~40 us per 100 KB, docs/BENCHMARKS.md)."""
    return zlib.crc32(data)


def index_bytes(index: np.ndarray) -> bytes:
    """The index file of ``index`` (rows of one of ``INDEX_DTYPES``)."""
    text = f"{{'descr': {index.dtype.descr!r}, 'fortran_order': False, 'shape': ({len(index)},), }}".encode()
    pad = -(len(_MAGIC) + 2 + len(text) + 1) % _ALIGN
    header = text + b" " * pad + b"\n"
    return _MAGIC + len(header).to_bytes(2, "little") + header + np.ascontiguousarray(index).tobytes()


def parse_index(raw: bytes, path) -> tuple[np.ndarray, int]:
    """(rows, version) of an index file's bytes; ``MinwaError`` naming ``path`` for anything else."""
    bad = f"shard index {path} is damaged"
    if len(raw) < 10 or not raw.startswith(_MAGIC):
        raise MinwaError(f"{bad}: it does not start like a minwa index (.npy 1.0)")
    end = 10 + int.from_bytes(raw[8:10], "little")
    header = _HEADER.fullmatch(raw, 10, end) if end <= len(raw) else None
    version = _VERSION_OF_DESCR.get(header.group(1)) if header else None
    if version is None:
        raise MinwaError(f"{bad}: its header is not one minwa writes")
    n, dtype = int(header.group(2)), INDEX_DTYPES[version]
    if len(raw) - end != n * dtype.itemsize:
        raise MinwaError(f"{bad}: it holds {len(raw) - end} bytes of rows, its header says {n} rows of {dtype.itemsize}")
    rows = np.frombuffer(raw, dtype=dtype, count=n, offset=end)
    if n and (rows["offset"].min() < 0 or rows["size"].min() < 0 or rows["ext"].max() >= len(EXTS)):
        raise MinwaError(f"{bad}: it has entries with negative offsets or sizes or an unknown format")
    return rows, version


def read_index(path) -> tuple[np.ndarray, int, bytes]:
    """(rows, version, the file's bytes) of the index at ``path``."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise MinwaError(f"shard index {path} is unreadable: {e.strerror or e}") from None
    rows, version = parse_index(raw, path)
    return rows, version, raw


def load_index(path) -> np.ndarray:
    return read_index(path)[0]
