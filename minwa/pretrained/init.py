"""What ``minwa train --init PATH`` starts from: a minwa checkpoint, or a torchvision/timm weights file
imported on the fly (the same import as ``minwa import-weights``, with the FC layers kept)."""

from __future__ import annotations

from pathlib import Path

from minwa.models.checkpoint import load_checkpoint, read_meta
from minwa.pretrained.convert import import_weights
from minwa.pretrained.source import SUFFIXES


def is_foreign(path) -> bool:
    """A weights file without a minwa sidecar beside it (a ``.safetensors`` with its ``.json`` is minwa's)."""
    p = Path(path)
    return p.is_file() and p.name.endswith(SUFFIXES) and not (
        p.suffix == ".safetensors" and p.with_suffix(".json").is_file())


def read_init_meta(path) -> dict:
    """The sidecar fields of the model ``path`` gives (model, kwargs, classes, geometry, mean/std)."""
    return import_weights(path).meta if is_foreign(path) else read_meta(path)


def load_init(path, device="cpu"):
    """``(model in eval mode, meta)`` of a minwa checkpoint or an imported weights file."""
    if is_foreign(path):
        imported = import_weights(path)
        return imported.model.to(device), imported.meta
    return load_checkpoint(path, device)
