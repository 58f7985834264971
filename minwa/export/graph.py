"""What is exported: the model with its softmax, so every runtime returns the probabilities minwa reports.

The plain graph takes the C×C centre crop; the dense one (``to_dense``: the FC layers as convolutions)
takes any H×W ≥ C and averages the softmax of every window position, as ``minwa eval --dense`` does.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from minwa.evaluate.dense import DenseModel, DenseProbs, fc_head

MAX_BATCH = 4096
MAX_SIDE = 4096


class Probabilities(nn.Module):
    """float32 N×C×H×W (normalised) -> float32 N×K softmax probabilities."""

    def __init__(self, model: nn.Module, dense: bool = False):
        super().__init__()
        self.net = DenseProbs(model) if dense else model
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) if self.dense else torch.softmax(self.net(x).float(), dim=1)


def dense_min_side(model: nn.Module, channels: int, crop: int) -> int:
    """The smallest input side of the dense graph. An FC head's class-score map must be at least two
    positions wide: torch.export specialises a one-position map (a size-1 dimension broadcasts), so the
    graph starts one trunk stride above the crop (a crop-sized input is the plain graph's). Found on the
    meta device, where a forward pass costs nothing."""
    if fc_head(model) is None:
        return crop
    dense = DenseModel(copy.deepcopy(model).to("meta"))
    lo, hi = crop, 4 * crop  # map(lo) is 1 wide, map(hi) >= 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        with torch.no_grad():
            width = dense(torch.empty(1, channels, mid, mid, device="meta")).shape[-1]
        lo, hi = (lo, mid) if width >= 2 else (mid, hi)
    return hi


def example_and_shapes(channels: int, crop: int, dense_min: int | None):
    """An example input and torch.export's dynamic shapes: the batch always; height and width from
    ``dense_min`` up when dense (None: not dense). The example's sizes are none torch.export would
    specialise on (1, or the minimum)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if dense_min is None:
        return torch.rand(2, channels, crop, crop), ({0: batch},)
    h = torch.export.Dim("height", min=dense_min, max=MAX_SIDE)
    w = torch.export.Dim("width", min=dense_min, max=MAX_SIDE)
    return torch.rand(2, channels, 2 * dense_min + 3, 2 * dense_min + 5), ({0: batch, 2: h, 3: w},)
