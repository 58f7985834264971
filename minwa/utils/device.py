"""Which device a run uses: the one function that turns 'auto' / 'cuda' / 'cpu' into a torch.device."""

from __future__ import annotations

import torch

from minwa.errors import MinwaError
from minwa.utils.device_names import check_device


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is present, else cpu; 'cuda' -> cuda:LOCAL_RANK."""
    check_device(device)
    if device in ("", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MinwaError(f"device '{device}' asked for, but CUDA is not available")
        if dev.index is None:
            if local_rank >= torch.cuda.device_count():
                raise MinwaError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                                 f"launch at most {torch.cuda.device_count()} processes per node")
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev
