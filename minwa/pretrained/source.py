"""Reading a foreign state dict (torchvision, timm) without running anyone's code.

``.safetensors`` is read as it is; ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` through
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only: a file that needs
anything else unpickled (a training script's ``args`` Namespace, a whole pickled model) is refused in one
sentence, never executed. Training checkpoints that wrap the weights (``{"state_dict": ...}``,
``{"model": ...}``, timm's ``state_dict_ema``) are unwrapped, and DDP's ``module.`` prefix is dropped.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minwa.errors import MinwaError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
# where training checkpoints keep the weights, in the order preferred (timm's EMA weights are its best)
_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` by name, float or integer as saved, on the CPU."""
    p = Path(path)
    if not p.is_file():
        raise MinwaError(f"weights file not found: {p}")
    if not p.name.endswith(SUFFIXES):
        raise MinwaError(f"{p} is not a weights file minwa reads: name a .safetensors, .pth, .pt or .bin file")
    if p.suffix == ".safetensors":
        try:
            state = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise MinwaError(f"{p} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    else:
        state = _torch_load(p)
    return _unwrap(state, p)


def _torch_load(p: Path):
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise MinwaError(f"{p} holds more than weights ({what}); minwa never unpickles arbitrary objects: save "
                         f"model.state_dict() alone (torch.save or safetensors) and import that") from None
    except Exception as e:  # noqa: BLE001  a damaged file fails anywhere in torch's reader (IndexError, EOFError...)
        why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinwaError(f"{p} is not a readable PyTorch weights file ({why})") from None


def _unwrap(obj, p: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise MinwaError(f"{p} is a dictionary but not a state dict (keys {', '.join(map(str, list(obj)[:5]))}); "
                             f"save model.state_dict() and import that")
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MinwaError(f"{p} holds no state dict (tensors by name)")
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)
