"""A counter-based random generator: the random numbers of a sample are a pure function of
(seed, epoch, sample index, stream).

Why not ``torch.Generator``: a stateful generator hands out numbers in call order, so a sample's
augmentation would depend on its position in the batch, the batch size, the worker and the device.
Hashing the key instead (a counter-based design, like Philox) gives every sample its own numbers
wherever and with whatever it is processed. The hash is Chris Wellons' ``lowbias32`` (a bijective
32-bit integer mixer with very low bias), computed on int64 tensors with 16-bit partial products so
that no intermediate overflows: the result is bit-identical on every device.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x, c: int):
    """``(x * c) mod 2**32`` for 0 <= x < 2**32 without int64 overflow (a tensor or a Python int)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x):
    """lowbias32 on a tensor of integers in [0, 2**32), or on one Python integer (exact either way)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    """``mix32`` of ``x mod 2**32`` in Python integers: the per-batch key derivation makes no tensor ops."""
    return mix32(x & _M32)


def stream_bits(indices: torch.Tensor, epoch: int, seed: int, streams) -> torch.Tensor:
    """Random 32-bit words (int64 in [0, 2**32)), shape ``(len(indices), len(streams))``.

    ``streams`` is a count (streams ``0 .. streams-1``) or a list of stream numbers. Word ``[n, j]``
    depends only on ``(seed, epoch, indices[n], stream j)``; the tensor lives on ``indices.device``.
    """
    key = _mix32_int(seed ^ _mix32_int((seed >> 32) + _GOLDEN))
    key = _mix32_int(key ^ _mix32_int(epoch + 2 * _GOLDEN))
    idx = indices.to(torch.int64).reshape(-1)
    h = mix32((idx & _M32) ^ key)
    h = mix32(h ^ mix32((idx >> 32) & _M32) ^ _mix32_int(key + 3 * _GOLDEN))
    ids = tuple(range(streams) if isinstance(streams, int) else streams)
    return mix32(h[:, None] ^ _lanes(ids, idx.device)[None, :])


_LANES: dict = {}


def _lanes(ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The mixed stream words, made once per (streams, device): building them from a Python list on a GPU
    is a blocking host-to-device copy, which would stall every batch."""
    key = (ids, str(device))
    if key not in _LANES:
        lanes = torch.tensor(ids, dtype=torch.int64)
        _LANES[key] = mix32((lanes * _GOLDEN + 0x632BE5AB) & _M32).to(device)
    return _LANES[key]


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1) from 32-bit words (24 bits of mantissa: exact in float32)."""
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def choice(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Integers uniform in [0, n) (int64) from 32-bit words, by exact integer arithmetic."""
    if not 0 < n < (1 << 31):
        raise ValueError(f"choice needs 0 < n < 2**31, got {n}")
    return (bits * n) >> 32


def bernoulli(bits: torch.Tensor, p: float) -> torch.Tensor:
    """Booleans true with probability ``p`` (to 2**-32) from 32-bit words."""
    return bits < int(round(p * (1 << 32)))


def normal(bits_a: torch.Tensor, bits_b: torch.Tensor) -> torch.Tensor:
    """Standard normal floats (Box-Muller) from two independent streams of words."""
    u1 = 1.0 - uniform(bits_a)  # (0, 1]: log is finite
    u2 = uniform(bits_b)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)
