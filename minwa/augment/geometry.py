"""The geometric half of the engine: crop window, translation, flip, rotation, lens distortion, stretch.

Two steps per batch, no per-sample Python:

1. ``gather_windows`` copies each sample's window (its crop, moved by its translation) out of the uint8
   batch with one ``torch.gather``; rows and columns that fall off the image are filled per ``fill``
   (reflect / border / zeros, and border for ``surround``). With ``fill="reflect"`` or ``"surround"`` the
   window keeps a margin of the surrounding scaled image, so that rotated and distorted corners show the
   real picture around the crop; only where the warp reaches past the *image's* edge is it mirrored
   (reflect) or its edge pixels repeated (surround). Mirroring about the crop's edge instead duplicated
   whatever sat at that edge (issue #16: a second, mirrored ladybird) although the real pixels were there.
2. ``warp`` maps each output pixel centre back into its window (flip and rotation as one 2x2 matrix, then
   radial distortion ``v <- v (1 + k|v|^2)`` or a per-axis stretch) and samples all samples with one
   bilinear ``grid_sample``. ``border`` / ``zeros`` have no margin: ``grid_sample``'s padding fills at the
   crop's edge (edge pixels repeated, or black).

When a batch has no rotation, distortion or stretch, the warp is the identity and step 1 (with the flip
folded into its column index) is the whole geometry: the exact integer fast path used by translation +
flip presets (``fashion``, ``alexnet``). It equals the ``grid_sample`` result up to float rounding of
the sampling coordinates (a test pins this).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minwa.augment.params import AugmentParams
# padding past the window: with a margin (reflect, surround) the window covers every reachable point, and
# "border" only settles float rounding at its very edge
_PADDING = {"surround": "border", "reflect": "border", "border": "border", "zeros": "zeros"}
MARGIN_FILLS = ("reflect", "surround")  # fills whose window keeps the surrounding image


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


def margin_for(cfg, out: int) -> int:
    """Pixels of surrounding image a ``reflect`` / ``surround`` window needs on each side, bounded over all
    parameters.

    A rotated unit square reaches ``cos a + sin a`` and radial distortion multiplies by at most
    ``1 + 2k`` (|v|^2 <= 2 at the corners); stretching only shrinks the source region.
    """
    if cfg.fill not in MARGIN_FILLS:
        return 0
    a = math.radians(cfg.rotation)
    reach = (math.cos(a) + math.sin(a)) * (1.0 + 2.0 * (cfg.lens_max if cfg.lens else 0.0))
    return int(math.ceil((reach - 1.0) * out / 2.0)) + 1


def gather_windows(images: torch.Tensor, p: AugmentParams, out: int, fill: str, margin: int = 0,
                   flip: bool = False) -> torch.Tensor:
    """uint8 ``(N, C, out + 2 margin, out + 2 margin)``: each sample's window, flipped if ``flip``."""
    n, c, h, w = images.shape
    size = out + 2 * margin
    ar = torch.arange(size, device=images.device)
    rows = p.oy[:, None] - margin + ar[None, :]  # (N, size)
    cols = p.ox[:, None] - margin + ar[None, :]
    if flip:
        cols = torch.where(p.flip[:, None], cols.flip(1), cols)
    edge = "border" if fill == "surround" else fill
    rows, vr = fold(rows, h, edge)
    cols, vc = fold(cols, w, edge)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, size * size)
    win = images.reshape(n, c, h * w).gather(2, index.expand(n, c, size * size)).reshape(n, c, size, size)
    # on a GPU, multiply always: asking whether every index was valid would be a host sync per batch
    if vr is not None and (images.device.type != "cpu" or not (bool(vr.all()) and bool(vc.all()))):
        win = win * (vr[:, :, None] & vc[:, None, :]).unsqueeze(1).to(win.dtype)
    return win


def sampling_grid(p: AugmentParams, out: int, margin: int = 0) -> torch.Tensor:
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
    scale = out / (out + 2 * margin)
    x = x * (f * (scale / p.stretch_x[:, None, None]))
    y = y * (f * (scale / p.stretch_y[:, None, None]))
    return torch.stack((x, y), dim=-1)


def warp(images: torch.Tensor, p: AugmentParams, out: int, fill: str, margin: int = 0) -> torch.Tensor:
    """float32 ``(N, C, out, out)`` in 0..255: crop + flip + rotation + distortion, one ``grid_sample``."""
    win = gather_windows(images, p, out, fill, margin).to(torch.float32)
    grid = sampling_grid(p, out, margin)
    return F.grid_sample(win, grid, mode="bilinear", padding_mode=_PADDING[fill], align_corners=False)
