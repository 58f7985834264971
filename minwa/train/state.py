"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``flatten`` turns a nested state (optimizer ``state_dict()``, RNG states, loader position) into a flat
``{dotted.key: tensor}`` map plus a JSON skeleton with placeholders; ``unflatten`` reverses it. Used for
single-process resume; multi-rank runs use DCP (``minwa.parallel``) with the same ``extra`` payload.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_bytes, atomic_write_json

_TENSOR = "__tensor__:"


def flatten(obj, prefix: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return _TENSOR + key
    if isinstance(obj, dict):
        return {"__dict__": [[_key_json(k), flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and obj != obj:
        return {"__nan__": True}
    return obj


def _key_json(k):
    return k if isinstance(k, (str, int)) else str(k)


def unflatten(obj, tensors: dict, device="cpu"):
    if isinstance(obj, str) and obj.startswith(_TENSOR):
        return tensors[obj[len(_TENSOR):]].to(device)
    if isinstance(obj, dict):
        if "__dict__" in obj:
            return {k: unflatten(v, tensors, device) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [unflatten(v, tensors, device) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__nan__" in obj:
            return float("nan")
    return obj


def save_state(path, state: dict) -> None:
    """Atomically write ``path.safetensors`` then ``path.json`` (the JSON names the tensors it needs)."""
    path = Path(path)
    tensors: dict = {}
    skeleton = flatten(state, "", tensors)
    atomic_write_bytes(path.with_suffix(".safetensors"), save(tensors))
    atomic_write_json(path.with_suffix(".json"), {"format": "minwa-train-state/1", "state": skeleton})


def load_state(path, device="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "train_state"
    js, st = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not js.is_file() or not st.is_file():
        raise MinwaError(f"no resumable training state at {path} (expected {js.name} and {st.name})")
    try:
        doc = json.loads(js.read_text())
        tensors = load_file(str(st))
    except Exception as e:  # corrupt files are a user-level problem
        raise MinwaError(f"training state {path} is unreadable ({str(e).splitlines()[0]})") from None
    if doc.get("format") != "minwa-train-state/1":
        raise MinwaError(f"{js} is not a minwa training state")
    return unflatten(doc["state"], tensors, device)
