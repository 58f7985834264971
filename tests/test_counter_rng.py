"""The one counter-based generator (``minwa.utils.counter_rng``): the augmenter's stream pinned bit for
bit, numpy and torch giving the same words, and the loader's crop drawn from it."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from minwa.augment import Augmenter, preset_config
from minwa.augment import counter_rng as rng
from minwa.augment.params import N_STREAMS

# keys that reach past 32 bits in the index and the seed
INDICES = [0, 1, 7, 1000, 2**31 + 5, 2**40 + 3, 59999]
SEED, EPOCH = 12345678901, 3


def _sha(t) -> str:
    a = t.contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (len(INDICES), 3, 40, 40), dtype=torch.uint8, generator=g)


def test_the_augmenters_words_are_pinned():
    """Recorded before the generator moved to minwa.utils: a change here changes every run's augmentation."""
    assert _sha(rng.stream_bits(torch.tensor(INDICES), EPOCH, SEED, N_STREAMS)) == "ee074ce9eca78416"


def test_the_augmenters_parameters_and_output_are_pinned():
    """The deepimage draws (integers exactly, floats to 1e-4: portable across CPUs) and the fashion
    preset's output (an exact gather + normalisation) for a fixed batch, recorded before the move."""
    x, idx = _batch(), torch.tensor(INDICES)
    p = Augmenter(preset_config("deepimage", pca_lighting=0.1, erase=0.3), 32, backend="torch").params(x, idx, 2, 7)
    fields = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    ints = torch.cat([v.reshape(len(idx), -1).to(torch.int64) for v in fields.values() if not v.is_floating_point()], 1)
    floats = torch.cat([v.reshape(len(idx), -1) for v in fields.values() if v.is_floating_point()], 1)
    assert _sha(ints) == "449a737cd429c320"
    assert _sha(torch.round(floats.double() * 1e4).to(torch.int64)) == "aca5905f4e7a1da3"
    assert _sha(Augmenter(preset_config("fashion"), 32, backend="torch")(x, idx, 2, 7)) == "3f3b093f5dfe19c6"
