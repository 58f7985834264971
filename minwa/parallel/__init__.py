"""Spreading one single-device model over ranks: data parallelism and model-data parallelism.

- :func:`init_distributed` -> :class:`ParallelDims` (rank, world size, device, strategy, meshes);
- :func:`parallelize` applies the strategy (``fsdp``, ``butterfly``, ``hybrid``, ``none``);
- :func:`save_distributed` / :func:`load_distributed`: DCP checkpoints that reshard N -> M ranks;
- :func:`failure_guard`: a failed rank stops the job with its name instead of a hang;
- :func:`shutdown`: leave the process group (and end a torchrun worker cleanly).
"""

from minwa.parallel.config import ParallelConfig
from minwa.parallel.dims import ParallelDims, init_distributed, shutdown
from minwa.parallel.parallelize import parallelize
from minwa.parallel.watchdog import failure_guard

__all__ = ["ParallelConfig", "ParallelDims", "init_distributed", "parallelize", "shutdown", "failure_guard",
           "full_state_dict", "save_distributed", "load_distributed", "is_distributed_checkpoint"]


def full_state_dict(model, dims=None) -> dict:
    """The whole, unsharded state dict on CPU with single-device names, on every rank (a collective when
    distributed: every rank must call it). Works for fsdp, butterfly (DDP) and hybrid (DTensor FC)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.tensor import DTensor

    model = getattr(model, "_orig_mod", model)
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in sd.items()}


def __getattr__(name):  # checkpoint helpers import torch.distributed.checkpoint only when used
    if name in ("save_distributed", "load_distributed", "is_distributed_checkpoint"):
        from minwa.parallel import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)
