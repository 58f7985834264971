"""The parallel layout of a run: who this process is, how many there are, and the device meshes.

``ParallelDims`` is the one place with rank arithmetic (torchtitan's ``parallel_dims.py``): the rest of
minwa asks it for the rank, the world size, the device, the resolved strategy and the meshes.
``init_distributed`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain
``python -m minwa train`` is world size 1 with strategy 'none' and creates no process group.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from minwa.errors import MinwaError
from minwa.parallel.config import ParallelConfig, check
from minwa.parallel.watchdog import start_watchdog, stop_watchdog
from minwa.utils.device import resolve_device

STRATEGIES = ("auto", "none", "fsdp", "butterfly", "hybrid")


@dataclass
class ParallelDims:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    strategy: str = "none"  # resolved: none | fsdp | butterfly | hybrid
    backend: str = ""  # gloo | nccl ('' when no process group)
    fc_split: int = 1  # hybrid: ranks sharing one copy of the FC layers (1 otherwise)
    host: str = field(default_factory=socket.gethostname)
    _meshes: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise MinwaError(f"rank {self.rank} is outside a world of {self.world_size} processes")
        if self.fc_split < 1 or self.world_size % self.fc_split:
            raise MinwaError(
                f"parallel.fc_split={self.fc_split} must divide the world size {self.world_size} "
                f"(fc_split x FC replicas = world size)")
        if self.strategy != "hybrid" and self.fc_split != 1:
            raise MinwaError(f"parallel.fc_split applies only to the hybrid strategy, not '{self.strategy}'")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def fc_replicas(self) -> int:
        """Hybrid: copies of the split FC layers (data-parallel over these); fc_split x fc_replicas = world."""
        return self.world_size // self.fc_split

    def local_batch_size(self, global_batch: int) -> int:
        """This rank's share of a global batch; every rank gets the same number of samples."""
        if global_batch % self.world_size:
            raise MinwaError(f"the global batch size {global_batch} must be a multiple of the "
                             f"{self.world_size} ranks (data.batch_size)")
        return global_batch // self.world_size

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over all ranks (a copy on ``t``'s device); ``t`` itself with one process."""
        if not self.distributed:
            return t
        buf = t.detach().to(self.device, copy=True)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(t.device)

    def describe(self) -> str:
        if not self.distributed:
            return f"1 process on {self.device}"
        extra = f", FC split over {self.fc_split} ranks" if self.strategy == "hybrid" else ""
        return f"{self.world_size} ranks ({self.backend}, strategy {self.strategy}{extra}), rank {self.rank} on {self.device}"

    # --- device meshes, built on first use (they need the process group) ---
    @property
    def world_mesh(self):
        """1-D mesh over all ranks (data parallelism of the whole model, or of the conv trunk in hybrid)."""
        return self._mesh("world", (self.world_size,), ("dp",))

    @property
    def fc_mesh(self):
        """2-D mesh ('replica', 'fc'): the FC layers split along 'fc', replicated (data-parallel) along 'replica'.

        Consecutive ranks share one split copy, so on a multi-GPU node the FC traffic stays inside the node.
        """
        return self._mesh("fc", (self.fc_replicas, self.fc_split), ("replica", "fc"))

    def _mesh(self, key, shape, names):
        if key not in self._meshes:
            self._meshes[key] = init_device_mesh(self.device.type, shape, mesh_dim_names=names)
        return self._meshes[key]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise MinwaError(f"environment variable {name}={value!r} must be an integer") from None


def resolve_strategy(strategy: str, world_size: int) -> str:
    if strategy not in STRATEGIES:
        raise MinwaError(f"unknown parallel.strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    if strategy == "auto":
        return "fsdp" if world_size > 1 else "none"
    if world_size == 1:
        return "none"  # one process: every strategy is the plain model
    if strategy == "none":
        raise MinwaError(f"parallel.strategy=none but {world_size} processes were launched; "
                         "pick fsdp, butterfly or hybrid (or launch one process)")
    return strategy


def init_distributed(cfg: ParallelConfig, device: str = "auto") -> ParallelDims:
    """Join the process group torchrun set up (or stay a single process) and describe the layout."""
    check(cfg)
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    strategy = resolve_strategy(cfg.strategy, world_size)
    fc_split = (cfg.fc_split or world_size) if strategy == "hybrid" else 1
    if world_size == 1:
        return ParallelDims(0, 1, 0, dev, strategy, "", 1)
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise MinwaError(f"unknown parallel.backend '{cfg.backend}' (known: auto, gloo, nccl)")
    if backend == "nccl" and dev.type != "cuda":
        raise MinwaError("parallel.backend=nccl needs CUDA devices; use gloo on CPU")
    dims = ParallelDims(rank, world_size, local_rank, dev, strategy, backend, fc_split)  # validates first
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=cfg.timeout_s),
                                    device_id=dev if dev.type == "cuda" else None)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MinwaError(f"rank {rank} of {world_size} could not join the process group "
                             f"within {cfg.timeout_s:g} s: {first}") from None
    start_watchdog(dims, cfg.timeout_s)
    return dims


def shutdown(exit_code: int | None = None) -> None:
    """Leave the process group cleanly; with ``exit_code``, end the process right after.

    gloo sometimes aborts at interpreter exit ("terminate called without an active exception") after the
    group is gone; ``os._exit`` skips the teardown that triggers it. Pass ``exit_code`` at the very end of
    a torchrun worker (after flushing output).
    """
    stop_watchdog(clean=exit_code in (None, 0))
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing more to release
            pass
    if exit_code is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(exit_code))
