"""Shared by tests/test_serve.py and tests/test_serve_page.py: a small checkpoint and a real `minwa serve`
process on a free port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx2 as httpx
import torch

from minwa.models import create_model
from minwa.models.checkpoint import save_checkpoint

KWARGS = {"widths": [4, 4, 8, 8, 8], "fc": [16, 16], "img_size": 32}


def tiny_checkpoint(path, classes: list[str], seed: int = 0, **meta):
    """A randomly initialised deepimage-scaling (32 px crop of a 36 px scale) saved as a checkpoint."""
    torch.manual_seed(seed)
    model = create_model("deepimage-scaling", len(classes), 3, **KWARGS)
    meta = {"model": "deepimage-scaling", "model_kwargs": KWARGS, "num_classes": len(classes), "in_chans": 3,
            "classes": classes, "scale": 36, "crop": 32, "mean": [0.5], "std": [0.25], **meta}
    return str(save_checkpoint(path, model, meta))


def start_server(ckpt, *extra) -> tuple[subprocess.Popen, str]:
    """`python -m minwa serve CKPT --port 0 ...`, its URL once it listens (it prints it), ready."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minwa", "serve", ckpt, "--port", "0", "--set", "runtime.threads=1",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(r"at (http://\S+)/ ", line):
            wait_ready(m.group(1))
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("".join(lines) + proc.stderr.read())


def wait_ready(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {seconds} s")
