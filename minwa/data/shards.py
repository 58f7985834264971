"""Shards: WebDataset-layout tar files, a per-shard index of byte offsets, and reading them back.

A shard ``shard-00000.tar`` holds ``<key>.jpg`` (or ``.png``) + ``<key>.cls`` per sample, in plain
ustar format, so ``tar``, the ``webdataset`` package and DALI's webdataset reader read it as is.
``shard-00000.idx`` (a ``.npy`` array parsed strictly as data, ``minwa.data.index``) gives each sample's
data offset and size, label, height, width, key, source index and CRC-32: random access into the
memory-mapped tar without scanning.
``shard-00000.json`` records that the shard is complete (checksums, rejected inputs, the pack plan it
belongs to); ``manifest.json``, written last, lists the whole set. The tar is written by hand
(``tarfile.TarInfo.tobuf`` for headers) because minwa needs each member's data offset as it writes.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from minwa.data import decode as dec
from minwa.data.parts import unfinished_pack
from minwa.data.index import EXTS, INDEX_DTYPE, INDEX_VERSION, read_index, sample_crc
from minwa.data import integrity
from minwa.data.sources import ImageDataset
from minwa.errors import MinwaError

FORMAT = "minwa-shards"
VERSION = INDEX_VERSION  # 1: indices without per-sample checksums (still read); 2: with them
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
        self.rows.append((offset, len(data), label, key, source, height, width, EXTS.index(ext), sample_crc(data)))

    def close(self) -> np.ndarray:
        self._write(b"\0" * (2 * BLOCK))
        return np.array(self.rows, dtype=INDEX_DTYPE)


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
        if unfinished := unfinished_pack(folder):
            raise MinwaError(unfinished)
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


def _advise(mm: mmap.mmap, advice: int | None, *where: int) -> None:
    """``madvise`` where this platform has it. Samples are read in random order, so a shard's map is
    ``MADV_RANDOM``: by default a page fault reads ahead around it (read_ahead_kb: 8 MB on the 2-core
    machine's disk), so on a pack larger than memory every 512-byte sample read 8 MB from disk (16,000x;
    docs/BENCHMARKS.md §16); a sample of several pages then asks for exactly its pages at once."""
    if advice is not None and hasattr(mm, "madvise"):
        mm.madvise(advice, *where)


OPEN_THREADS = 16  # index files read at once when opening a pack (each holds one file's bytes until copied)


class ShardDataset(ImageDataset):
    """A packed folder read through its indices: the tars are memory-mapped, one member read per image.

    Opening it is a cheap integrity check: each index must parse strictly and match the SHA-256 the
    manifest recorded (so a label changed in an index stops ``train`` and ``eval``, not only ``verify``),
    and each tar must have the recorded size. Every sample read is checked against its CRC-32 (indices of
    version 2) and a sample that does not decode is a ``BadSample`` naming its shard and key. The files'
    identities are kept (``integrity.stamp``): a shard opened later, in a worker, or ``check_unchanged``
    at an epoch's start, refuses files that were replaced since (a re-pack under a running reader).
    """

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
        self.stamps = {"manifest.json": self._stamp("manifest.json")}
        counts = [s.get("num_samples") for s in m["shards"]]
        if not all(type(c) is int and c >= 0 for c in counts):
            raise MinwaError(f"{self.path / 'manifest.json'} gives a shard an impossible number of samples")
        self.index = self._read_indices(m["shards"], sum(counts))
        self._views()
        self.shard_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        self.labels = np.ascontiguousarray(self.index["label"], dtype=np.int64)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise MinwaError(f"shards in {self.path} have labels outside the {len(self.classes)} classes")
        self.skipped = []
        self._maps: dict[int, mmap.mmap] = {}

    def _stamp(self, name: str):
        try:
            return integrity.stamp(os.stat(self.path / name))
        except OSError as e:
            raise MinwaError(f"cannot read {self.path / name}: {e.strerror or e}") from None

    def _read_indices(self, shards: list[dict], total: int) -> np.ndarray:
        """Every shard's index, checked, copied into one array sized from the manifest (reading them all
        first and then concatenating held two copies: 1.5 GB at 14.2 million samples).

        The files are read, hashed and copied by a pool of threads (file reads, SHA-256 and numpy's copy
        all release the GIL): one file at a time, a 14.2-million-sample pack's 2,840 index files took 8 s
        to open from disk, waiting on one read after another; several reads in flight keep the disk busy
        and the hashing uses every core. Errors are raised in shard order, so the sentence does not depend
        on which thread finished first."""
        if not shards:
            return np.zeros(0, INDEX_DTYPE)
        first, first_stamp = self._open_shard(shards[0])
        index = np.empty(total, first.dtype)
        starts = np.cumsum([0] + [s["num_samples"] for s in shards]).tolist()
        index[: len(first)] = first

        def place(k: int):
            rows, stamp = self._open_shard(shards[k])
            if rows.dtype != index.dtype:
                raise MinwaError(f"shard index {self.path / shards[k]['index']} is of another index version than "
                                 f"the first shard's; run the same `minwa pack` again to rewrite {self.path}")
            index[starts[k] : starts[k + 1]] = rows
            return stamp

        with ThreadPoolExecutor(max_workers=min(OPEN_THREADS, len(shards))) as pool:
            stamps = [first_stamp, *pool.map(place, range(1, len(shards)))]
        self.stamps.update((s["name"], st) for s, st in zip(shards, stamps))
        return index

    def _open_shard(self, s: dict) -> tuple[np.ndarray, tuple]:
        """The shard's index, checked against the manifest, and the tar's identity (its size checked)."""
        path = self.path / s["index"]
        index, _, raw = read_index(path)
        if s.get("index_sha256") and hashlib.sha256(raw).hexdigest() != s["index_sha256"]:
            raise MinwaError(f"shard index {path} does not match its checksum in {self.path / 'manifest.json'} "
                             f"(it changed after packing); run `minwa verify {self.path}`")
        if len(index) != s["num_samples"]:
            raise MinwaError(f"shard {s['name']} in {self.path} has {len(index)} indexed samples, the manifest says {s['num_samples']}")
        stamp = self._stamp(s["name"])
        if "bytes" in s and stamp[2] != s["bytes"]:
            raise MinwaError(f"shard {self.path / s['name']} is {stamp[2]:,} bytes, the manifest says "
                             f"{s['bytes']:,}; run `minwa verify {self.path}`")
        return index, stamp

    def check_unchanged(self) -> None:
        """Raise if any file this data set opened was replaced or changed since (one ``stat`` per shard)."""
        for name, was in self.stamps.items():
            try:
                now = integrity.stamp(os.stat(self.path / name))
            except OSError:
                now = None
            if now != was:
                raise integrity.shards_changed(self.path, name)

    def _views(self) -> None:
        """Columns of the index read per sample, as views (no memory): ``encoded`` reads two plain numbers
        instead of building a structured row (1.4 vs 3.7 us a sample)."""
        self.crcs = self.index["crc32"] if "crc32" in self.index.dtype.names else None  # None: version 1
        self._offsets, self._sizes = self.index["offset"], self.index["size"]

    def __getstate__(self):  # mmaps do not travel to spawned processes; they are reopened there
        state = dict(self.__dict__)
        state["_maps"] = {}
        for view in ("crcs", "_offsets", "_sizes"):  # pickled, a view would be a copy: made anew there
            del state[view]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._views()

    def _map(self, k: int) -> mmap.mmap:
        mm = self._maps.get(k)
        if mm is None:
            try:
                with open(self.tars[k], "rb") as f:
                    if integrity.stamp(os.fstat(f.fileno())) != self.stamps[self.tars[k].name]:
                        raise integrity.shards_changed(self.path, self.tars[k].name)
                    mm = self._maps[k] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                    _advise(mm, getattr(mmap, "MADV_RANDOM", None))
            except FileNotFoundError:
                raise integrity.shards_changed(self.path, self.tars[k].name) from None
            except (OSError, ValueError) as e:
                raise MinwaError(f"cannot read shard {self.tars[k]}: {e}") from None
        return mm

    def damaged(self, i: int, reason: str):
        """The ``BadSample`` error for sample ``i``."""
        return integrity.damaged(self.path, self.tars[self.shard_of[i]], member_key(int(self.index["key"][i])), reason)

    def encoded(self, i: int) -> bytes:
        """The stored bytes of sample ``i`` (JPEG or PNG), checked against their CRC-32 when indexed."""
        off, size = int(self._offsets[i]), int(self._sizes[i])
        mm = self._map(int(self.shard_of[i]))
        if off + size > len(mm):
            raise MinwaError(f"shard {self.tars[self.shard_of[i]]} is shorter than its index says; run 'minwa verify {self.path}'")
        if size > mmap.PAGESIZE:  # one read for the sample's pages, not a fault per page (MADV_RANDOM)
            _advise(mm, getattr(mmap, "MADV_WILLNEED", None), off - off % mmap.PAGESIZE, size + off % mmap.PAGESIZE)
        data = mm[off : off + size]
        if self.crcs is not None and sample_crc(data) != int(self.crcs[i]):
            raise self.damaged(i, "crc mismatch")
        return data

    def image(self, i, min_side=None):
        data = self.encoded(i)
        try:
            return dec.decode(data, self.channels, min_side)
        except dec.DECODE_ERRORS as e:
            raise self.damaged(i, dec.failure_reason(data, e)) from None

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
