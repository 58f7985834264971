"""How the single-device model is spread over ranks (owned by the parallel stage)."""

from dataclasses import dataclass


@dataclass
class ParallelConfig:
    strategy: str = "auto"  # auto | none | fsdp | butterfly | hybrid ('auto': fsdp when launched on >1 rank)
    backend: str = "auto"  # auto | gloo | nccl ('auto': nccl on CUDA, gloo on CPU)
    fc_split: int = 0  # hybrid: ranks over which the FC layers are split (0 = all ranks)
    timeout_s: float = 300.0  # a collective that waits longer names the rank and stops the job
    mixed_precision: bool = True  # fsdp on GPU: bf16 compute, fp32 reduction and master weights
    bucket_mb: float = 25.0  # butterfly: DDP bucket size; each bucket is reduce-scattered then all-gathered
    prefetch: bool = True  # fsdp: all-gather the next layer's weights while this layer computes (lazy update)
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch instead of each rank's slice
