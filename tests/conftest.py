"""Shared fixtures: the real Fashion-MNIST files (tests skip cleanly where they are absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FASHION = Path("/usr/share/datasets/fashion-mnist")

# Two cores on CI: keep torch from oversubscribing when pytest and workers share them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def fashion_available() -> bool:
    return any(FASHION.glob("train-images-idx3-ubyte*")) and any(FASHION.glob("t10k-images-idx3-ubyte*"))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not fashion_available():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return FASHION
