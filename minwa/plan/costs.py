"""Alpha-beta costs of collectives (latency per step + bytes / bandwidth), ring and tree, on a fabric of
nodes, and the few efficiencies that turn datasheet peaks into achieved rates.

Ring algorithms over n ranks, B = bytes of the whole tensor (NCCL's, nccl-tests ``PERFORMANCE.md``):
all-reduce 2(n-1)/n·B/bw + 2(n-1)·α; reduce-scatter and all-gather (n-1)/n·B/bw + (n-1)·α. Tree all-reduce
(NCCL's double binary tree): 2·B/bw + 2·⌈log2 n⌉·α, chosen over the ring when it is faster (small
messages on many ranks), as NCCL's tuner does. Only all-reduce has a tree in NCCL.

Bandwidth: a group inside one node runs at the intra-node link's rate; a group across nodes is limited
by the slower of the intra-node link and the node's NICs (NCCL builds one ring per NIC, each crossing
every node once), and a *strided* group (one rank per node, e.g. hybrid's FC replicas) shares the node's
NICs with the node's other GPUs, which run their own groups at the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minwa.plan.hardware import Link

# Achieved fraction of a link's data rate by NCCL on large messages (one constant for every link: NCCL's
# Simple protocol carries ~94% payload, less per-chunk synchronisation). Checked against nccl-tests in
# docs/BENCHMARKS.md §14, not fitted to them.
LINK_EFFICIENCY = 0.9
# Achieved fraction of memory bandwidth by elementwise kernels (STREAM-like copies reach 80-90% of HBM).
MEMORY_EFFICIENCY = 0.8


def ring_all_reduce(nbytes: float, n: int, bw: float, alpha: float) -> float:
    return 0.0 if n <= 1 else 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * alpha


def ring_reduce_scatter(nbytes: float, n: int, bw: float, alpha: float) -> float:
    return 0.0 if n <= 1 else (n - 1) / n * nbytes / bw + (n - 1) * alpha


ring_all_gather = ring_reduce_scatter  # the same traffic in the other direction


def tree_all_reduce(nbytes: float, n: int, bw: float, alpha: float) -> float:
    return 0.0 if n <= 1 else 2 * nbytes / bw + 2 * math.ceil(math.log2(n)) * alpha


@dataclass
class Fabric:
    """GPUs numbered node by node (``gpus_per_node`` consecutive ranks per node), as torchrun places them."""

    intra: Link
    inter: Link
    gpus_per_node: int
    nics_per_node: int

    def bandwidth(self, n: int, stride: int = 1) -> tuple[float, float]:
        """(bytes/s, α seconds) of a group of ``n`` ranks ``stride`` apart."""
        span = (n - 1) * stride + 1
        intra = self.intra.gbs * 1e9 * LINK_EFFICIENCY
        if span <= self.gpus_per_node:
            return intra, self.intra.latency_us * 1e-6
        nic = self.inter.gbs * 1e9 * LINK_EFFICIENCY * self.nics_per_node
        sharing = min(stride, self.gpus_per_node)  # groups of this stride crossing one node's NICs at once
        return min(intra, nic / sharing), max(self.inter.latency_us, self.intra.latency_us) * 1e-6

    def all_reduce(self, nbytes: float, n: int, stride: int = 1) -> float:
        bw, alpha = self.bandwidth(n, stride)
        return min(ring_all_reduce(nbytes, n, bw, alpha), tree_all_reduce(nbytes, n, bw, alpha))

    def reduce_scatter(self, nbytes: float, n: int, stride: int = 1) -> float:
        bw, alpha = self.bandwidth(n, stride)
        return ring_reduce_scatter(nbytes, n, bw, alpha)

    def all_gather(self, nbytes: float, n: int, stride: int = 1) -> float:
        bw, alpha = self.bandwidth(n, stride)
        return ring_all_gather(nbytes, n, bw, alpha)

    def all_to_all(self, nbytes: float, n: int, stride: int = 1) -> float:
        bw, alpha = self.bandwidth(n, stride)
        return ring_reduce_scatter(nbytes, n, bw, alpha)  # each rank sends (n-1)/n of its part
