"""Resumable multi-rank training state with torch.distributed.checkpoint (DCP), resharded N -> M ranks.

A checkpoint is a folder:

- ``*.safetensors``: every rank writes its own shards of the model and optimizer tensors (DCP's
  HuggingFace storage: safetensors files whose headers record each shard's offsets). Loading reads only
  the slices the new layout needs, so 2 ranks can save and 4 ranks (or 1) resume. No pickle anywhere —
  DCP's default ``.metadata`` file is a pickle, so minwa uses the safetensors layout instead.
- ``minwa.json``: what is not a tensor — the optimizer's param groups, ``extra`` from the caller (the
  loader's ``state_dict()``: seed, epoch, position in global batches), the RNG state, and the layout that
  wrote it (for the record; any layout can read it).

Saves are atomic: everything is written to ``PATH.tmp-<nonce>`` and renamed onto ``PATH`` by rank 0
once every rank has finished writing. Multi-node runs need PATH on a filesystem all nodes share.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_json

FORMAT = "minwa-dcp/1"
META = "minwa.json"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier():
    if _distributed():
        dist.barrier()


def _broadcast_str(value: str) -> str:
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _split(state: dict, prefix: str, tensors: dict, other: dict) -> None:
    """Flatten nested dicts: tensors go to DCP, the rest (numbers, lists) to JSON."""
    for k, v in state.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _split(v, key + "/", tensors, other)
        elif isinstance(v, torch.Tensor):
            tensors[key] = v
        else:
            other[key] = v


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _rng_state() -> dict:
    state = {"cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def _set_rng_state(state: dict) -> None:
    def decode(s):
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()

    if "cpu" in state:
        torch.set_rng_state(decode(state["cpu"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(decode(state["cuda"]))


def _state_dicts(model: nn.Module, optimizer) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model), {}
    return get_state_dict(model, optimizer)


def _json_safe(obj, where: str):
    """``obj`` with tensors (e.g. an RNG state in ``extra``) encoded as base64 JSON objects."""
    def enc(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            return {"__tensor__": base64.b64encode(t.view(torch.uint8).numpy().tobytes()).decode(),
                    "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [enc(x) for x in v]
        return v

    obj = enc(obj)
    try:
        json.dumps(obj)
    except TypeError as e:
        raise TypeError(f"{where} must be JSON-serialisable (or tensors) for a minwa checkpoint: {e}") from None
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            raw = bytearray(base64.b64decode(obj["__tensor__"]))
            flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return flat.view(getattr(torch, obj["dtype"])).reshape(obj["shape"]).clone()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def is_distributed_checkpoint(path) -> bool:
    """True for a folder written by :func:`save_distributed` (any world size)."""
    return (Path(path) / META).is_file()


def save_distributed(path, model: nn.Module, optimizer=None, extra: dict | None = None) -> Path:
    """Save model + optimizer (sharded as they are) + ``extra`` (JSON) + RNG state; every rank calls it."""
    from torch.distributed.checkpoint import HuggingFaceStorageWriter, save

    path = Path(path)
    world = dist.get_world_size() if _distributed() else 1
    nonce = _broadcast_str(os.urandom(4).hex())
    tmp = path.with_name(f"{path.name}.tmp-{nonce}")
    if not _distributed() or dist.get_rank() == 0:
        tmp.mkdir(parents=True, exist_ok=False)
    _barrier()

    model_sd, optim_sd = _state_dicts(model, optimizer)
    tensors: dict = {}
    other: dict = {}
    _split({"model": model_sd, "optim": optim_sd}, "", tensors, other)
    # safetensors stores dense row-major data: channels_last weights (DDP, one process) are packed first
    tensors = {k: v if isinstance(v, DTensor) or v.is_contiguous() else v.contiguous() for k, v in tensors.items()}
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process")
        save(tensors, storage_writer=HuggingFaceStorageWriter(str(tmp), save_distributed=world > 1))

    if not _distributed() or dist.get_rank() == 0:
        meta = {"format": FORMAT, "world_size": world, "keys": sorted(tensors),
                "shapes": {k: list(v.shape) for k, v in tensors.items()},  # global shapes (DTensor .shape)
                "other": _json_safe(other, "the optimizer's param groups"),
                "extra": _json_safe(extra or {}, "extra"), "rng": _rng_state()}
        atomic_write_json(tmp / META, meta)
        if path.exists():  # replace the previous checkpoint: move it aside first, then swap in the new one
            old = path.with_name(f"{path.name}.old-{nonce}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    _barrier()
    return path


def read_meta(path) -> dict:
    p = Path(path) / META
    if not p.is_file():
        raise MinwaError(f"not a minwa distributed checkpoint (no {META}): {path}")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise MinwaError(f"distributed checkpoint {path} has a corrupt {META}: {e}") from None
    if meta.get("format") != FORMAT:
        raise MinwaError(f"distributed checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def load_distributed(path, model: nn.Module, optimizer=None, restore_rng: bool = True) -> dict:
    """Load a checkpoint written by any number of ranks into this layout; returns the saved ``extra``.

    The model and optimizer must be built and parallelized first (their sharding says what each rank
    reads). The RNG state saved by rank 0 is restored on every rank.
    """
    from torch.distributed.checkpoint import HuggingFaceStorageReader, load
    from torch.distributed.checkpoint.state_dict import set_state_dict

    meta = read_meta(path)
    saved = set(meta["keys"])
    model_sd, optim_sd = _state_dicts(model, optimizer)
    tensors: dict = {}
    other: dict = {}
    _split({"model": model_sd, "optim": optim_sd}, "", tensors, other)
    missing = sorted(k for k in tensors if k.startswith("model/") and k not in saved)
    if missing:
        raise MinwaError(f"checkpoint {path} does not fit this model: no weights for "
                         f"{', '.join(m[6:] for m in missing[:3])}{' ...' if len(missing) > 3 else ''}")
    shapes = meta.get("shapes", {})
    wrong = [f"{k[6:]} is {shapes[k]} there, {list(v.shape)} here" for k, v in tensors.items()
             if k.startswith("model/") and k in shapes and list(v.shape) != shapes[k]]
    if wrong:
        raise MinwaError(f"checkpoint {path} does not fit this model: {'; '.join(wrong[:3])}")
    # optimizer tensors the checkpoint lacks (saved before the first step) keep their fresh values
    wanted = {k: v for k, v in tensors.items() if k in saved}
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*single process")
            load(wanted, storage_reader=HuggingFaceStorageReader(str(path)))
    except (Exception, CheckpointException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinwaError(f"could not read distributed checkpoint {path}: {first[:300]}") from None
    tensors.update(wanted)
    flat = {**tensors, **{k: v for k, v in meta["other"].items()}}
    state = _unflatten(flat)
    optim_state = state.get("optim", {})
    if optimizer is not None and "param_groups" in optim_state:
        groups = optim_state["param_groups"]  # JSON keys of the list came back as '0', '1', ...
        if isinstance(groups, dict):
            groups = [groups[str(i)] for i in range(len(groups))]
        optim_state["param_groups"] = groups
    if optimizer is not None:
        optim_state.setdefault("state", {})  # a stateless optimizer (plain SGD) flattens to no tensors
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=optim_state)
    else:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, state["model"])
    if restore_rng:
        _set_rng_state(meta.get("rng", {}))
    return _decode(meta.get("extra", {}))
