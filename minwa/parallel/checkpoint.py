"""Resumable multi-rank training state with torch.distributed.checkpoint (DCP), resharded N -> M ranks.

A training state is a folder ``train_state/`` holding ``LATEST`` (a small JSON naming the current state)
and that state's folder ``state-<step>-<nonce>/``, which holds:

- ``*.safetensors``: every rank writes its own shards of the model and optimizer tensors (DCP's
  HuggingFace storage: safetensors files whose headers record each shard's offsets). Loading reads only
  the slices the new layout needs, so 2 ranks can save and 4 ranks (or 1) resume. No pickle anywhere —
  DCP's default ``.metadata`` file is a pickle, so minwa uses the safetensors layout instead.
- ``minwa.json``: what is not a tensor — the optimizer's param groups, ``extra`` from the caller (the
  loader's ``state_dict()``: seed, epoch, position in global batches), the RNG state, and the layout that
  wrote it (for the record; any layout can read it).

One process writes the same layout as N (world size 1), so a state moves 1 -> N and N -> 1 too.

A save becomes visible as one unit: the new state's folder is written beside the current one, flushed to
disk, and only then does rank 0 atomically replace ``LATEST`` to name it; a kill at any moment leaves the
previous complete state current. Multi-node runs need PATH on a filesystem all nodes share.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter, load, save
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_state_dict)
from torch.distributed.tensor import DTensor

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_json, fsync_dir

FORMAT = "minwa-dcp/1"
META = "minwa.json"
LATEST = "LATEST"  # names the current state folder; replaced atomically


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
    if optimizer is None:
        return get_model_state_dict(model), {}
    return get_state_dict(model, optimizer)


def full_state_dict(model, dims=None) -> dict:
    """The whole, unsharded state dict on CPU with single-device names, on every rank (a collective when
    distributed: every rank must call it). Works for fsdp, butterfly (DDP) and hybrid (DTensor FC)."""
    model = getattr(model, "_orig_mod", model)
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in sd.items()}


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


def _fsync_tree(folder: Path) -> None:
    """Flush every file written into ``folder`` (by any rank) and the folder itself to disk, so that the
    pointer written next never names a state that a power cut could still lose."""
    for p in folder.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _file_digests(folder: Path) -> dict:
    """Size and SHA-256 of every tensor file of a state (all ranks' shards), recorded in its JSON so that
    a shard damaged or cut short after the save is refused before DCP reads it."""
    out = {}
    for p in sorted(folder.glob("*.safetensors")):
        with open(p, "rb") as f:
            out[p.name] = {"size": p.stat().st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    return out


def _check_files(folder: Path, files: dict) -> None:
    for name, want in files.items():
        p = folder / name
        if not p.is_file():
            raise MinwaError(f"training state {folder} is incomplete: its shard {name} is missing")
        if p.stat().st_size != want["size"]:
            raise MinwaError(f"training state {folder} is damaged: its shard {name} has {p.stat().st_size:,} bytes, "
                             f"{want['size']:,} were saved")
        with open(p, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != want["sha256"]:
                raise MinwaError(f"training state {folder} is damaged: its shard {name} does not match the "
                                 f"checksum saved with it")


def _state_folder(path: Path) -> Path | None:
    """The complete state a ``path`` holds: the one ``LATEST`` names, or ``path`` itself when it is one
    state folder (``minwa.json`` inside). None where there is none."""
    pointer = path / LATEST
    if pointer.is_file():
        try:
            name = json.loads(pointer.read_text())["current"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise MinwaError(f"training state {path} has a corrupt {LATEST} pointer; the states it kept are "
                             f"{', '.join(sorted(p.name for p in path.glob('state-*'))) or 'none'}") from None
        if not isinstance(name, str) or "/" in name or not (path / name / META).is_file():
            raise MinwaError(f"training state {path}: {LATEST} names {name!r}, which is not a complete state")
        return path / name
    if (path / META).is_file():
        return path
    return None


def is_distributed_checkpoint(path) -> bool:
    """True for a training state written by :func:`save_distributed` (any world size)."""
    path = Path(path)
    return path.is_dir() and _state_folder(path) is not None


def save_distributed(path, model: nn.Module, optimizer=None, extra: dict | None = None,
                     more: dict[str, torch.Tensor] | None = None) -> Path:
    """Save model + optimizer (sharded as they are) + ``more`` (extra plain tensors, e.g. an EMA copy) +
    ``extra`` (JSON) + RNG state into the state folder ``path``; every rank calls it.

    The new state is written into a fresh ``path/state-<step>-<nonce>/`` while the previous one stays
    untouched; it becomes the current state in one atomic step, the rename of the ``LATEST`` pointer,
    after every rank's files are on disk. A kill at any moment leaves either the old or the new state
    current, never a mixture; the superseded folders are removed after the switch.
    """
    path = Path(path)
    world = dist.get_world_size() if _distributed() else 1
    step = int((extra or {}).get("step", 0))
    name = _broadcast_str(f"state-{step:09d}-{os.urandom(4).hex()}")
    folder = path / name
    main = not _distributed() or dist.get_rank() == 0
    if main:
        if path.exists() and not path.is_dir():
            raise MinwaError(f"cannot save the training state: {path} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=False)
    _barrier()

    model_sd, optim_sd = _state_dicts(model, optimizer)
    tensors: dict = {}
    other: dict = {}
    _split({"model": model_sd, "optim": optim_sd, "more": dict(more or {})}, "", tensors, other)
    # safetensors stores dense row-major data: channels_last weights (DDP, one process) are packed first
    tensors = {k: v if isinstance(v, DTensor) or v.is_contiguous() else v.contiguous() for k, v in tensors.items()}
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process")
        save(tensors, storage_writer=HuggingFaceStorageWriter(str(folder), save_distributed=world > 1))
    _barrier()  # every rank's shards are written

    if main:
        meta = {"format": FORMAT, "world_size": world, "keys": sorted(tensors),
                "shapes": {k: list(v.shape) for k, v in tensors.items()},  # global shapes (DTensor .shape)
                "other": _json_safe(other, "the optimizer's param groups"),
                "extra": _json_safe(extra or {}, "extra"), "rng": _rng_state(), "files": _file_digests(folder)}
        atomic_write_json(folder / META, meta)
        _fsync_tree(folder)
        atomic_write_json(path / LATEST, {"format": FORMAT, "current": name})  # the switch
        fsync_dir(path)
        for old in path.iterdir():  # superseded states and folders of saves that were killed
            if old.name != name and old.name.startswith("state-"):
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return path


def read_meta(path) -> dict:
    """The JSON part (``minwa.json``) of the current state in ``path``."""
    path = Path(path)
    folder = _state_folder(path) if path.is_dir() else None
    if folder is None:
        left = leftover_states(path)
        hint = f"; a complete state was left at {left[-1]} (pass it to --resume)" if left else ""
        raise MinwaError(f"no resumable training state at {path}{hint}")
    p = folder / META
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MinwaError(f"training state {folder} has a corrupt {META}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MinwaError(f"training state {folder} has format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {FORMAT}")
    for key, kind in (("keys", list), ("other", dict), ("extra", dict)):
        if not isinstance(meta.get(key), kind):
            raise MinwaError(f"training state {folder}: {META} is damaged (its '{key}' is missing or malformed)")
    meta["folder"] = str(folder)
    return meta


def leftover_states(path) -> list[Path]:
    """Complete states left beside ``path`` (``path.old-*``, ``path.tmp-*``) by an older minwa's
    two-rename swap that was killed half-way, oldest name first."""
    path = Path(path)
    return sorted(p for p in path.parent.glob(f"{path.name}.*") if (p / META).is_file())


def read_extra(path) -> dict:
    """The caller's ``extra`` of the current state in ``path``, without reading any tensor."""
    return _decode(read_meta(path)["extra"])


def load_distributed(path, model: nn.Module, optimizer=None, restore_rng: bool = True,
                     more: dict[str, torch.Tensor] | None = None) -> dict:
    """Load a checkpoint written by any number of ranks into this layout; returns the saved ``extra``.

    The model and optimizer must be built and parallelized first (their sharding says what each rank
    reads). The RNG state saved by rank 0 is restored on every rank.
    """
    meta = read_meta(path)
    path = Path(meta["folder"])
    _check_files(path, meta.get("files", {}))  # states saved before checksums existed have none
    saved = set(meta["keys"])
    model_sd, optim_sd = _state_dicts(model, optimizer)
    tensors: dict = {}
    other: dict = {}
    _split({"model": model_sd, "optim": optim_sd, "more": dict(more or {})}, "", tensors, other)
    absent = sorted(k[5:] for k in tensors if k.startswith("more/") and k not in saved)
    if absent:
        raise MinwaError(f"training state {path} has no {', '.join(absent[:3])} (saved with other settings?)")
    missing = sorted(k for k in tensors if k.startswith("model/") and k not in saved)
    if missing:
        raise MinwaError(f"training state {path} does not fit this model: no weights for "
                         f"{', '.join(m[6:] for m in missing[:3])}{' ...' if len(missing) > 3 else ''}")
    shapes = meta.get("shapes", {})
    wrong = [f"{k[6:]} is {shapes[k]} there, {list(v.shape)} here" for k, v in tensors.items()
             if k.startswith("model/") and k in shapes and list(v.shape) != shapes[k]]
    if wrong:
        raise MinwaError(f"training state {path} does not fit this model ({'; '.join(wrong[:2])}"
                         f"{'; ...' if len(wrong) > 2 else ''}): resume with the settings it was saved with")
    # optimizer tensors the checkpoint lacks (saved before the first step) keep their fresh values
    wanted = {k: v for k, v in tensors.items() if k in saved}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*single process")
            load(wanted, storage_reader=HuggingFaceStorageReader(str(path)))
    except (Exception, CheckpointException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinwaError(f"could not read distributed checkpoint {path}: {first[:300]}") from None
    tensors.update(wanted)
    for k, v in (more or {}).items():
        v.copy_(tensors[f"more/{k}"])
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
        set_model_state_dict(model, state["model"])
    if restore_rng:
        _set_rng_state(meta.get("rng", {}))
    return _decode(meta.get("extra", {}))
