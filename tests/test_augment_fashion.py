"""The `fashion` preset path (flip + pad-and-crop translation + normalisation) and eval, on Fashion-MNIST."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minwa.augment import AugmentConfig, Augmenter, apply_preset, identity_params
from minwa.augment import geometry
from minwa.errors import MinwaError

MEAN, STD = 0.2860, 0.3530


@pytest.fixture(scope="module")
def fashion(fashion_dir) -> torch.Tensor:
    path = next(fashion_dir.glob("train-images-idx3-ubyte*"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.from_numpy(data[:300].copy())


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - MEAN) / STD


def test_fashion_preset_fields():
    cfg = apply_preset(AugmentConfig(preset="fashion"))
    assert cfg.flip and cfg.translate == 2 and cfg.fill == "zeros"
    assert not (cfg.color_cast or cfg.vignette or cfg.lens or cfg.rotation or cfg.pca_lighting)
    # a user's own value wins over the preset's
    assert apply_preset(AugmentConfig(preset="fashion", translate=4)).translate == 4


def test_eval_is_normalisation_of_the_image(fashion):
    aug = Augmenter(AugmentConfig(preset="fashion"), 28, MEAN, STD)
    torch.testing.assert_close(aug.eval(fashion), _norm(fashion), rtol=0, atol=1e-6)


def test_train_output_is_a_shifted_maybe_flipped_zero_padded_image(fashion):
    """Each output equals the image padded with 2 black pixels, cut at its (dy, dx), flipped if drawn."""
    aug = Augmenter(AugmentConfig(preset="fashion"), 28, MEAN, STD)
    x = fashion[:64]
    idx = torch.arange(1000, 1064)
    y = aug(x, idx, epoch=3, seed=7)
    p = aug.params(x, idx, 3, 7)
    padded = F.pad(x, (2, 2, 2, 2))
    shifts, flips = set(), 0
    for n in range(len(x)):
        dy, dx = int(p.oy[n]), int(p.ox[n])  # window top-left: -2 .. 2
        assert -2 <= dy <= 2 and -2 <= dx <= 2
        want = padded[n, :, dy + 2 : dy + 30, dx + 2 : dx + 30]
        if p.flip[n]:
            want = want.flip(-1)
        torch.testing.assert_close(y[n], _norm(want)[0][None], rtol=0, atol=1e-6)
        shifts.add((dy, dx))
        flips += int(p.flip[n])
    assert len(shifts) > 10 and 15 < flips < 49  # the draws do vary


def test_flip_is_exact(fashion):
    aug = Augmenter(AugmentConfig(flip=True), 28, MEAN, STD)
    p = identity_params(8, (28, 28), 28)
    p.flip[:] = True
    assert torch.equal(aug.apply(fashion[:8], p), aug.eval(fashion[:8]).flip(-1))


def test_same_key_same_output_across_batch_sizes_and_orders(fashion):
    aug = Augmenter(AugmentConfig(preset="fashion"), 28, MEAN, STD)
    x, idx = fashion[:96], torch.arange(5000, 5096)
    whole = aug(x, idx, epoch=1, seed=11)
    parts = torch.cat([aug(x[i : i + 7], idx[i : i + 7], 1, 11) for i in range(0, 96, 7)])
    assert torch.equal(whole, parts)
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(0))
    assert torch.equal(aug(x[perm], idx[perm], 1, 11), whole[perm])
    # another epoch or seed draws differently
    assert not torch.equal(aug(x, idx, 2, 11), whole)
    assert not torch.equal(aug(x, idx, 1, 12), whole)


def test_integer_fast_path_matches_grid_sample(fashion):
    """The gather fast path gives what the general grid_sample warp gives for the same parameters."""
    for fill in ("zeros", "border", "reflect"):
        cfg = AugmentConfig(flip=True, translate=3, fill=fill)
        aug = Augmenter(cfg, 28, MEAN, STD)
        x, idx = fashion[:40], torch.arange(40)
        p = aug.params(x, idx, 0, 5)
        fast = aug.apply(x, p)
        slow = geometry.warp(x, p, 28, fill)
        torch.testing.assert_close(fast, (slow / 255 - MEAN) / STD, rtol=0, atol=1e-4)


def test_larger_input_random_crop(fashion):
    """A 20-pixel output of a 28-pixel image: crops at offsets 0..7, eval takes the centre."""
    aug = Augmenter(AugmentConfig(preset="none", flip=False), 20, MEAN, STD)
    torch.testing.assert_close(aug.eval(fashion[:4]), _norm(fashion[:4, :, 4:24, 4:24]), rtol=0, atol=1e-6)
    y = aug(fashion[:50], torch.arange(50), 0, 0)
    p = aug.params(fashion[:50], torch.arange(50), 0, 0)
    assert int(p.oy.min()) >= 0 and int(p.oy.max()) <= 7 and len(set(p.ox.tolist())) > 3
    n = 9
    oy, ox = int(p.oy[n]), int(p.ox[n])
    torch.testing.assert_close(y[n], _norm(fashion[n, :, oy : oy + 20, ox : ox + 20]), rtol=0, atol=1e-6)


def test_user_errors_are_minwa_errors(fashion):
    aug = Augmenter(AugmentConfig(preset="fashion"), 28)
    with pytest.raises(MinwaError):
        aug(fashion[:4].float(), torch.arange(4))
    with pytest.raises(MinwaError):
        Augmenter(AugmentConfig(preset="fashion"), 32)(fashion[:4], torch.arange(4))
    with pytest.raises(MinwaError):
        Augmenter(dataclasses.replace(AugmentConfig(), fill="mirror"), 28)
    with pytest.raises(MinwaError):
        apply_preset(AugmentConfig(preset="imagenet"))
