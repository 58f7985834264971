"""How the single-device model is spread over ranks (owned by the parallel stage)."""

import math
from dataclasses import dataclass

from minwa.errors import check_rules


@dataclass
class ParallelConfig:
    strategy: str = "auto"  # auto | none | fsdp | butterfly | hybrid ('auto': fsdp when launched on >1 rank)
    backend: str = "auto"  # auto | gloo | nccl ('auto': nccl on CUDA, gloo on CPU)
    fc_split: int = 0  # hybrid: ranks over which the FC layers are split (0 = all ranks)
    timeout_s: float = 300.0  # a collective that waits longer names the rank and stops the job
    mixed_precision: bool = True  # fsdp/hybrid with precision=bf16: parameters gathered in bf16, gradients
    # reduced in fp32 over fp32 master weights (False: autocast alone, parameters all-gathered in fp32)
    bucket_mb: float = 25.0  # butterfly: DDP bucket size; each bucket is reduce-scattered then all-gathered
    prefetch: bool = True  # fsdp: all-gather the next layer's weights while this layer computes (lazy update)
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch instead of each rank's slice


def check(cfg: ParallelConfig) -> ParallelConfig:
    """Reject impossible layout settings before any data is read (strategy and backend names, and the
    degrees against the world size, are checked by ``ParallelDims`` where the world size is known)."""
    check_rules([
        (0 < cfg.timeout_s < math.inf, f"parallel.timeout_s must be a positive, finite number of seconds, "
                                       f"got {cfg.timeout_s}"),
        (cfg.fc_split >= 0, f"parallel.fc_split must not be negative (0 = all ranks), got {cfg.fc_split}"),
        (cfg.bucket_mb > 0, f"parallel.bucket_mb must be positive, got {cfg.bucket_mb}"),
    ])
    return cfg
