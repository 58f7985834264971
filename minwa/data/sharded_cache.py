"""A decoded cache split across ranks: each rank holds every ``world``-th image, and each step the ranks
trade the images of the global batch with one ``all_to_all``.

Why: with ``data.cache=device`` every GPU otherwise holds the whole decoded set, so eight GPUs cache a set
no larger than one GPU's memory. Split, they cache eight times as much (Deep Image §3.1 keeps the data in
GPU memory; the paper's cluster spread it over its GPUs), at the price of moving about ``(world-1)/world``
of each batch over NVLink/the network: ~50 MB per step for 256 images at 256 px, a few milliseconds.

Owner of sample ``i``: rank ``i % world``, at local position ``i // world``. Each rank's slice of each
global batch is the same as without splitting (``minwa.data.order.rank_bounds``), so batches, resume and
the augmentation keys are unchanged: only where the pixels come from differs (tested against the
unsplit cache on 3 gloo processes). Every rank must take every batch (the exchange is a collective).
Damaged samples skipped (``data.on_bad_sample = "skip"``) are found by the rank that decodes them; ``union``
tells every rank, so that all replace them alike (``minwa.data.order.substitute``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from minwa.data import order as ordering
from minwa.data.workers import hwc, image_format


def owned(n: int, rank: int, world: int) -> np.ndarray:
    """The sample indices rank ``rank`` of ``world`` holds: ``rank, rank + world, ...``."""
    return np.arange(rank, n, world)


class ShardedCache:
    """This rank's part of the cache (``images``: the ``owned`` samples, N_r x C x H x W uint8, in the
    batches' memory layout) and the exchange that assembles this rank's slice of a global batch."""

    def __init__(self, images: torch.Tensor, rank: int, world: int, group=None):
        self.images, self.rank, self.world, self.group = images, rank, world, group

    def batch(self, global_batch: np.ndarray) -> torch.Tensor:
        """This rank's slice of ``global_batch`` (sample indices of the whole batch, in order) as uint8
        images on the cache's device; a collective: every rank calls it with the same batch."""
        W, r = self.world, self.rank
        slices = [ordering.rank_slice(global_batch, d, W) for d in range(W)]
        # what I send to rank d: the samples of d's slice that I own, in d's order
        send_local = [s[s % W == r] // W for s in slices]
        dev = self.images.device
        send_idx = torch.from_numpy(np.concatenate(send_local)).to(dev)
        send = hwc(self.images).index_select(0, send_idx)  # N x H x W x C, dense
        mine = slices[r]
        owner = mine % W
        recv_counts = [int((owner == s).sum()) for s in range(W)]
        recv = torch.empty((len(mine), *send.shape[1:]), dtype=torch.uint8, device=dev)
        dist.all_to_all_single(recv, send, output_split_sizes=recv_counts,
                               input_split_sizes=[len(x) for x in send_local], group=self.group)
        # recv is grouped by source rank, each group in my order: put every image back in its place
        where = torch.from_numpy(np.concatenate([np.nonzero(owner == s)[0] for s in range(W)])).to(dev)
        c = self.images.shape[1]
        out = torch.empty((len(mine), *self.images.shape[1:]), dtype=torch.uint8, device=dev,
                          memory_format=image_format(c))
        hwc(out).index_copy_(0, where, recv)  # a view: writes into out, whatever its layout
        return out

    def union(self, mask: np.ndarray) -> np.ndarray:
        """The element-wise OR of every rank's ``mask`` (one bool per sample of the data set); a collective."""
        t = torch.from_numpy(mask.astype(np.uint8)).to(self.images.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t.cpu().numpy().astype(bool)
