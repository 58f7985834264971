"""Test-time views: shorter side resized to S, centre C×C crop (or the whole image when dense), mirror.

Images arrive as uint8 H×W×C arrays of any sizes (photographs: nearly every one its own size). They are
grouped by size so each group is resized as one batch (``F.interpolate`` with antialiasing, the same filter
family the loader uses for S); then :func:`scaled_batches` merges every equally shaped result into one
batch, so the network runs once per test scale (centre crops: all images) or once per resized size
(dense: images of one aspect ratio), never once per original size.
Output tensors stay in 0..255 float; :func:`normalise` applies the checkpoint's ``(x/255 − mean)/std``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from minwa.errors import MinwaError

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, Pillow's "L" conversion


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """NCHW with the model's channel count: grey → RGB by repetition, RGB → grey by luma."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise MinwaError(f"images have {c} channels but the model takes {channels}")


def resized_size(h: int, w: int, scale: int) -> tuple[int, int]:
    """(H, W) with the shorter side equal to ``scale``, aspect ratio kept."""
    if h <= w:
        return scale, max(scale, round(w * scale / h))
    return max(scale, round(h * scale / w)), scale


def same_size_batches(images, device):
    """Yield ``(indices, uint8 NCHW tensor on device)`` per group of equally sized images.

    ``images``: a list of uint8 H×W×C (or H×W) arrays, or one N×H×W×C array (a single group, no copy).
    Left uint8: :func:`scaled_batches` converts one group at a time.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        yield list(range(len(images))), _to_tensor(images, device)
        return
    groups = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.shape].append(i)
    for idx in groups.values():
        yield idx, _to_tensor(np.stack([images[i] for i in idx]), device)


def _to_tensor(arr: np.ndarray, device) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[..., None]
    if not arr.flags.writeable or not arr.flags.c_contiguous:  # e.g. a read-only IDX memory view
        arr = np.array(arr, copy=True, order="C")
    return torch.from_numpy(arr).to(device, non_blocking=True).permute(0, 3, 1, 2)


def scaled_batches(groups, scales, crop: int | None, channels: int):
    """Yield ``(scale, indices, float NCHW 0..255)``: every group (from :func:`same_size_batches`) resized to
    shorter side S for each of ``scales`` and centre-cropped to ``crop`` (None: whole image, for dense
    testing), then all results of one scale and shape stacked — one batch per scale when cropped, one per
    scale and resized size when whole. Each group is converted to float once, for all scales."""
    buckets = defaultdict(lambda: ([], []))
    for idx, x in groups:
        x = match_channels(x.float(), channels)
        for s in scales:
            y = resize_shorter(x, s)
            if crop is not None:
                y = centre_crop(y, crop).contiguous()  # a copy: the whole resized image is not kept
            indices, parts = buckets[(s, *y.shape[-2:])]
            indices.extend(idx)
            parts.append(y)
    for (s, *_), (indices, parts) in buckets.items():
        yield s, indices, parts[0] if len(parts) == 1 else torch.cat(parts)


def resize_shorter(x: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = resized_size(h, w, scale)
    if size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def centre_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < crop or w < crop:
        raise MinwaError(f"test scale {min(h, w)} is smaller than the model's {crop}x{crop} crop "
                         f"(use a scale >= {crop}, or --dense)")
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    c = x.shape[1]
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1)
    mean, std = mean.expand(c) if mean.numel() == 1 else mean, std.expand(c) if std.numel() == 1 else std
    return (x / 255.0 - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)
