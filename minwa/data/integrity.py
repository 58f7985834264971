"""What a reader of shards does about damage: the error for one damaged sample, and noticing that the
files it opened were replaced (re-packed) under it.

A damaged sample is a ``BadSample``: a ``MinwaError`` (one sentence naming the shard, the member key and
``minwa verify``) that also carries a plain record, so that ``data.on_bad_sample = "skip"`` can count and
report it. A shard file's identity is its ``stat`` (device, inode, size, modification time): ``pack``
writes every file under a temporary name and renames it, so a re-pack always changes the inode, and an
edit in place changes the size or the time.
"""

from __future__ import annotations

import os

from minwa.errors import MinwaError


class BadSample(MinwaError):
    """A sample whose stored bytes are damaged; ``record`` = {"shard", "key", "reason"} for reports."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record

    def __reduce__(self):  # crosses process boundaries (loader and pack workers) whole
        return (type(self), (str(self), self.record))

    def report(self, index: int) -> dict:
        """The record of this sample as a loader reports it: {"index", "shard", "key", "reason"}."""
        return {"index": int(index), **self.record}


def all_damaged(folder, b: int) -> MinwaError:
    return MinwaError(f"every sample of global batch {b} in {folder} is damaged; run `minwa verify {folder} --deep`")


def damaged(folder, shard, key: str, reason: str) -> BadSample:
    return BadSample(f"shard {shard} sample {key} is damaged ({reason}); run `minwa verify {folder} --deep`",
                     {"shard": str(shard), "key": key, "reason": reason})


def stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of a file as ``stat`` sees it: (device, inode, size, modification time in ns)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def shards_changed(folder, name: str) -> MinwaError:
    return MinwaError(f"the shards in {folder} changed while this run was reading them (re-packed?): {name} is no "
                      "longer the file it opened; start the run again once they are complete "
                      f"(`minwa verify {folder}`)")
