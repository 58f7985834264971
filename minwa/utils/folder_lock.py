"""One command at a time per output folder: ``with hold_folder(out, "minwa pack"): ...``.

Two packs into one folder delete each other's temporary files and mix their shards; two trainings into
one run folder interleave their metrics and checkpoints. The holder takes an exclusive ``flock`` on
``OUT/.minwa.lock`` and writes its host, pid, command and start time into it, so that a second command
fails at once with one sentence naming the holder. The kernel drops a ``flock`` when its holder dies, so a
lock left by a killed command (the file stays) is stale by construction and simply taken over; on release
the holder deletes the file. Why not the ``filelock`` package: its 3.x releases (which torch accepts)
truncate the lock file on every attempt, erasing the holder's name, and it leaves the file behind.

The lock is not re-entrant: one process holds a folder once. Forked children (pack workers, loader
workers) share the parent's lock, which is what they should do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from minwa.errors import MinwaError
from minwa.utils.oserrors import os_error, short

LOCK_NAME = ".minwa.lock"
# file systems without flock: the folder is used without the guard rather than refused
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class FolderInUse(MinwaError):
    """Another live process holds the folder."""


class FolderLock:
    """An exclusive hold on ``folder`` for ``command``; ``acquire()`` / ``release()`` or ``with``.
    ``name``: the lock file's name, for commands that share a folder by holding different locks in it
    (the parts of one pack, ``minwa.data.parts``)."""

    def __init__(self, folder, command: str, name: str = LOCK_NAME):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / name
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Hold the folder (created if needed) or raise :class:`FolderInUse` naming the holder."""
        if self._fd is not None:
            raise RuntimeError(f"{self.folder} is already held by this FolderLock")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while self._fd is None:
                self._fd = self._try_lock()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(self._info()) + "\n").encode(), 0)
        except OSError as e:
            self._close()
            raise os_error(e, self.path, what="lock file") from None
        return self

    def release(self) -> None:
        """Delete the lock file (while still holding it, so no one locks a file that is going away)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)
        self._close()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- internals
    def _try_lock(self) -> int | None:
        """The locked descriptor, or None when the file was replaced under us (try again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_info(fd)
            os.close(fd)
            raise FolderInUse(in_use_message(self.folder, holder)) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                os.close(fd)
                raise
        # the previous holder may have deleted the file between our open and our flock
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
        return None

    def _info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _read_info(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def in_use_message(folder, holder: dict) -> str:
    """ "runs/x is in use by `minwa train` (pid 1234 on host h) since 12:03; wait for it or ..." """
    who = f"`{holder['command']}`" if holder.get("command") else "another minwa command"
    if holder.get("pid"):
        who += f" (pid {holder['pid']} on host {holder.get('host', '?')})"
    since = ""
    try:
        t = time.strptime(holder["since"], "%Y-%m-%dT%H:%M:%S%z")
        since = " since " + time.strftime("%H:%M" if t[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M", t)
    except (KeyError, TypeError, ValueError):
        pass
    return f"{short(folder)} is in use by {who}{since}; wait for it to finish or choose another folder"


@contextlib.contextmanager
def hold_folder(folder, command: str, *, enabled: bool = True, name: str = LOCK_NAME):
    """Hold ``folder`` for ``command`` while the block runs; ``enabled=False`` (ranks other than 0) holds
    nothing; ``name``: the lock file (see :class:`FolderLock`). Yields the :class:`FolderLock` (or None)."""
    if not enabled:
        yield None
        return
    with FolderLock(folder, command, name) as lock:
        yield lock
