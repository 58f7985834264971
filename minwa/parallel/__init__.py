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
           "save_distributed", "load_distributed"]


def __getattr__(name):  # checkpoint helpers import torch.distributed.checkpoint only when used
    if name in ("save_distributed", "load_distributed"):
        from minwa.parallel import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)
