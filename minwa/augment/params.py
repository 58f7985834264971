"""Per-sample augmentation parameters, drawn from the counter-based generator.

Every random choice has its own fixed stream number, so switching one transform on or off never changes
the draws of another, and sample ``i`` gets the same parameters in any batch, worker, rank or device.
All Table 1 choices are drawn as integers (exact on every device); only their conversion to angles,
coefficients and offsets is floating point.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from minwa.augment.config import AugmentConfig
from minwa.utils import counter_rng as rng

# stream numbers: fixed forever, so old runs stay reproducible when transforms are added (0-63 are the
# augmenter's: minwa.utils.counter_rng)
S_CROP_Y, S_CROP_X, S_SHIFT_Y, S_SHIFT_X, S_FLIP = 0, 1, 2, 3, 4
S_ROT_GATE, S_ROT = 5, 6
S_LENS_GATE, S_LENS_KIND, S_LENS_DEG = 7, 8, 9
S_CAST_GATE, S_CAST = 10, 13  # three streams each (R, G, B)
S_VIG_GATE, S_VIG_STRENGTH, S_VIG_RADIUS = 16, 17, 18
S_PCA = 19  # six streams: two uniforms per Box-Muller normal, three normals
S_ERASE_GATE, S_ERASE = 25, 26  # four streams: y, x, height, width
N_STREAMS = 30

LENS_KINDS = ("barrel", "pincushion", "stretch_h", "stretch_v")


@dataclasses.dataclass
class AugmentParams:
    """One batch of per-sample parameters (all tensors have the batch as first dimension).

    Geometry is expressed in input pixels: ``oy, ox`` is the top-left corner of the ``out``-sized window
    (crop offset plus translation; may leave the image when translating). Photometric values are in
    grey levels of the 0..255 image.
    """

    oy: torch.Tensor  # int64 window top
    ox: torch.Tensor  # int64 window left
    flip: torch.Tensor  # bool, horizontal flip
    angle: torch.Tensor  # float32 radians (0 = none)
    radial: torch.Tensor  # float32 k of v <- v (1 + k |v|^2): > 0 barrel, < 0 pincushion
    stretch_x: torch.Tensor  # float32 factor the output is stretched by horizontally (1 = none)
    stretch_y: torch.Tensor  # float32 vertical stretch factor
    offset: torch.Tensor  # float32 (N, 3) per-channel additive change: colour cast + PCA lighting
    vig_strength: torch.Tensor  # float32 brightness lost at the corners (0 = no vignette)
    vig_radius: torch.Tensor  # float32 where darkening starts, fraction of the centre-to-corner distance
    erase: torch.Tensor  # int64 (N, 4): y0, x0, y1, x1 of the erased box in output pixels (empty = none)

    @property
    def integer_geometry(self) -> bool:
        """True when every sample is a pure integer crop (+ flip): the warp is an exact gather."""
        return bool((self.angle == 0).all() and (self.radial == 0).all() and (self.stretch_x == 1).all()
                    and (self.stretch_y == 1).all())

    def to(self, device) -> "AugmentParams":
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def streams_for(cfg: AugmentConfig) -> rng.Streams:
    """The streams ``cfg`` draws from (hashing only those keeps light presets cheap); an augmenter
    holds them, with their words on each device it has met."""
    use = [S_CROP_Y, S_CROP_X, S_SHIFT_Y, S_SHIFT_X, S_FLIP] if (cfg.random_crop or cfg.translate or cfg.flip) else []
    if cfg.rotation > 0:
        use += [S_ROT_GATE, S_ROT]
    if cfg.lens:
        use += [S_LENS_GATE, S_LENS_KIND, S_LENS_DEG]
    if cfg.color_cast:
        use += [S_CAST_GATE + c for c in range(3)] + [S_CAST + c for c in range(3)]
    if cfg.vignette:
        use += [S_VIG_GATE, S_VIG_STRENGTH, S_VIG_RADIUS]
    if cfg.pca_lighting > 0:
        use += list(range(S_PCA, S_PCA + 6))
    if cfg.erase > 0:
        use += [S_ERASE_GATE] + [S_ERASE + j for j in range(4)]
    return rng.Streams(tuple(use) or (S_FLIP,))


class _Bits:
    """``bits[:, stream]`` over the hashed subset of streams (same words as hashing all of them)."""

    def __init__(self, words: torch.Tensor, streams: rng.Streams):
        self.words, self.col = words, {s: j for j, s in enumerate(streams.ids)}
        self.n, self.device = words.shape[0], words.device

    def __getitem__(self, key):
        _, stream = key
        return self.words[:, self.col[stream]]


def identity_params(n: int, in_hw: tuple[int, int], out: int, device="cpu") -> AugmentParams:
    """Parameters that change nothing: the centre crop, as the eval path takes it."""
    h, w = in_hw
    z = torch.zeros(n, device=device)
    return AugmentParams(
        oy=torch.full((n,), (h - out) // 2, dtype=torch.int64, device=device),
        ox=torch.full((n,), (w - out) // 2, dtype=torch.int64, device=device),
        flip=torch.zeros(n, dtype=torch.bool, device=device),
        angle=z.clone(), radial=z.clone(), stretch_x=z + 1, stretch_y=z + 1,
        offset=torch.zeros(n, 3, device=device), vig_strength=z.clone(), vig_radius=z.clone(),
        erase=torch.zeros(n, 4, dtype=torch.int64, device=device),
    )


def sample_params(cfg: AugmentConfig, indices: torch.Tensor, epoch: int, seed: int, in_hw: tuple[int, int],
                  out: int, pca: tuple[torch.Tensor, torch.Tensor] | None = None,
                  streams: rng.Streams | None = None) -> AugmentParams:
    """Draw the parameters of samples ``indices`` for ``epoch`` under ``seed`` (on ``indices.device``).

    ``pca`` is ``(eigvals, eigvecs)`` of the pixel covariance on the 0..1 scale (AlexNet's convention;
    eigenvectors in columns), needed when ``cfg.pca_lighting`` > 0. ``streams``: ``streams_for(cfg)``,
    made here when not given.
    """
    h, w = in_hw
    streams = streams or streams_for(cfg)
    bits = _Bits(streams.bits(indices, epoch, seed), streams)
    n, dev = bits.n, bits.device
    p = identity_params(n, in_hw, out, dev)

    # cropping: offsets in {0 .. S-C-1} (Table 1: 288^2 for 224 of 512); translation moves the window
    if cfg.random_crop:
        if h > out:
            p.oy = rng.choice(bits[:, S_CROP_Y], h - out)
        if w > out:
            p.ox = rng.choice(bits[:, S_CROP_X], w - out)
    if cfg.translate > 0:
        t = cfg.translate
        p.oy = p.oy + rng.choice(bits[:, S_SHIFT_Y], 2 * t + 1) - t
        p.ox = p.ox + rng.choice(bits[:, S_SHIFT_X], 2 * t + 1) - t
    if cfg.flip:
        p.flip = rng.bernoulli(bits[:, S_FLIP], 0.5)

    # rotation: +-1 .. +-R degrees
    if cfg.rotation > 0:
        c = rng.choice(bits[:, S_ROT], 2 * cfg.rotation)
        deg = ((c >> 1) + 1) * (1 - 2 * (c & 1))
        gate = rng.bernoulli(bits[:, S_ROT_GATE], cfg.p_rotation)
        p.angle = torch.where(gate, deg.to(torch.float32) * (math.pi / 180.0), p.angle)

    # lens: 4 kinds x N degrees
    if cfg.lens:
        kind = rng.choice(bits[:, S_LENS_KIND], len(LENS_KINDS))
        level = (rng.choice(bits[:, S_LENS_DEG], cfg.lens_degrees) + 1).to(torch.float32) / cfg.lens_degrees
        gate = rng.bernoulli(bits[:, S_LENS_GATE], cfg.p_lens)
        k = level * cfg.lens_max
        s = 1.0 + level * cfg.stretch_max
        p.radial = torch.where(gate & (kind == 0), k, torch.where(gate & (kind == 1), -k, p.radial))
        p.stretch_x = torch.where(gate & (kind == 2), s, p.stretch_x)
        p.stretch_y = torch.where(gate & (kind == 3), s, p.stretch_y)

    # colour cast: each channel with probability 1/2, by an integer in [-r, r]
    if cfg.color_cast:
        r = cfg.cast_range
        gates = torch.stack([rng.bernoulli(bits[:, S_CAST_GATE + c], 0.5) for c in range(3)], 1)
        vals = torch.stack([rng.choice(bits[:, S_CAST + c], 2 * r + 1) - r for c in range(3)], 1)
        p.offset = p.offset + torch.where(gates, vals, 0).to(torch.float32)

    # AlexNet PCA lighting: eigvecs @ (alpha * eigvals), alpha ~ N(0, sigma)
    if cfg.pca_lighting > 0 and pca is not None:
        eigvals, eigvecs = (t.to(dev, torch.float32) for t in pca)
        k = eigvals.shape[0]
        alpha = torch.stack([rng.normal(bits[:, S_PCA + 2 * j], bits[:, S_PCA + 2 * j + 1]) for j in range(k)], 1)
        shift = ((alpha * cfg.pca_lighting * eigvals) @ eigvecs.T) * 255.0  # (N, channels), grey levels
        p.offset[:, : shift.shape[1]] += shift

    # vignetting: strength levels x radii
    if cfg.vignette:
        gate = rng.bernoulli(bits[:, S_VIG_GATE], cfg.p_vignette)
        strength = (rng.choice(bits[:, S_VIG_STRENGTH], cfg.vignette_strengths) + 1).to(torch.float32)
        strength = strength * (cfg.vignette_max / cfg.vignette_strengths)
        radii = max(cfg.vignette_radii - 1, 1)
        radius = rng.choice(bits[:, S_VIG_RADIUS], cfg.vignette_radii).to(torch.float32) * (cfg.vignette_max_radius / radii)
        p.vig_strength = torch.where(gate, strength, p.vig_strength)
        p.vig_radius = torch.where(gate, radius, p.vig_radius)

    # random erasing (cutout): one box per image
    if cfg.erase > 0:
        gate = rng.bernoulli(bits[:, S_ERASE_GATE], cfg.erase)
        most = max(1, int(round(cfg.erase_max * out)))
        bh = rng.choice(bits[:, S_ERASE + 2], most) + 1
        bw = rng.choice(bits[:, S_ERASE + 3], most) + 1
        y0 = rng.choice(bits[:, S_ERASE], out)
        x0 = rng.choice(bits[:, S_ERASE + 1], out)
        box = torch.stack([y0, x0, (y0 + bh).clamp(max=out), (x0 + bw).clamp(max=out)], 1)
        p.erase = torch.where(gate[:, None], box, p.erase)
    return p
