"""Atomic writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a crash) never sees a half-written file: the final name appears only when the content is
complete. Used for shards, manifests, checkpoints and every report minwa writes. A write that fails (a
full disk, a read-only mount, a name too long) removes its temporary file and becomes one sentence
(``minwa.utils.oserrors``): "no space left on /mnt/x while writing PATH; 12.3 MB needed, 0.4 MB free".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from minwa.utils.oserrors import os_error

# room for mkstemp's ".{name}.XXXXXXXX.tmp" around a long name: the temporary name must fit where the
# final one does
_TMP_NAME_ROOM = 200


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", *, size: int | None = None):
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    On failure the temporary file is removed; an ``OSError`` of this write (not one of another file
    touched inside the block) becomes a :class:`MinwaError` sentence. ``size``: the bytes this write
    needs, when known (otherwise the message says "at least" the bytes written so far).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:_TMP_NAME_ROOM]}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise os_error(e, path, needed=size) from None
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        written = _size(tmp)
        _remove(tmp)
        if e.filename not in (None, tmp, str(path)):
            raise  # another file's error inside the block (e.g. reading a source): not ours to word
        raise os_error(e, path, needed=size or written or None, qualifier="" if size else "at least ") from None
    except BaseException:
        _remove(tmp)
        raise


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _remove(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_figure(fig, path, **kwargs) -> None:
    """Save a matplotlib figure atomically (PNG unless the suffix says otherwise)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def fsync_dir(folder) -> None:
    """Flush a folder's entries (the names renamed into it) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
