"""The metadata an exported file carries, so any runtime can feed it and name its outputs.

One flat ``{key: str}`` dict: ONNX ``metadata_props`` hold it as is, a ``.pt2`` holds it as the extra
file ``minwa.json``. Lists and objects are JSON text. Fields: docs/export.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from minwa import __version__
from minwa.errors import MinwaError
from minwa.evaluate.preprocess import spec

FORMAT = "minwa-export-1"


def build_metadata(meta: dict, *, model: str, classes: list[str], scale: int, crop: int, mean, std,
                   channels: int, dense_min: int | None = None) -> dict[str, str]:
    """The metadata of one exported model (``meta``: its checkpoint's sidecar; ``dense_min``: the dense
    graph's smallest input side, None for the plain graph)."""
    pre = spec(scale, crop, mean, std, channels)
    dense = dense_min is not None
    shape = f"N x {channels} x H x W (H, W >= {dense_min})" if dense else f"N x {channels} x {crop} x {crop}"
    return {
        "minwa.format": FORMAT,
        "minwa.version": __version__,
        "minwa.model": model,
        "minwa.classes": json.dumps(classes),
        "minwa.num_classes": str(len(classes)),
        "minwa.preprocessing": json.dumps(pre),
        "minwa.input": "input: float32 " + shape + ", normalised as minwa.preprocessing",
        "minwa.output": "probabilities: float32 N x K softmax over minwa.classes"
                        + (" (dense: the mean over window positions)" if dense else ""),
        "minwa.dense": "true" if dense else "false",
        "minwa.dense_min_side": str(dense_min or crop),
        "minwa.weights_sha256": str(meta.get("weights_sha256", "")),
        "minwa.metrics": json.dumps(meta.get("metrics") or {}),
    }


def read_metadata(path) -> dict:
    """The metadata of an exported ``.onnx`` or ``.pt2`` file, JSON fields decoded."""
    p = Path(path)
    if not p.is_file():
        raise MinwaError(f"exported model not found: {p}")
    if p.suffix == ".onnx":
        import onnx  # an optional dependency (pip install minwa[export])

        try:
            raw = {prop.key: prop.value for prop in onnx.load(str(p), load_external_data=False).metadata_props}
        except Exception as e:  # onnx raises DecodeError and others for a damaged file
            raise MinwaError(f"{p} is not a readable ONNX file ({type(e).__name__})") from None
    else:
        from minwa.export.pt2 import read_extra

        raw = read_extra(p)
    if raw.get("minwa.format") != FORMAT:
        raise MinwaError(f"{p} carries no minwa export metadata")
    return {k: _decode(v) for k, v in raw.items()}


def _decode(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
