"""Why a file could not be written, in one sentence: ``OSError`` → :class:`MinwaError`.

A full disk, a read-only mount, a folder the user may not write, a name longer than the file system
allows, a file where a folder should be: each is the user's situation, not a bug in minwa, so it gets one
sentence naming the path and the reason (for a full disk also the file system and the space needed)
instead of a traceback. One translation, used by the atomic writers, the output-folder checks and the
CLI's last line of defence.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from pathlib import Path

from minwa.errors import MinwaError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "it is a folder",
    errno.EFBIG: "the file is larger than the file system or this process's file-size limit allows",
    errno.EIO: "an input/output error (the disk or the network file system failed)",
    errno.ENOENT: "a folder on the way does not exist",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
    errno.ENFILE: "too many open files on this machine",
}


def megabytes(n: int, up: bool = True) -> str:
    """``n`` bytes in MB (whole from 10 MB, one decimal from 1 MB, two below), rounded up (needed) or
    down (free)."""
    rnd = math.ceil if up else math.floor
    if n >= 10e6:
        return f"{rnd(n / 1e6):,}"
    if n >= 1e6:
        return f"{rnd(n / 1e5) / 10:.1f}"
    return f"{rnd(n / 1e4) / 100:.2f}"


def existing_ancestor(path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def mount_point(path) -> Path:
    """The mount point of the file system that holds (or would hold) ``path``: what ``df`` names."""
    p = existing_ancestor(path)
    try:
        dev = p.stat().st_dev
        while p.parent != p and p.parent.stat().st_dev == dev:
            p = p.parent
    except OSError:
        pass
    return p


def free_bytes(path) -> int | None:
    try:
        return shutil.disk_usage(existing_ancestor(path)).free
    except OSError:
        return None


class NoSpace(MinwaError):
    """No space left (or the disk quota used up) while writing ``path``; ``needed`` bytes if known.

    ``qualifier`` is "" (exact), "at least " or "about ". Picklable, so that a pack worker's full disk
    reaches the parent process as this same sentence."""

    def __init__(self, path, needed: int | None = None, qualifier: str = "", quota: bool = False):
        self.path, self.needed, self.qualifier, self.quota = str(path), needed, qualifier, quota
        self.device = mount_point(path)
        free = free_bytes(path)
        what = "disk quota" if quota else "space"
        msg = f"no {what} left on {self.device} while writing {short(path)}"
        if needed:
            msg += f"; {qualifier}{megabytes(needed)} MB needed"
        if free is not None:
            msg += f"{',' if needed else ';'} {megabytes(free, up=False)} MB free"
        super().__init__(msg)

    def __reduce__(self):
        return NoSpace, (self.path, self.needed, self.qualifier, self.quota)


def short(path) -> str:
    """``path`` for a message: a component too long to read is shown by its ends and its length."""
    parts = [p if len(p) <= 80 else f"{p[:24]}…{p[-12:]} ({len(p)} characters)" for p in Path(path).parts]
    return str(Path(*parts)) if parts else str(path)


def name_max(path) -> int:
    """The longest file name the file system at ``path`` accepts (255 nearly everywhere)."""
    try:
        return os.pathconf(existing_ancestor(path), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def too_long_name(path) -> str | None:
    """The sentence's reason when a component of ``path`` is longer than the file system allows."""
    limit = name_max(path)
    for part in Path(path).parts:
        if len(os.fsencode(part)) > limit:
            return f"a name in it is {len(os.fsencode(part))} bytes long and the file system allows {limit}"
    return None


def not_a_folder(path) -> Path | None:
    """The first part of ``path`` that exists but is not a folder (a file in the way), if any."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    for q in [*reversed(p.parents), p]:
        if q.exists() and not q.is_dir():
            return q
    return None


def os_error(e: OSError, path=None, *, what: str = "", needed: int | None = None, qualifier: str = "",
             doing: str = "write") -> MinwaError:
    """The one-sentence :class:`MinwaError` for ``e`` raised while writing ``path`` (default: the error's
    own file name). ``what`` names the thing ("run folder"); ``needed`` is the size of the write;
    ``doing`` is the verb of "cannot ... PATH" ("use" where it may have been a read)."""
    path = path if path is not None else e.filename
    if path is None:  # an error that does not say which file: the reason alone
        return MinwaError(f"cannot {doing} a file: {(e.strerror or str(e)).rstrip('.').lower()}")
    if e.errno in NO_SPACE:
        return NoSpace(path, needed, qualifier, quota=e.errno == errno.EDQUOT)
    name = f"{what} {short(path)}" if what else short(path)
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        blocker = not_a_folder(path)
        if blocker is not None:
            return MinwaError(f"cannot {doing} {name}: {short(blocker)} exists and is not a folder")
    if e.errno == errno.ENAMETOOLONG:
        reason = too_long_name(path) or "the path is too long for the file system"
    else:
        reason = REASONS.get(e.errno) or (e.strerror or str(e)).rstrip(".").lower()
    return MinwaError(f"cannot {doing} {name}: {reason}")
