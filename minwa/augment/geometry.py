"""The geometric half of the engine: crop window, translation, flip, rotation, lens distortion, stretch.

Two steps per batch, no per-sample Python:

1. ``gather_windows`` copies each sample's window (its crop, moved by its translation) out of the uint8
   batch with one ``torch.gather``; rows and columns that fall off the image are filled per ``fill``
   (reflect / border / zeros, and border for ``surround``).
2. ``warp`` maps each output pixel centre back to its source point (flip and rotation as one 2x2 matrix,
   then radial distortion ``v <- v (1 + k|v|^2)`` or a per-axis stretch) and samples all samples with one
   bilinear ``grid_sample``. With ``fill="reflect"`` or ``"surround"`` it samples the whole scaled image
   (no window), so rotated and distorted corners show the real picture around the crop, and only past
   the *image's* edge is it mirrored (reflect) or its edge pixels repeated (surround). Mirroring about
   the crop's edge instead duplicated whatever sat at that edge (issue #16: a second, mirrored ladybird)
   although the real pixels were there. ``border`` / ``zeros`` sample the window of step 1, and
   ``grid_sample``'s padding fills at the crop's edge (edge pixels repeated, or black).

When a batch has no rotation, distortion or stretch, the warp is the identity and step 1 (with the flip
folded into its column index) is the whole geometry: the exact integer fast path used by translation +
flip presets (``fashion``, ``alexnet``). It equals the ``grid_sample`` result up to float rounding of
the sampling coordinates (a test pins this).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minwa.augment.params import AugmentParams

IMAGE_FILLS = {"reflect": "reflection", "surround": "border"}  # fills at the image's edge: grid_sample padding


def fold(i: torch.Tensor, n: int, fill: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices into [0, n) for positions ``i`` on an axis of length ``n`` (+ a validity mask for zeros).

    Reflection is about the image's pixel edge (..., 1, 0 | 0, 1, ...). The CPU kernel's fold maps use
    this same function, so both paths fill identically.
    """
    if fill == "reflect":
        m = torch.remainder(i, 2 * n)
        return torch.where(m < n, m, 2 * n - 1 - m), None
    valid = ((i >= 0) & (i < n)) if fill == "zeros" else None
    return i.clamp(0, n - 1), valid


def gather_windows(images: torch.Tensor, p: AugmentParams, out: int, fill: str, flip: bool = False) -> torch.Tensor:
    """uint8 ``(N, C, out, out)``: each sample's window, flipped if ``flip``."""
    n, c, h, w = images.shape
    ar = torch.arange(out, device=images.device)
    rows = p.oy[:, None] + ar[None, :]  # (N, out)
    cols = p.ox[:, None] + ar[None, :]
    if flip:
        cols = torch.where(p.flip[:, None], cols.flip(1), cols)
    edge = "border" if fill == "surround" else fill
    rows, vr = fold(rows, h, edge)
    cols, vc = fold(cols, w, edge)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, out * out)
    win = images.reshape(n, c, h * w).gather(2, index.expand(n, c, out * out)).reshape(n, c, out, out)
    # on a GPU, multiply always: asking whether every index was valid would be a host sync per batch
    if vr is not None and (images.device.type != "cpu" or not (bool(vr.all()) and bool(vc.all()))):
        win = win * (vr[:, :, None] & vc[:, None, :]).unsqueeze(1).to(win.dtype)
    return win


def sampling_grid(p: AugmentParams, out: int) -> torch.Tensor:
    """``(N, out, out, 2)`` grid in the window's normalised coordinates (``grid_sample``, align_corners=False)."""
    dev = p.angle.device
    u = (torch.arange(out, device=dev, dtype=torch.float32) * 2 + 1) / out - 1  # pixel centres in [-1, 1]
    ux = torch.where(p.flip[:, None], -u[None, :], u[None, :])[:, None, :]  # (N, 1, W)
    uy = u[None, :, None]  # (1, H, 1)
    ca = torch.cos(p.angle)[:, None, None]
    sa = torch.sin(p.angle)[:, None, None]
    x = ca * ux - sa * uy  # (N, H, W)
    y = sa * ux + ca * uy
    k = p.radial[:, None, None]
    f = 1.0 + k * (x * x + y * y)
    x = x * (f / p.stretch_x[:, None, None])
    y = y * (f / p.stretch_y[:, None, None])
    return torch.stack((x, y), dim=-1)


def warp(images: torch.Tensor, p: AugmentParams, out: int, fill: str) -> torch.Tensor:
    """float32 ``(N, C, out, out)`` in 0..255: crop + flip + rotation + distortion, one ``grid_sample``."""
    grid = sampling_grid(p, out)
    if fill in IMAGE_FILLS:  # window coordinates -> the whole image's: pixel j + 1/2 of the window is ox + j + 1/2
        h, w = images.shape[-2:]
        half = out / 2
        gx = ((grid[..., 0] + 1) * half + p.ox[:, None, None]) * (2 / w) - 1
        gy = ((grid[..., 1] + 1) * half + p.oy[:, None, None]) * (2 / h) - 1
        return F.grid_sample(images.to(torch.float32), torch.stack((gx, gy), dim=-1), mode="bilinear",
                             padding_mode=IMAGE_FILLS[fill], align_corners=False)
    win = gather_windows(images, p, out, fill).to(torch.float32)
    return F.grid_sample(win, grid, mode="bilinear", padding_mode=fill, align_corners=False)
