"""The one counter-based generator (``minwa.utils.counter_rng``): the augmenter's stream pinned bit for
bit, numpy and torch giving the same words, and the loader's crop drawn from it."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
from data_fixtures import photo_folder

from minwa.augment import Augmenter, preset_config
from minwa.augment.mix import MIX_STREAMS
from minwa.augment.params import N_STREAMS, streams_for
from minwa.data import DataConfig, build_loader, open_dataset, pack
from minwa.data import loader as loader_module
from minwa.data.loader import RRC_STREAMS
from minwa.utils import counter_rng as rng

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


def test_numpy_and_torch_give_the_same_words():
    torch_words = rng.stream_bits(torch.tensor(INDICES), EPOCH, SEED, [0, 5, 64, 67])
    numpy_words = rng.stream_bits(np.array(INDICES), EPOCH, SEED, [0, 5, 64, 67])
    assert isinstance(numpy_words, np.ndarray) and np.array_equal(torch_words.numpy(), numpy_words)
    assert np.array_equal(rng.uniform(torch_words).numpy(), rng.uniform(numpy_words))
    if torch.cuda.is_available():
        assert torch.equal(rng.stream_bits(torch.tensor(INDICES, device="cuda"), EPOCH, SEED, [0, 5, 64, 67]).cpu(),
                           torch_words)


def test_words_are_uniform_and_keyed_by_every_part():
    u = rng.uniform(rng.stream_bits(np.arange(10_000), 0, 0, 1))[:, 0]
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    base = rng.stream_bits(np.arange(100), 0, 0, 1)
    for other in (rng.stream_bits(np.arange(100), 1, 0, 1), rng.stream_bits(np.arange(100), 0, 1, 1),
                  rng.stream_bits(np.arange(100), 0, 0, [1]), rng.stream_bits(np.arange(1, 101), 0, 0, 1)):
        assert (other != base).mean() > 0.99


def test_the_loader_and_the_augmenter_draw_from_disjoint_streams():
    augmenter = set(streams_for(preset_config("deepimage", pca_lighting=0.1, erase=0.3)).ids)
    assert max(augmenter) < N_STREAMS <= 64 <= min(RRC_STREAMS) and len(set(RRC_STREAMS)) == 4
    assert max(RRC_STREAMS) < 128 <= min(MIX_STREAMS) and max(MIX_STREAMS) < 192


def test_the_loaders_crop_comes_from_the_shared_generator(tmp_path, monkeypatch):
    """Every random-resized crop the loader cuts is keyed by (data seed, epoch, sample index) and drawn
    by ``crop_uniforms``, which is the shared generator called directly on the loader's streams."""
    assert np.array_equal(loader_module.crop_uniforms(rng.Streams(RRC_STREAMS), 9, 2, 123),
                          rng.uniform(rng.stream_bits([123], 2, 9, RRC_STREAMS))[0])
    photo_folder(tmp_path / "src", per_class=4)
    pack(tmp_path / "src", tmp_path / "shards", shard_size=7, workers=1, progress=False)
    keys = []

    def spy(streams, seed, epoch, i):
        keys.append((seed, epoch, i))
        return rng.uniform(rng.stream_bits([i], epoch, seed, RRC_STREAMS))[0]

    monkeypatch.setattr(loader_module, "crop_uniforms", spy)
    cfg = DataConfig(batch_size=4, crop=16, random_resized_crop=True, workers=0, seed=9)
    loader = build_loader(cfg, open_dataset(tmp_path / "shards"), train=True, epoch=2)
    indices = torch.cat([b.indices for b in loader]).tolist()
    assert indices and keys == [(9, 2, i) for i in indices]
