"""minwa's one per-sample random generator: a sample's random numbers are a pure function of
(seed, epoch, sample index, stream), for the loader's crop box (numpy, in worker processes) and the
augmenter's draws (torch, on any device).

Why not ``torch.Generator`` or ``np.random``: a stateful generator hands out numbers in call order, so a
sample's draw would depend on its position in the batch, the batch size, the worker, the rank and the
device, and a resume would have to carry its state. Hashing the key instead (a counter-based design,
like Philox) gives every sample its own numbers wherever it is processed. The hash is Chris Wellons'
``lowbias32`` (a bijective 32-bit mixer with very low bias), computed on int64 with 16-bit partial
products so that no intermediate overflows: the words are bit-identical on every device and in numpy.

Stream numbers say what a word is for (its purpose) and are fixed forever, so that old runs stay
reproducible: 0-63 belong to the augmenter (``minwa.augment.params``), 64-127 to the loader
(``minwa.data.loader``), 128-191 to batch mixing (``minwa.augment.mix``).
"""

from __future__ import annotations

import numpy as np
import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x, c: int):
    """``(x * c) mod 2**32`` for 0 <= x < 2**32 without int64 overflow (tensor, array or Python int)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x):
    """lowbias32 of integers in [0, 2**32): an int64 tensor or numpy array, or one Python int (exact)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _key(seed: int, epoch: int) -> int:
    """The (seed, epoch) word, in Python integers: deriving it launches no tensor op."""
    key = mix32((seed ^ mix32(((seed >> 32) + _GOLDEN) & _M32)) & _M32)
    return mix32((key ^ mix32((epoch + 2 * _GOLDEN) & _M32)) & _M32)


class Streams:
    """A fixed set of stream numbers and their mixed words, kept per device by the object that draws
    (building them from a Python list on a GPU is a blocking host-to-device copy each batch)."""

    def __init__(self, streams):
        self.ids = tuple(range(streams) if isinstance(streams, int) else streams)
        self._lanes: dict = {}

    def _lanes_for(self, device):
        """The stream words on ``device`` (None: a numpy array)."""
        key = None if device is None else str(device)
        if key not in self._lanes:
            lanes = mix32((np.asarray(self.ids, dtype=np.int64) * _GOLDEN + 0x632BE5AB) & _M32)
            self._lanes[key] = lanes if device is None else torch.from_numpy(lanes).to(device)
        return self._lanes[key]

    def bits(self, indices, epoch: int, seed: int):
        """Random 32-bit words (int64 in [0, 2**32)), shape ``(len(indices), len(self.ids))``.

        Word ``[n, j]`` depends only on ``(seed, epoch, indices[n], self.ids[j])``. A torch tensor of
        indices gives a tensor on its device; anything else (a numpy array, a list) a numpy array.
        """
        key = _key(int(seed), int(epoch))
        if isinstance(indices, torch.Tensor):
            idx = indices.to(torch.int64).reshape(-1)
            lanes = self._lanes_for(idx.device)
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            lanes = self._lanes_for(None)
        h = mix32((idx & _M32) ^ key)
        h = mix32(h ^ mix32((idx >> 32) & _M32) ^ mix32((key + 3 * _GOLDEN) & _M32))
        return mix32(h[:, None] ^ lanes[None, :])


def stream_bits(indices, epoch: int, seed: int, streams):
    """``Streams(streams).bits(indices, epoch, seed)`` for a one-off draw; ``streams`` is a count
    (streams ``0 .. streams-1``) or a list of stream numbers."""
    return Streams(streams).bits(indices, epoch, seed)


def uniform(bits):
    """Floats in [0, 1) from 32-bit words (24 bits of mantissa: exact in float32); tensor or array."""
    top = bits >> 8
    top = top.to(torch.float32) if isinstance(top, torch.Tensor) else top.astype(np.float32)
    return top * (1.0 / (1 << 24))


def choice(bits, n: int):
    """Integers uniform in [0, n) (int64) from 32-bit words, by exact integer arithmetic."""
    if not 0 < n < (1 << 31):
        raise ValueError(f"choice needs 0 < n < 2**31, got {n}")
    return (bits * n) >> 32


def bernoulli(bits, p: float):
    """Booleans true with probability ``p`` (to 2**-32) from 32-bit words."""
    return bits < int(round(p * (1 << 32)))


def normal(bits_a: torch.Tensor, bits_b: torch.Tensor) -> torch.Tensor:
    """Standard normal floats (Box-Muller) from two independent streams of words (torch only: the
    augmenter's PCA lighting is its one user)."""
    u1 = 1.0 - uniform(bits_a)  # (0, 1]: log is finite
    u2 = uniform(bits_b)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)
