"""``.pt2``: torch.export's ExportedProgram, saved with the metadata as the extra file ``minwa.json``."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_bytes

EXTRA = "minwa.json"


def write_pt2(program: torch.export.ExportedProgram, out: Path, metadata: dict[str, str]) -> None:
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={EXTRA: json.dumps(metadata)})
    atomic_write_bytes(out, buf.getvalue())


def read_extra(path: Path) -> dict[str, str]:
    """The metadata of a ``.pt2`` without loading its program (it is a zip archive)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith(f"extra/{EXTRA}")), None)
            return json.loads(z.read(name)) if name else {}
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise MinwaError(f"{path} is not a readable .pt2 file") from None


def load_pt2(path) -> tuple[torch.nn.Module, dict]:
    """``(callable module, metadata)`` of an exported ``.pt2``: ``module(x)`` gives the probabilities."""
    from minwa.export.metadata import read_metadata

    meta = read_metadata(path)
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch raises many kinds for a damaged archive
        raise MinwaError(f"cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return program.module(), meta
