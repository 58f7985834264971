"""The photometric half of the engine: colour cast + PCA lighting + vignette + clamp + normalisation.

All of it is one pass of in-place elementwise tensor operations over the warped batch (each sample's
per-channel offset and vignette mask broadcast over its pixels), so it runs unchanged on any device.
"""

from __future__ import annotations

import torch

from minwa.augment.params import AugmentParams


def vignette_mask(p: AugmentParams, out: int) -> torch.Tensor:
    """``(N, 1, out, out)`` brightness factors: 1 inside the sample's radius, falling smoothly to
    ``1 - strength`` at the corners. Radius is measured in output pixels as a fraction of the
    centre-to-corner distance, so the vignette belongs to the camera, not to the scene."""
    dev = p.vig_strength.device
    u = (torch.arange(out, device=dev, dtype=torch.float32) * 2 + 1) / out - 1
    rho = torch.sqrt((u[:, None] ** 2 + u[None, :] ** 2) * 0.5)  # 0 at the centre, ~1 at the corners
    r0 = p.vig_radius[:, None, None, None]
    t = ((rho - r0) / (1.0 - r0).clamp(min=1e-3)).clamp(0.0, 1.0)
    return 1.0 - p.vig_strength[:, None, None, None] * (t * t * (3.0 - 2.0 * t))


def normalise_factors(mean, std, channels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape (1, C, 1, 1) so that ``x * scale + shift == (x/255 - mean)/std``."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(-1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(-1)
    if mean.numel() == 1:
        mean = mean.expand(channels)
    if std.numel() == 1:
        std = std.expand(channels)
    if mean.numel() != channels or std.numel() != channels:
        raise ValueError(f"mean/std have {mean.numel()}/{std.numel()} values for {channels} channels")
    return (1.0 / (255.0 * std)).reshape(1, -1, 1, 1), (-mean / std).reshape(1, -1, 1, 1)


def apply(x: torch.Tensor, p: AugmentParams, scale: torch.Tensor, shift: torch.Tensor,
          offset: bool, vignette: bool, erase: bool) -> torch.Tensor:
    """In place on float ``x`` (N, C, H, W) in 0..255; returns the normalised batch.

    A 1-channel batch takes channel 0 (R) of the colour cast / PCA offset: on grey images both are a
    random brightness shift.
    """
    c = x.shape[1]
    if offset:
        x.add_(p.offset[:, :c, None, None])
    if vignette:
        x.mul_(vignette_mask(p, x.shape[-1]))
    if offset or vignette:
        x.clamp_(0.0, 255.0)
    x = torch.addcmul(shift, x, scale, out=x) if x.is_contiguous() else x * scale + shift
    return erase_(x, p) if erase else x


def erase_(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Random erasing in place on the normalised batch: the box becomes the mean (0)."""
    ar = torch.arange(x.shape[-1], device=x.device)
    e = p.erase
    inside_y = (ar[None, :] >= e[:, 0:1]) & (ar[None, :] < e[:, 2:3])
    inside_x = (ar[None, :] >= e[:, 1:2]) & (ar[None, :] < e[:, 3:4])
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x.mul_(keep[:, None].to(x.dtype))
