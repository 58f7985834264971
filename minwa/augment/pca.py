"""AlexNet PCA lighting: the principal components of the training set's RGB pixel values.

AlexNet adds ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel of an image, with ``p_i, l_i`` the
eigenvectors / eigenvalues of the 3x3 covariance of RGB values over the training set and ``a_i ~ N(0, 0.1)``
drawn per image. minwa computes them from the data set it trains on (``compute_pca_lighting``) and keeps
them beside the data as ``pca_lighting.json`` (``PCA_FILENAME``); the ImageNet values published with
AlexNet-style training code are the default when none were computed. Values are on the 0..1 pixel scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_json

PCA_FILENAME = "pca_lighting.json"

# ImageNet (0..1 RGB): eigenvalues and eigenvectors (columns), as used by fb.resnet.torch / timm.
IMAGENET_EIGVALS = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVECS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def imagenet_pca() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(IMAGENET_EIGVALS), torch.tensor(IMAGENET_EIGVECS)


def _pixels(source, max_images: int, pixels_per_image: int, seed: int) -> np.ndarray:
    """float64 (P, C) pixel values on 0..1 from a uint8 NCHW tensor/array or an ``ImageDataset``."""
    rs = np.random.default_rng(seed)
    if isinstance(source, (torch.Tensor, np.ndarray)):
        arr = source.numpy() if isinstance(source, torch.Tensor) else source
        if arr.ndim != 4:
            raise MinwaError(f"PCA lighting needs uint8 N x C x H x W images, got shape {tuple(arr.shape)}")
        take = np.linspace(0, arr.shape[0] - 1, min(max_images, arr.shape[0])).astype(np.int64)
        x = arr[take].transpose(0, 2, 3, 1).reshape(-1, arr.shape[1])
    else:
        n = len(source)
        if n == 0:
            raise MinwaError("cannot compute PCA lighting of an empty data set")
        take = np.linspace(0, n - 1, min(max_images, n)).astype(np.int64)
        parts = []
        for i in take:
            img = np.asarray(source.image(int(i)))
            img = img[:, :, None] if img.ndim == 2 else img
            flat = img.reshape(-1, img.shape[-1])
            k = min(pixels_per_image, flat.shape[0])
            parts.append(flat[rs.choice(flat.shape[0], k, replace=False)])
        x = np.concatenate(parts)
    if x.shape[0] > max_images * pixels_per_image:
        x = x[rs.choice(x.shape[0], max_images * pixels_per_image, replace=False)]
    return x.astype(np.float64) / 255.0


def compute_pca_lighting(source, max_images: int = 10_000, pixels_per_image: int = 256,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigvals, eigvecs)`` of the pixel covariance, largest first (float32; eigenvectors in columns).

    ``source`` is a uint8 N x C x H x W tensor/array or an ``ImageDataset`` (``len`` + ``image(i)``); up to
    ``max_images`` evenly spaced images and ``pixels_per_image`` random pixels of each are used.
    """
    x = _pixels(source, max_images, pixels_per_image, seed)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vecs = vecs[:, order]
    vecs = vecs * np.where(vecs.sum(0) < 0, -1.0, 1.0)  # a fixed sign: the same file from the same data
    return torch.tensor(vals[order].clip(min=0), dtype=torch.float32), torch.tensor(vecs, dtype=torch.float32)


def save_pca(path, eigvals: torch.Tensor, eigvecs: torch.Tensor) -> Path:
    """Write ``pca_lighting.json`` (``path`` may be the data set folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / PCA_FILENAME
    atomic_write_json(path, {"scale": "0..1", "eigvals": eigvals.tolist(), "eigvecs_columns": eigvecs.tolist()})
    return path


def load_pca(path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a file written by ``save_pca`` (or the data set folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / PCA_FILENAME
    try:
        data = json.loads(path.read_text())
        vals = torch.tensor(data["eigvals"], dtype=torch.float32)
        vecs = torch.tensor(data["eigvecs_columns"], dtype=torch.float32)
    except FileNotFoundError:
        raise MinwaError(f"PCA lighting file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise MinwaError(f"PCA lighting file {path} is not valid ({e})") from None
    if vecs.shape != (vals.numel(), vals.numel()):
        raise MinwaError(f"PCA lighting file {path} has {vals.numel()} eigenvalues but eigenvectors {tuple(vecs.shape)}")
    return vals, vecs
