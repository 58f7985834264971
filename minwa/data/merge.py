"""``merge(out)`` (``minwa pack --merge OUT``): join the parts of a pack into one ``manifest.json``.

The parts (``minwa.data.parts``) wrote the shards of one plan; the merge checks that they really are one
pack before it writes the manifest a single ``pack`` would write (``packing.shard_manifest``, so the
same schema, and ``verify`` passes on it): every part of one N is there, all made with the same settings
from the same listing and class list, every shard of the plan is claimed by exactly one part and its
tar and index still match the checksums that part recorded (which catches a bad copy when the parts
were gathered from separate disks). Any disagreement is one sentence naming the part, and nothing is
written. The part manifests stay (so the merge can be run again); a later whole ``pack`` removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minwa.data.packing import shard_manifest
from minwa.data.parts import Part, hold_parts, read_part_manifests
from minwa.data.shards import shard_name
from minwa.errors import MinwaError, require_path
from minwa.utils.atomic import atomic_write_json
from minwa.utils.folder_lock import LOCK_NAME, FolderLock
from minwa.utils.words import plural

_SHARD_TAR = re.compile(r"^shard-(\d+)\.tar$")


def merge(out, workers: int = 4) -> dict:
    """Check the parts in ``out`` and write ``out/manifest.json``; returns it. ``workers``: threads that
    hash the shards (hashlib releases the GIL, so they run in parallel)."""
    out = require_path(out, "pack folder")
    with contextlib.ExitStack() as held:
        held.enter_context(FolderLock(out, "minwa pack --merge", LOCK_NAME))
        parts = read_part_manifests(out)
        if not parts:
            raise MinwaError(f"{out} holds no part manifests (part-K-of-N.json); pack its parts first "
                             "(`minwa pack SRC OUT --part K/N`)")
        n = _one_split(out, parts)
        # a part still running (its manifest not written yet) or started now would change the shards under us
        held.enter_context(hold_parts(out, "minwa pack --merge", [Part(k, n) for k in range(n)]))
        parts = read_part_manifests(out)  # as they are now that none can run
        _all_there(out, parts, n)
        ref = _agreeing(out, parts, n)
        records = _claimed_shards(parts, ref["num_shards"])
        _check_checksums(out, records, workers)
        manifest = shard_manifest(ref["source"], ref["settings"], [r for r, _ in records])
        manifest["pack_seconds"] = max(p["pack_seconds"] for p in parts.values())  # the slowest part
        manifest["parts"] = n
        atomic_write_json(out / "manifest.json", manifest)
        return manifest


def _one_split(out: Path, parts: dict[Part, dict]) -> int:
    """The N all parts share; parts of another N (an earlier split, or a part packed twice) are refused."""
    splits = sorted({p.n for p in parts})
    if len(splits) > 1:
        names = "; ".join(f"of {n}: " + ", ".join(p.manifest_name for p in sorted(parts, key=lambda p: p.k) if p.n == n)
                          for n in splits)
        raise MinwaError(f"{out} holds parts of {len(splits)} different splits ({names}); delete the part files "
                         "of the split you abandoned (its shards are reused if the plan is the same)")
    return splits[0]


def _all_there(out: Path, parts: dict[Part, dict], n: int) -> None:
    missing = [k for k in range(n) if Part(k, n) not in parts]
    if missing:
        src = next(iter(parts.values()))["source"]["source"]["path"]
        which = ", ".join(str(k) for k in missing)
        raise MinwaError(f"{plural(len(missing), 'part')} of {n} {'is' if len(missing) == 1 else 'are'} missing "
                         f"(no part-K-of-{n}.json for K = {which}): run `minwa pack {src} {out} --part K/{n}` for "
                         "each (or gather its files here), then merge")


def _agreeing(out: Path, parts: dict[Part, dict], n: int) -> dict:
    """Part 0's manifest, after checking that every other part made the same plan."""
    ref = parts[Part(0, n)]
    for part in (Part(k, n) for k in range(1, n)):
        got = parts[part]
        if got["settings"] != ref["settings"]:
            diff = ", ".join(f"{k}={got['settings'].get(k)} vs {v}" for k, v in ref["settings"].items()
                             if got["settings"].get(k) != v)
            raise MinwaError(f"{part.describe()} was packed with other settings than part 0 ({diff}); "
                             "run every part with the same options")
        if got["source"]["classes"] != ref["source"]["classes"]:
            a, b = got["source"]["classes"], ref["source"]["classes"]
            first = next((f"{x!r} vs {y!r}" for x, y in zip(a, b) if x != y), f"{len(a)} vs {len(b)} classes")
            raise MinwaError(f"{part.describe()} saw other classes than part 0 ({first}); every part must read "
                             "the same source")
        if (got["plan"], got["num_shards"]) != (ref["plan"], ref["num_shards"]):
            raise MinwaError(f"{part.describe()} listed another source than part 0 (plan {got['plan']} vs "
                             f"{ref['plan']}: other files, sizes or modification times); every part must read "
                             "the same SRC, at the same path (a shared filesystem, or copies made with rsync -a)")
    return ref


def _claimed_shards(parts: dict[Part, dict], num_shards: int) -> list[tuple[dict, Part]]:
    """(record, part) for every shard of the plan, in order: each claimed by the part it belongs to, once."""
    claims: dict[int, tuple[dict, Part]] = {}
    for part, manifest in parts.items():
        for rec in manifest["shards"]:
            m = _SHARD_TAR.match(str(rec.get("name", "")))
            k = int(m[1]) if m else -1
            if k in claims:
                raise MinwaError(f"{rec['name']} is listed by {claims[k][1].manifest_name} and {part.manifest_name} "
                                 "(a part packed twice?); run the two parts again")
            if k not in part.shards(num_shards):
                raise MinwaError(f"{part.manifest_name} lists {rec['name']}, which is not {part.describe()}'s "
                                 f"to write; run {part.describe()} again")
            claims[k] = (rec, part)
    missing = [shard_name(k) for k in range(num_shards) if k not in claims]
    if missing:
        k = int(missing[0][6:])
        owner = Part(k % len(parts), len(parts))
        raise MinwaError(f"{missing[0]} is listed by no part ({owner.manifest_name} should list it); "
                         f"run {owner.describe()} again")
    return [claims[k] for k in range(num_shards)]


def _check_checksums(out: Path, records: list[tuple[dict, Part]], workers: int) -> None:
    """Every shard's tar and index must be there with the checksums its part recorded."""

    def problem(item: tuple[dict, Part]) -> str | None:
        rec, part = item
        for name, want in ((rec["name"], rec["sha256"]), (rec["index"], rec["index_sha256"])):
            path = out / name
            if not path.is_file():
                return f"{name} is missing (written by {part.describe()}); run that part again or copy its files here"
            with open(path, "rb") as f:
                if hashlib.file_digest(f, "sha256").hexdigest() != want:
                    return (f"{name} does not match the checksum {part.describe()} recorded (changed, or copied "
                            f"badly); delete {out / rec['name'][:-4]}.* and run that part again")
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        first = next((p for p in pool.map(problem, records) if p), None)
    if first:
        raise MinwaError(first)
