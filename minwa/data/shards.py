"""Shards: WebDataset-layout tar files, a per-shard index of byte offsets, and reading them back.

A shard ``shard-00000.tar`` holds ``<key>.jpg`` (or ``.png``) + ``<key>.cls`` per sample, in plain
ustar format, so ``tar``, the ``webdataset`` package and DALI's webdataset reader read it as is.
``shard-00000.idx`` (a ``.npy`` array, loaded without pickle) gives each sample's data offset and size,
label, height, width, key and source index: random access into the memory-mapped tar without scanning.
``shard-00000.json`` records that the shard is complete (checksums, rejected inputs, the pack plan it
belongs to); ``manifest.json``, written last, lists the whole set. The tar is written by hand
(``tarfile.TarInfo.tobuf`` for headers) because minwa needs each member's data offset as it writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import re
import tarfile
from pathlib import Path

import numpy as np

from minwa.data import decode as dec
from minwa.data.sources import ImageDataset
from minwa.errors import MinwaError

FORMAT = "minwa-shards"
VERSION = 1
EXTS = ("jpg", "png")
INDEX_DTYPE = np.dtype(
    [("offset", "<i8"), ("size", "<i8"), ("label", "<i8"), ("key", "<i8"), ("source", "<i8"),
     ("height", "<i4"), ("width", "<i4"), ("ext", "u1")]
)  # fmt: skip
BLOCK = 512
SAFE_SHARD = re.compile(r"^shard-\d{5,}\.(tar|idx|json)$")
SAFE_MEMBER = re.compile(r"^[0-9A-Za-z_-]+\.[0-9A-Za-z]+$")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def member_key(key: int) -> str:
    return f"{key:09d}"


def is_safe_member(name: str) -> bool:
    """A member name that cannot leave the folder it would be extracted to: no '/', no '..', no '\\'."""
    return bool(SAFE_MEMBER.match(name)) and ".." not in name


def _header(name: str, size: int) -> bytes:
    """A ustar header for a regular file (mode 644, mtime 0, no owner), byte for byte what
    ``tarfile.TarInfo.tobuf(USTAR_FORMAT)`` makes; by hand because that takes ~80 us a member."""
    raw = name.encode("ascii")
    if len(raw) > 100 or size >= 8**11:
        raise ValueError(f"tar member {name!r} of {size} bytes does not fit a ustar header")
    h = bytearray(BLOCK)
    h[0 : len(raw)] = raw
    h[100:148] = b"0000644\x000000000\x000000000\x00" + b"%011o\x00" % size + b"00000000000\x00"
    h[148:156] = b" " * 8
    h[156] = ord("0")
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


class TarShardWriter:
    """Writes members to an open binary file, hashing everything and recording the index as it goes."""

    def __init__(self, f):
        self.f, self.pos, self.sha = f, 0, hashlib.sha256()
        self.rows: list[tuple] = []

    def _write(self, b: bytes):
        self.f.write(b)
        self.sha.update(b)
        self.pos += len(b)

    def _member(self, name: str, data: bytes) -> int:
        if not is_safe_member(name):  # keys are minwa's own numbers; this guards the invariant
            raise ValueError(f"unsafe tar member name {name!r}")
        self._write(_header(name, len(data)))
        offset = self.pos
        self._write(data)
        self._write(b"\0" * (-len(data) % BLOCK))
        return offset

    def add(self, key: int, data: bytes, ext: str, label: int, height: int, width: int, source: int):
        k = member_key(key)
        offset = self._member(f"{k}.{ext}", data)
        self._member(f"{k}.cls", str(int(label)).encode())
        self.rows.append((offset, len(data), label, key, source, height, width, EXTS.index(ext)))

    def close(self) -> np.ndarray:
        self._write(b"\0" * (2 * BLOCK))
        return np.array(self.rows, dtype=INDEX_DTYPE)


def index_bytes(index: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, index, allow_pickle=False)
    return buf.getvalue()


def load_index(path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise MinwaError(f"shard index {path} is unreadable: {e}") from None
    if arr.dtype != INDEX_DTYPE or arr.ndim != 1:
        raise MinwaError(f"shard index {path} is not a minwa index (dtype {arr.dtype})")
    return arr


def scan_tar(path):
    """Yield (name, data_offset, size, typeflag) for every member of a tar file, reading headers only.

    Nothing is extracted; long-name (GNU/pax) members are reported under the name they would get, so a
    caller can refuse an unsafe one.
    """
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            yield m.name, m.offset_data, m.size, m.type


def read_manifest(folder) -> dict:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        if any(folder.glob("shard-*.tar")):
            raise MinwaError(f"{folder} has shards but no manifest.json: the pack did not finish; run the same 'minwa pack' again")
        raise MinwaError(f"{folder} is not a shard folder (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MinwaError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MinwaError(f"{path} is not a minwa shard manifest")
    if manifest.get("version", 0) > VERSION:
        raise MinwaError(f"{path} was written by a newer minwa (shard format {manifest['version']})")
    for s in manifest.get("shards", []):
        for key in ("name", "index"):
            if not SAFE_SHARD.match(str(s.get(key, ""))):
                raise MinwaError(f"{path} names a shard file outside its folder or with an odd name: {s.get(key)!r}")
    return manifest


class ShardDataset(ImageDataset):
    """A packed folder read through its indices: the tars are memory-mapped, one member read per image."""

    kind = "shards"

    def __init__(self, folder, split: str | None = None):
        self.path = Path(folder)
        self.manifest = m = read_manifest(self.path)
        recorded = (m.get("source") or {}).get("split")
        if split and recorded and recorded != split and m.get("source", {}).get("kind") == "idx":
            raise MinwaError(f"shards in {self.path} hold the '{recorded}' split, not '{split}'")
        self.split = recorded or split
        self.classes = list(m["classes"])
        self.channels = int(m.get("channels", 3))
        self.tars = [self.path / s["name"] for s in m["shards"]]
        indices = []
        for s in m["shards"]:
            index = load_index(self.path / s["index"])
            if len(index) != s["num_samples"]:
                raise MinwaError(f"shard {s['name']} in {self.path} has {len(index)} indexed samples, the manifest says {s['num_samples']}")
            indices.append(index)
        self.index = np.concatenate(indices) if indices else np.zeros(0, INDEX_DTYPE)
        self.shard_of = np.repeat(np.arange(len(indices), dtype=np.int32), [len(i) for i in indices])
        self.labels = self.index["label"].astype(np.int64)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise MinwaError(f"shards in {self.path} have labels outside the {len(self.classes)} classes")
        self.skipped = []
        self._maps: dict[int, mmap.mmap] = {}

    def __getstate__(self):  # mmaps do not travel to spawned processes; they are reopened there
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def _map(self, k: int) -> mmap.mmap:
        mm = self._maps.get(k)
        if mm is None:
            try:
                with open(self.tars[k], "rb") as f:
                    mm = self._maps[k] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:
                raise MinwaError(f"cannot read shard {self.tars[k]}: {e}") from None
        return mm

    def encoded(self, i: int) -> bytes:
        """The stored bytes of sample ``i`` (JPEG or PNG)."""
        row = self.index[i]
        off, size = int(row["offset"]), int(row["size"])
        mm = self._map(int(self.shard_of[i]))
        if off + size > len(mm):
            raise MinwaError(f"shard {self.tars[self.shard_of[i]]} is shorter than its index says; run 'minwa verify {self.path}'")
        return mm[off : off + size]

    def image(self, i, min_side=None):
        return dec.decode(self.encoded(i), self.channels, min_side)

    def image_size(self):
        size = self.manifest.get("image_size")
        return tuple(size) if size else None

    def size_of(self, i: int) -> tuple[int, int]:
        return int(self.index["height"][i]), int(self.index["width"][i])

    def source(self, i):
        return f"{self.path}/{self.tars[self.shard_of[i]].name}:{member_key(int(self.index['key'][i]))}"

    def pack_item(self, i, *, max_side, quality):
        data = self.encoded(i)
        if self.index["ext"][i] == EXTS.index("png") and self.channels == 1:
            h, w = self.size_of(i)
            return data, "png", h, w
        return dec.prepare_for_pack(data, max_side=max_side, quality=quality, channels=self.channels)

    def fingerprint(self):
        return hashlib.sha256("".join(s["sha256"] for s in self.manifest["shards"]).encode()).hexdigest()[:16]
