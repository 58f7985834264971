"""Packing on many machines: part K of N of one pack (``minwa pack SRC OUT --part K/N``).

Every part makes the plan a single ``pack`` makes — the same listing of the source (each part lists it
itself, sorted, so no machine has to hand a listing to the others), the same ``pack_permutation`` and the
same shard boundaries — and writes only its own shards, ``k % N == K``: interleaved rather than
contiguous, so the short last shard and any slow stretch of the source are spread over the parts. A
shard's bytes depend only on the plan, so N parts write the very files one machine would, and the
merged pack (``minwa.data.merge``) is byte-identical to a single pack for any N.

Where the parts write: into OUT. On a shared filesystem every part writes into the one folder; on
separate disks each writes into its own OUT, and the files are gathered into one folder before the
merge (their names never collide). A part holds its own lock, ``.minwa-part-K-of-N.lock``, so the parts
run side by side while the same part twice does not, touches only its own shards and temporary files,
and writes ``part-K-of-N.json`` last (atomically): the settings, the plan, the source's classes, the
records of the shards it wrote (checksums, counts, rejected inputs). A killed part is finished by
running the same command again, which keeps its completed shards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_json
from minwa.utils.folder_lock import FolderInUse, FolderLock

PART_FORMAT = "minwa-pack-part"
PART_VERSION = 1
PART_FILE = re.compile(r"^part-(\d+)-of-(\d+)\.json$")
PART_LOCK = re.compile(r"^\.minwa-part-(\d+)-of-(\d+)\.lock$")
_SHARD_FILE = re.compile(r"^shard-(\d+)\.")
_REQUIRED = {"part", "parts", "plan", "settings", "num_shards", "source", "shards", "pack_seconds"}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Part:
    """Part ``k`` (0-based) of ``n``: the shards ``k, k + n, k + 2n, ...`` of the plan."""

    k: int
    n: int

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str]) -> Part:
        """``"K/N"``, or ``"auto"``: ``RANK``/``WORLD_SIZE`` as torchrun sets them (``environ``)."""
        if text.strip().lower() == "auto":
            rank, world = environ.get("RANK"), environ.get("WORLD_SIZE")
            if rank is None or world is None:
                raise MinwaError("--part auto reads RANK and WORLD_SIZE (torchrun sets them), which are not set; "
                                 "give the part as --part K/N")
            text, where = f"{rank}/{world}", f" (from RANK={rank}, WORLD_SIZE={world})"
        else:
            where = ""
        m = _SPEC.match(text)
        if not m:
            raise MinwaError(f"--part {text}{where} is not K/N (part K of N, from 0: 0/4 ... 3/4) or auto")
        k, n = int(m[1]), int(m[2])
        if n < 1:
            raise MinwaError(f"--part {text}{where}: the number of parts N must be at least 1")
        if k >= n:
            raise MinwaError(f"--part {text}{where}: K must be 0 to {n - 1} (parts are counted from 0)")
        return cls(k, n)

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def describe(self) -> str:
        return f"part {self.k} of {self.n}"

    @property
    def manifest_name(self) -> str:
        return f"part-{self.k}-of-{self.n}.json"

    @property
    def lock_name(self) -> str:
        return f".minwa-part-{self.k}-of-{self.n}.lock"

    def shards(self, num_shards: int) -> range:
        return range(self.k, num_shards, self.n)

    def owns_file(self, name: str) -> bool:
        """Whether ``name`` (a shard's file, its part manifest, or such a file's temporary ``.NAME.*.tmp``)
        is this part's to write or delete."""
        name = name[1:] if name.startswith(".") and name.endswith(".tmp") else name
        m = _SHARD_FILE.match(name)
        return int(m[1]) % self.n == self.k if m else name.startswith(self.manifest_name)


def unfinished_pack(folder: Path) -> str | None:
    """The sentence for a folder of shards without manifest.json (a pack in parts not merged, or a pack
    that did not finish), or None when it holds no shards."""
    if any(PART_FILE.match(f.name) for f in folder.glob("part-*-of-*.json")):
        return (f"{folder} holds a pack made in parts that is not merged yet; join them with "
                f"'minwa pack --merge {folder}' once every part has finished")
    if any(folder.glob("shard-*.tar")):
        return f"{folder} holds shards but no manifest.json: the pack did not finish; run the same 'minwa pack' again"
    return None


def is_part_file(name: str) -> bool:
    """A part manifest or a part's lock: files of a pack in parts, not foreign to its folder."""
    return bool(PART_FILE.match(name) or PART_LOCK.match(name))


@contextlib.contextmanager
def hold_parts(out: Path, command: str, parts: Iterable[Part] | None = None):
    """Hold the locks of ``parts`` (default: every part whose lock file is in ``out``) while ``command`` (a
    merge, a whole pack) works on the folder: a part still running is one sentence, and none starts."""
    if parts is None:
        parts = [Part(int(m[1]), int(m[2])) for m in map(PART_LOCK.match, sorted(os.listdir(out))) if m]
    with contextlib.ExitStack() as held:
        for part in parts:
            try:
                held.enter_context(FolderLock(out, command, part.lock_name))
            except FolderInUse as e:
                raise MinwaError(f"{part.describe()} is still running: {e}") from None
        yield


def write_part_manifest(out: Path, part: Part, *, plan: str, settings: dict, source: dict, num_shards: int,
                        records: list[dict], seconds: float) -> dict:
    """Write ``OUT/part-K-of-N.json`` (last, atomically) and return it; ``source``: ``packing.source_info``."""
    manifest = {
        "format": PART_FORMAT, "version": PART_VERSION, "part": part.k, "parts": part.n, "plan": plan,
        "settings": settings, "num_shards": num_shards, "source": source, "shards": records,
        "pack_seconds": round(seconds, 3), "host": socket.gethostname(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    atomic_write_json(out / part.manifest_name, manifest)
    return manifest


def read_part_manifests(out: Path) -> dict[Part, dict]:
    """Every part manifest in ``out``, by part; one that is not a readable part manifest is one sentence."""
    found = {}
    for p in sorted(out.iterdir()):
        m = PART_FILE.match(p.name)
        if not m:
            continue
        try:
            manifest = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MinwaError(f"{p} is not valid JSON ({e}); run its part again") from None
        if not isinstance(manifest, dict) or manifest.get("format") != PART_FORMAT or not _REQUIRED <= set(manifest):
            raise MinwaError(f"{p} is not a minwa part manifest")
        if manifest.get("version", 0) > PART_VERSION:
            raise MinwaError(f"{p} was written by a newer minwa (part format {manifest['version']})")
        part = Part(int(m[1]), int(m[2]))
        if (manifest.get("part"), manifest.get("parts")) != (part.k, part.n):
            raise MinwaError(f"{p} holds part {manifest.get('part')} of {manifest.get('parts')}, not "
                             f"{part.describe()} (renamed?); run {part.describe()} again")
        found[part] = manifest
    return found


def cores_per_process(environ: Mapping[str, str]) -> int:
    """The cores this process may use (its CPU affinity: a SLURM task's allocation), shared with the other
    processes torchrun started on this machine (``LOCAL_WORLD_SIZE``), so N parts on one node do not each
    start a worker per core."""
    local = environ.get("LOCAL_WORLD_SIZE", "1")
    return max(1, len(os.sched_getaffinity(0)) // (int(local) if local.isdigit() and int(local) > 0 else 1))
