"""Spreading one single-device model over ranks: data parallelism and model-data parallelism.

- :func:`init_distributed` -> :class:`ParallelDims` (rank, world size, device, strategy, meshes);
- :func:`parallelize` applies the strategy (``fsdp``, ``butterfly``, ``hybrid``, ``none``);
- :func:`full_state_dict`: the whole, unsharded weights on every rank;
- :func:`save_distributed` / :func:`load_distributed`: DCP checkpoints that reshard N -> M ranks;
- :func:`failure_guard`: a failed rank stops the job with its name instead of a hang;
- :func:`shutdown`: leave the process group (and end a torchrun worker cleanly).

Names are imported on first use, so that reading ``ParallelConfig`` does not pull in torch.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "full_state_dict": "minwa.parallel.checkpoint",
    "is_distributed_checkpoint": "minwa.parallel.checkpoint",
    "load_distributed": "minwa.parallel.checkpoint",
    "save_distributed": "minwa.parallel.checkpoint",
    "ParallelConfig": "minwa.parallel.config",
    "ParallelDims": "minwa.parallel.dims",
    "init_distributed": "minwa.parallel.dims",
    "shutdown": "minwa.parallel.dims",
    "parallelize": "minwa.parallel.parallelize",
    "failure_guard": "minwa.parallel.watchdog",
})
