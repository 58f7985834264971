"""Checkpoints: weights in safetensors, everything else in a JSON sidecar. Loading never unpickles.

``run/final.safetensors`` + ``run/final.json``. The sidecar holds what is needed to rebuild and use the
model without the training config at hand: the registry name and constructor kwargs, the number of
classes and input channels, the class names, the input scale/crop and normalisation, metrics, and the
resolved config. Both files are written atomically (sidecar last, so a sidecar always has its weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_bytes, atomic_write_json

FORMAT = "minwa-checkpoint/1"


def checkpoint_paths(path) -> tuple[Path, Path]:
    """Accept ``x.safetensors``, ``x.json``, ``x`` or a run folder (its ``final``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "final"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def state_dict_for_saving(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors under the plain module's names; shared storage (tied weights) is cloned so
    safetensors accepts it. torch.compile's ``_orig_mod.`` prefix is dropped, so a checkpoint of a compiled
    model loads into the model that ``create_model`` builds."""
    sd = {}
    seen = set()
    for k, v in state.items():
        k = k.replace("_orig_mod.", "")
        t = v.detach().to("cpu")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            t = t.clone()
        seen.add(key)
        sd[k] = t.contiguous()
    return sd


def save_checkpoint(path, model: torch.nn.Module | dict, meta: dict) -> Path:
    """Write weights (a module, or an already gathered state dict) + sidecar.

    ``meta`` needs at least ``model`` (the registry name) and ``num_classes``.
    """
    for key in ("model", "num_classes"):
        if key not in meta:
            raise ValueError(f"checkpoint meta needs '{key}'")
    weights, sidecar = checkpoint_paths(path)
    if isinstance(model, torch.nn.Module):
        model = model.state_dict()
    atomic_write_bytes(weights, save(state_dict_for_saving(model), metadata={"format": FORMAT}))
    atomic_write_json(sidecar, {"format": FORMAT, **meta})
    return weights


def read_meta(path) -> dict:
    weights, sidecar = checkpoint_paths(path)
    if not sidecar.is_file() or not weights.is_file():
        raise MinwaError(f"checkpoint not found: {weights} (with its {sidecar.name})")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MinwaError(f"checkpoint sidecar {sidecar} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MinwaError(f"{sidecar} is not a minwa checkpoint sidecar")
    return meta


def load_state(path, device="cpu") -> dict[str, torch.Tensor]:
    weights, _ = checkpoint_paths(path)
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise MinwaError(f"checkpoint weights {weights} are unreadable ({str(e).splitlines()[0]})") from None


def build_model_from_meta(meta: dict, device="cpu"):
    from minwa.models import create_model

    return create_model(meta["model"], num_classes=meta["num_classes"], in_chans=meta.get("in_chans", 3),
                        **meta.get("model_kwargs", {})).to(device)


def load_checkpoint(path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model from the sidecar and load its weights (strict): ``(model in eval mode, meta)``."""
    meta = read_meta(path)
    model = build_model_from_meta(meta, device)
    state = load_state(path, device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise MinwaError(f"checkpoint {checkpoint_paths(path)[0]} does not fit model '{meta['model']}': "
                         f"{str(e).splitlines()[0]}") from None
    model.eval()
    return model, meta
