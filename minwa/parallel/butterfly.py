"""The paper's butterfly synchronisation, written literally as a DDP communication hook.

Deep Image §3.1: each of N workers reduces the 1/N-th slice of the gradient it owns (reduce-scatter),
then the summed slices are exchanged so every worker holds the whole sum (all-gather). DDP hands the hook
one flat bucket at a time while backward is still running, so communication overlaps computation.
(``fsdp`` does the same exchange but keeps the slices sharded until the next forward — the lazy update.)

The hook SUMS across ranks (no division by N): minwa's loss per rank is already "sum over the rank's
samples / global batch", so the sum is the single-process gradient. gloo has no ``get_future`` for
reduce-scatter, so there the hook waits and returns a completed future; on NCCL it chains futures.
"""

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _padded(flat: torch.Tensor, world: int) -> torch.Tensor:
    pad = (-flat.numel()) % world
    return torch.cat([flat, flat.new_zeros(pad)]) if pad else flat


def butterfly_hook(group, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:  # no __future__ annotations: DDP checks them
    """Reduce-scatter the bucket (each rank sums its slice), then all-gather the slices back."""
    flat = bucket.buffer()
    world = dist.get_world_size(group)
    padded = _padded(flat, world)
    part = padded.new_empty(padded.numel() // world)
    gathered = padded if padded is not flat else torch.empty_like(padded)
    n = flat.numel()

    if dist.get_backend(group) == "nccl":
        rs = _reduce_scatter(part, padded, op=dist.ReduceOp.SUM, group=group, async_op=True)

        def all_gather(_):  # NCCL collectives are stream-ordered: this does not block the CPU
            _all_gather(gathered, part, group=group)
            return gathered[:n].view_as(flat)

        return rs.get_future().then(all_gather)

    _reduce_scatter(part, padded, op=dist.ReduceOp.SUM, group=group)
    _all_gather(gathered, part, group=group)
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(gathered[:n].view_as(flat))
    return fut


def wrap_butterfly(model: torch.nn.Module, dims, bucket_mb: float) -> torch.nn.Module:
    ids = [dims.device.index] if dims.device.type == "cuda" else None
    ddp = DDP(model, device_ids=ids, bucket_cap_mb=bucket_mb)
    ddp.register_comm_hook(state=None, hook=butterfly_hook)
    return ddp
