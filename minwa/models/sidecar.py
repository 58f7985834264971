"""The checkpoint sidecar checked field by field when it is read, so a damaged or hand-edited one is a
sentence naming the file and the field rather than a broadcast traceback or ``nan%`` at predict time.

Only what loading and testing use is checked; optional fields may be absent (older checkpoints), but a
field that is present must make sense: ``classes`` names every output, ``mean``/``std`` hold one value or
one per input channel (std positive), ``scale``/``crop`` are positive whole numbers with crop <= scale.
"""

from __future__ import annotations

import math
import re

from minwa.errors import MinwaError

SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   and math.isfinite(x) for x in v)


def _problem(meta: dict) -> tuple[str, str] | None:
    """(field, what is wrong with it) for the first impossible field, else None."""
    if not isinstance(meta.get("model"), str) or not meta["model"]:
        return "model", "must be a model name"
    n, chans = meta.get("num_classes"), meta.get("in_chans", 3)
    if not _is_int(n) or n < 1:
        return "num_classes", f"must be a positive whole number, not {n!r}"
    if not _is_int(chans) or chans < 1:
        return "in_chans", f"must be a positive whole number, not {chans!r}"
    if not isinstance(meta.get("model_kwargs", {}), dict):
        return "model_kwargs", "must be a table of constructor options"
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        return "classes", "must be a list of class names"
    if classes is not None and len(classes) != n:
        return "classes", f"names {len(classes)} classes for num_classes {n}"
    for key in ("mean", "std"):
        v = meta.get(key)
        if v is not None and (not _numbers(v) or len(v) not in (1, chans)):
            count = "one finite number" if chans == 1 else f"one finite number, or {chans} (one per channel)"
            return key, f"must hold {count} for in_chans {chans}, not {v!r}"
    if meta.get("std") is not None and min(meta["std"]) <= 0:
        return "std", f"must be positive, not {meta['std']!r}"
    for key in ("scale", "crop"):
        v = meta.get(key)
        if v is not None and (not _is_int(v) or v < 1):
            return key, f"must be a positive whole number of pixels, not {v!r}"
    if meta.get("scale") and meta.get("crop") and meta["crop"] > meta["scale"]:
        return "crop", f"{meta['crop']} is larger than 'scale' {meta['scale']}"
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and SHA256.fullmatch(digest)):
        return "weights_sha256", "must be 64 hexadecimal digits"
    return None


def check_sidecar(meta: dict, sidecar) -> dict:
    """``meta`` unchanged, or a ``MinwaError`` naming ``sidecar`` and its first impossible field."""
    problem = _problem(meta)
    if problem:
        field, what = problem
        raise MinwaError(f"checkpoint sidecar {sidecar}: '{field}' {what}")
    return meta
