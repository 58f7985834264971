"""Shared fixtures: the real Fashion-MNIST files and subsets of them, real photographs (tests skip cleanly
where they are absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from data_fixtures import small_idx

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


@pytest.fixture(scope="session")
def fashion_subset(fashion_dir, tmp_path_factory):
    """A factory: ``fashion_subset(n)`` is an IDX folder of the first ``n`` real Fashion-MNIST training
    images (and their test split), written once per ``n`` for the whole session."""
    made: dict[int, Path] = {}

    def make(n: int) -> Path:
        if n not in made:
            made[n] = tmp_path_factory.mktemp(f"fashion{n}") / "idx"
            small_idx(made[n], n=n, real=fashion_dir)
        return made[n]

    return make


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """A user's folder of real colour photographs (train/ and val/, four classes, split by source picture);
    see tests/photo_fixtures.py. Skips where Debian's wallpaper packages are absent."""
    from photo_fixtures import make_photo_folder, photos_available

    if not photos_available():
        pytest.skip("wallpaper photographs not installed (apt-get install mate-backgrounds gnome-backgrounds "
                    "sway-backgrounds; make test does it as root)")
    return make_photo_folder(tmp_path_factory.mktemp("photos"))
