"""Check an output place before any work: a folder that can be created and written, a file name that fits.

A command that reads a data set for minutes and only then finds it cannot write its result wastes the
user's time; these checks run first and end in one sentence (``minwa.utils.oserrors``) instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from minwa.errors import MinwaError
from minwa.utils.oserrors import os_error, short, too_long_name


def check_name_fits(path, what: str = "output") -> Path:
    """``Path(path)``, or a sentence when one of its names is longer than the file system allows (checked
    first: even asking whether such a path exists is an error)."""
    p = Path(path).expanduser()
    reason = too_long_name(p)
    if reason:
        raise MinwaError(f"cannot write {what} {short(p)}: {reason}")
    return p


def prepare_output_folder(path, what: str = "output folder") -> Path:
    """Create ``path`` (with its parents) and check that a file can be written in it.

    ``what`` names the folder in the message ("run folder"). Returns the path; a name too long, a file in
    the way, a read-only or unwritable place raises a :class:`MinwaError` sentence."""
    p = check_name_fits(path, what)
    if p.exists() and not p.is_dir():
        raise MinwaError(f"{what} {short(p)} exists and is not a folder; choose a folder")
    _writable_folder(p, p, what)
    return p


def prepare_output_file(path, what: str = "output file") -> Path:
    """Check that ``path`` can be written as a file (its folder created and writable, the name fits, not
    a folder). An existing file is fine: it is replaced atomically when the result is ready."""
    p = check_name_fits(path, what)
    if p.is_dir():
        raise MinwaError(f"{what} {short(p)} is a folder; name a file in it instead")
    _writable_folder(p.parent, p, what)
    return p


def _writable_folder(folder: Path, subject: Path, what: str) -> None:
    """Create ``folder`` and write (then delete) a file in it; errors are worded about ``subject``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".minwa-write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise os_error(e, subject, what=what) from None
