"""Mixup and CutMix: batch-level mixing after the augmenter, with soft targets (off in the paper's recipes).

Each sample is mixed with its neighbour in the batch (positions 2k and 2k+1; an odd last sample keeps
its own image): mixup blends the two images, ``lam * x + (1 - lam) * partner``; CutMix pastes a box of
the partner covering ``1 - lam`` of the image. The target is ``lam * onehot(y) + (1 - lam) *
onehot(y_partner)`` (for CutMix ``lam`` is the area actually kept once the box is clipped at the edge),
and the trainer's cross-entropy takes it as class probabilities.

Every draw (mix or not, which of the two, ``lam`` ~ Beta(alpha, alpha), the box centre) is the sample's
own, from the counter RNG keyed by (seed, epoch, sample index), and pairs never span two ranks' parts of
the global batch (the trainer requires an even local batch on several ranks), so N ranks mix exactly as
one process does and a resumed run mixes as the straight run did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minwa.augment.config import AugmentConfig
from minwa.utils import counter_rng as rng

TRIES = 8  # Marsaglia-Tsang rejection tries per Gamma draw: all fail with probability < 0.05**8
MIX_STREAMS = tuple(range(128, 128 + 2 * (3 * TRIES + 1) + 4))  # counter-RNG streams 128.. (fixed forever)
_TINY = 1e-30


def gamma(words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Gamma(alpha, 1) per row from ``3 * TRIES + 1`` words per row (Marsaglia-Tsang; alpha < 1 boosted by
    ``U ** (1 / alpha)``); float64."""
    a = torch.where(alpha < 1, alpha + 1, alpha)
    d = a - 1.0 / 3
    c = 1.0 / torch.sqrt(9 * d)
    out, done = d.clone(), torch.zeros_like(d, dtype=torch.bool)
    for k in range(TRIES):
        z = rng.normal(words[:, 3 * k], words[:, 3 * k + 1]).double()
        u = rng.uniform(words[:, 3 * k + 2]).double().clamp_min(_TINY)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(_TINY)))
        out = torch.where(ok & ~done, d * v, out)
        done |= ok
    boost = rng.uniform(words[:, 3 * TRIES]).double().clamp_min(_TINY) ** (1 / alpha)
    return torch.where(alpha < 1, out * boost, out)


def beta_symmetric(words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Beta(alpha, alpha) per row, as G1 / (G1 + G2), from ``2 * (3 * TRIES + 1)`` words per row."""
    n = 3 * TRIES + 1
    g1, g2 = gamma(words[:, :n], alpha), gamma(words[:, n:2 * n], alpha)
    lam = g1 / (g1 + g2)
    return torch.where(torch.isfinite(lam), lam, torch.full_like(lam, 0.5))


def partners(n: int, device) -> torch.Tensor:
    """Each position's partner: 2k <-> 2k+1; an odd last one is its own."""
    p = torch.arange(n, device=device) ^ 1
    if n % 2:
        p[-1] = n - 1
    return p


class Mixer:
    """``mixer(x, labels, indices, epoch, seed) -> (x, target probabilities)``; build it only when
    ``cfg.mixup`` or ``cfg.cutmix`` is on (:func:`build_mixer`)."""

    def __init__(self, cfg: AugmentConfig, num_classes: int):
        self.mixup, self.cutmix, self.p = float(cfg.mixup), float(cfg.cutmix), float(cfg.p_mix)
        self.num_classes = num_classes
        self.streams = rng.Streams(MIX_STREAMS)

    def draws(self, indices: torch.Tensor, epoch: int, seed: int, size: tuple[int, int]):
        """Per sample: ``lam`` (1 = not mixed) and the CutMix box as a boolean mask (None without CutMix)."""
        words = self.streams.bits(indices, epoch, seed)
        nb = 2 * (3 * TRIES + 1)
        mixed = rng.bernoulli(words[:, nb], self.p)
        use_cut = (rng.bernoulli(words[:, nb + 1], 0.5) if self.mixup and self.cutmix
                   else torch.full_like(mixed, bool(self.cutmix)))
        alpha = torch.where(use_cut, self.cutmix or 1.0, self.mixup or 1.0).double()
        lam = beta_symmetric(words[:, :nb], alpha)
        lam = torch.where(mixed, lam, torch.ones_like(lam))
        if not self.cutmix:
            return lam, None
        h, w = size
        cut = torch.sqrt(1 - lam)  # the box's side as a fraction of the image's
        cy, cx = rng.uniform(words[:, nb + 2]).double() * h, rng.uniform(words[:, nb + 3]).double() * w
        y0, y1 = (cy - cut * h / 2).round().clamp(0, h), (cy + cut * h / 2).round().clamp(0, h)
        x0, x1 = (cx - cut * w / 2).round().clamp(0, w), (cx + cut * w / 2).round().clamp(0, w)
        rows = torch.arange(h, device=lam.device, dtype=torch.float64)
        cols = torch.arange(w, device=lam.device, dtype=torch.float64)
        box = (((rows >= y0[:, None]) & (rows < y1[:, None]))[:, :, None]
               & ((cols >= x0[:, None]) & (cols < x1[:, None]))[:, None, :])
        box &= (use_cut & mixed)[:, None, None]
        kept = 1 - box.flatten(1).double().mean(1)
        return torch.where(use_cut, kept, lam), box

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, epoch: int, seed: int):
        pair = partners(x.shape[0], x.device)
        lam, box = self.draws(indices.to(x.device), epoch, seed, tuple(x.shape[-2:]))
        partner = x[pair]
        blend = lam if box is None else torch.where(box.flatten(1).any(1), torch.ones_like(lam), lam)
        b = blend.to(x.dtype).view(-1, 1, 1, 1)
        out = b * x + (1 - b) * partner
        if box is not None:
            out = torch.where(box[:, None], partner, out)
        onehot = F.one_hot(labels, self.num_classes).to(torch.float32)
        lam32 = lam.to(torch.float32)[:, None]
        return out, lam32 * onehot + (1 - lam32) * onehot[pair]


def build_mixer(cfg: AugmentConfig, num_classes: int) -> Mixer | None:
    return Mixer(cfg, num_classes) if (cfg.mixup > 0 or cfg.cutmix > 0) else None
