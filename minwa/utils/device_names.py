"""The device names minwa accepts, checked without torch: config checks run before anything heavy is
imported (``minwa.utils.device`` turns a name into a torch.device)."""

from __future__ import annotations

import re

from minwa.errors import MinwaError

DEVICES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device: str, option: str = "device") -> str:
    """``device`` if it is one minwa runs on (auto | cpu | cuda | cuda:N | mps), else a one-line error."""
    if device and not DEVICES.fullmatch(device):
        raise MinwaError(f"{option} must be auto, cpu, cuda, cuda:N or mps, not '{device}'")
    return device
