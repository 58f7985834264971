"""The order of samples: one permutation per (seed, epoch), cut into global batches, then into ranks.

This module is the only place that decides which sample goes where, so that the sequence of global
batches is the same whatever the number of ranks or worker processes:

- ``epoch_permutation(n, seed, epoch)``: the global order of an epoch (train mode); eval mode uses
  ``arange(n)``.
- global batch ``b`` = ``order[b*B:(b+1)*B]`` (``B`` = the global batch size).
- rank ``r`` of ``W`` gets the contiguous slice ``rank_bounds(len(batch), r, W)`` of every global batch,
  so 1, 2 or 4 ranks together see exactly the same global batches.
- within a rank, worker ``w`` of ``K`` decodes batches ``b`` with ``(b - start) % K == w``
  (``worker_batches``); batches are handed over in order, so the output never depends on ``K``.
- a damaged sample skipped (``data.on_bad_sample = "skip"``) gives its place to the next good sample of
  its global batch, wrapping around (``replacements``, ``substitute``): a rule of the global batch alone,
  so batches stay the same size and the same for any number of ranks, workers or path.

Per-sample random numbers (the random-resized-crop box) are not drawn here but from
``minwa.utils.counter_rng``, the generator the augmenter uses, keyed by (seed, epoch, sample index,
stream): no generator state to carry between workers or ranks.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_ORDER_DOMAIN = 0x6D696E7761  # "minwa": keeps this stream apart from other users of the same seed


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The global order of samples for ``epoch`` (int64); the same on every rank, worker and machine."""
    ss = np.random.SeedSequence([int(seed) & _MASK64, int(epoch) & _MASK64, _ORDER_DOMAIN])
    # int64 already where numpy's intp is: astype would copy it (14.2 million samples: 114 MB more)
    return np.random.Generator(np.random.PCG64(ss)).permutation(int(n)).astype(np.int64, copy=False)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    return epoch_permutation(n, seed, epoch) if shuffle else np.arange(int(n), dtype=np.int64)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def global_batch(order: np.ndarray, b: int, batch_size: int) -> np.ndarray:
    return order[b * batch_size : (b + 1) * batch_size]


def rank_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous part of a global batch of ``size`` samples.

    Parts differ by at most one sample when ``size`` is not a multiple of ``world_size`` (the last,
    short batch of an eval epoch).
    """
    return size * rank // world_size, size * (rank + 1) // world_size


def rank_slice(batch: np.ndarray, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Rank's part of a global batch (sample indices)."""
    return batch[slice(*rank_bounds(len(batch), rank, world_size))]


def rank_batch(order: np.ndarray, b: int, batch_size: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Sample indices of rank's slice of global batch ``b``."""
    return rank_slice(global_batch(order, b, batch_size), rank, world_size)


def rank_epoch(order: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Rank's part of every full global batch of an epoch, one row per batch: row ``b`` is
    ``rank_batch(order, b, ...)``. A strided view of ``order`` (no copy): every full batch has the same
    ``rank_bounds``, so a rank's part of the epoch is a column block of the batches laid out as rows;
    1,024 ranks' parts of a 14.2-million-sample epoch take one view each, not 443,000 slices."""
    nb = len(order) // batch_size
    lo, hi = rank_bounds(batch_size, rank, world_size)
    return order[: nb * batch_size].reshape(nb, batch_size)[:, lo:hi]


def replacements(size: int, position: int) -> list[int]:
    """The positions whose samples may take the place of a damaged sample at ``position`` of a global
    batch of ``size``, in the order they are tried: the ones after it, then from the start."""
    return [*range(position + 1, size), *range(position)]


def substitute(batch: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``batch`` (sample indices) with every sample marked in ``bad`` (a bool per sample of the data set)
    replaced by the first good one of its ``replacements``; ``ValueError`` when every sample is bad."""
    is_bad = bad[batch]
    if not is_bad.any():
        return batch
    if is_bad.all():
        raise ValueError("every sample of the batch is damaged")
    out = batch.copy()
    for p in np.flatnonzero(is_bad):
        out[p] = batch[next(q for q in replacements(len(batch), int(p)) if not is_bad[q])]
    return out


def worker_batches(start: int, stop: int, worker: int, num_workers: int) -> range:
    """The batch numbers in [start, stop) that worker ``worker`` of ``num_workers`` decodes."""
    return range(start + worker, stop, max(1, num_workers))

