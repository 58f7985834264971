"""``verify(folder)``: re-check a packed folder; one line per problem, an empty list when it is sound.

Checks: the manifest exists and names only plain shard files; every shard and index is there with the
recorded size and SHA-256; every tar member has a safe name (no path that could leave the folder) and is
a regular file; the index and the tar agree member by member (name, data offset, size, label in
``.cls``); every sample's bytes match their CRC-32 (indices of version 2), naming each damaged one;
counts add up. ``deep=True`` also decodes every image.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np

from minwa.data import decode as dec
from minwa.data.index import EXTS, load_index, sample_crc
from minwa.data.shards import is_safe_member, member_key, read_manifest, scan_tar
from minwa.errors import MinwaError

_MAX_PER_SHARD = 5  # problems listed per shard before "... and N more"


def _map(path: Path):
    """The file's bytes, memory-mapped (shards can be gigabytes)."""
    import mmap

    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_members(tar: Path, index: np.ndarray, problems: list[str]) -> None:
    data = _map(tar)
    by_offset = {}
    try:
        for name, offset, size, kind in scan_tar(tar):
            if not is_safe_member(name):
                problems.append(f"{tar.name}: unsafe member name {name!r} (would leave the folder)")
                continue
            if kind not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                problems.append(f"{tar.name}: member {name!r} is not a regular file")
                continue
            by_offset[offset] = (name, size)
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(f"{tar.name}: not a readable tar file ({e})")
        return
    names = {name for name, _ in by_offset.values()}
    crcs = "crc32" in index.dtype.names
    for row in index:
        key, off, size = member_key(int(row["key"])), int(row["offset"]), int(row["size"])
        want = f"{key}.{EXTS[row['ext']] if row['ext'] < len(EXTS) else '?'}"
        got = by_offset.get(off)
        if got is None or got[0] != want or got[1] != size:
            problems.append(f"{tar.name}: index entry {want} does not match the tar (offset {off})")
            continue
        if f"{key}.cls" not in names:
            problems.append(f"{tar.name}: {key}.cls is missing")
        if crcs and sample_crc(data[off : off + size]) != int(row["crc32"]):
            problems.append(f"{tar.name}: sample {key} is damaged (crc mismatch)")
    labels = {member_key(int(k)): int(y) for k, y in zip(index["key"], index["label"])}
    for offset, (name, size) in by_offset.items():
        if name.endswith(".cls"):
            label = data[offset : offset + size].strip()
            want = labels.get(name[: -len(".cls")])
            if want is None or label != str(want).encode():
                problems.append(f"{tar.name}: {name} holds {label[:20]!r}, which does not match the index")


def verify(folder, deep: bool = False) -> list[str]:
    folder = Path(folder).expanduser()
    if not folder.exists():
        return [f"{folder}: not found"]
    try:
        manifest = read_manifest(folder)
    except MinwaError as e:
        return [str(e)]
    problems: list[str] = []
    total = 0
    shards = manifest.get("shards", [])
    for s in shards:
        mine: list[str] = []
        tar, idx = folder / s["name"], folder / s["index"]
        if not tar.is_file():
            problems.append(f"{s['name']}: missing")
            continue
        if not idx.is_file():
            problems.append(f"{s['index']}: missing")
            continue
        if tar.stat().st_size != s["bytes"]:
            mine.append(f"{s['name']}: {tar.stat().st_size:,} bytes, the manifest says {s['bytes']:,}")
        elif _sha256(tar) != s["sha256"]:
            mine.append(f"{s['name']}: checksum mismatch (the file changed after packing)")
        if _sha256(idx) != s["index_sha256"]:
            mine.append(f"{s['index']}: checksum mismatch (the index changed after packing)")
        try:
            index = load_index(idx)
        except MinwaError as e:
            problems.extend([*mine, str(e)])
            continue
        total += len(index)
        if len(index) != s["num_samples"]:
            mine.append(f"{s['index']}: {len(index)} entries, the manifest says {s['num_samples']}")
        if len(index) and (index["label"].min() < 0 or index["label"].max() >= len(manifest["classes"])):
            mine.append(f"{s['index']}: labels outside the {len(manifest['classes'])} classes")
        _check_members(tar, index, mine)
        if deep and not mine:
            channels = int(manifest.get("channels", 3))
            blob = _map(tar)
            for row in index:
                data = blob[int(row["offset"]) : int(row["offset"]) + int(row["size"])]
                try:
                    img = dec.decode(data, channels)
                    if img.shape[:2] != (row["height"], row["width"]):
                        raise ValueError(f"decodes to {img.shape[:2]}, indexed as {(row['height'], row['width'])}")
                except Exception as e:
                    mine.append(f"{s['name']}: {member_key(int(row['key']))} does not decode ({e})")
        if len(mine) > _MAX_PER_SHARD:
            mine = mine[:_MAX_PER_SHARD] + [f"{s['name']}: ... and {len(mine) - _MAX_PER_SHARD} more problems"]
        problems.extend(mine)
    if total != manifest.get("num_samples") and not any("missing" in p for p in problems):
        problems.append(f"manifest.json: num_samples is {manifest.get('num_samples')}, the indices hold {total}")
    listed = {s["name"] for s in shards}
    for extra in sorted(folder.glob("shard-*.tar")):
        if extra.name not in listed:
            problems.append(f"{extra.name}: not listed in manifest.json")
    return problems
