"""Which device a run uses: the one function that turns 'auto' / 'cuda' / 'cpu' into a torch.device."""

from __future__ import annotations

import re

import torch

from minwa.errors import MinwaError

DEVICES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device: str, option: str = "device") -> str:
    """``device`` if it is one minwa runs on (auto | cpu | cuda | cuda:N | mps), else a one-line error."""
    if device and not DEVICES.fullmatch(device):
        raise MinwaError(f"{option} must be auto, cpu, cuda, cuda:N or mps, not '{device}'")
    return device


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
