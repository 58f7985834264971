"""What ``minwa plan`` models: the network and its input, the strategies, the batch, the hardware.

The defaults are a DGX H100 cluster training deepimage16. The paper's own machine (Deep Image §2-3.3)
is ``paper_config()``: K40m, PCIe 3 inside a node, one FDR InfiniBand NIC per 4-GPU node, 12 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minwa.errors import check_rules

STRATEGIES = ("fsdp", "butterfly", "hybrid")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass
class PlanConfig:
    model: str = "deepimage16"  # registry model (ignored when ckpt is set)
    ckpt: str = ""  # or a checkpoint: its model, options, classes and crop
    size: int = 0  # C×C input (0: the checkpoint's crop, else the model's default)
    num_classes: int = 1000
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))  # fsdp | butterfly | hybrid
    fc_split: int = 0  # hybrid: ranks per FC split (0 = all GPUs, as minwa's default)
    batch_per_gpu: int = 64  # images per GPU per step (paper's "slices"); also the 1-GPU baseline's batch
    global_batch: int = 0  # fixed mini-batch over all GPUs (0: batch_per_gpu × GPUs, weak scaling)
    figure_batches: list[int] = field(default_factory=lambda: [256, 512, 1024])  # Figure 2(b) curves
    precision: str = "bf16"  # fp32 | tf32 | bf16 | fp16 (a GPU without the units runs it at fp32's rate)
    mixed_precision: bool = True  # as parallel.mixed_precision: bf16 parameters all-gathered, fp32 grads
    gpu: str = "H100"  # K40m | V100 | A100 | H100 | H200
    intra: str = ""  # link between GPUs of a node ('' = the GPU's usual: pcie3, nvlink2/3/4)
    inter: str = "ndr"  # link between nodes: fdr | edr | hdr | ndr | eth10 | eth25 | eth100 | eth400
    nics_per_node: int = 0  # 0 = one per GPU
    gpus_per_node: int = 8
    nodes: int = 8  # the sweep goes up to gpus_per_node × nodes
    gpus: list[int] = field(default_factory=list)  # GPU counts (empty: 1, 2, 4, ... up to the cluster)
    bucket_mb: float = 25.0  # butterfly's DDP bucket (parallel.bucket_mb)
    prefetch: bool = True  # fsdp's one-layer-ahead all-gather (parallel.prefetch)
    input: str = "cpu"  # cpu (JPEG decoded by CPU cores) | gpu (nvJPEG / data cached on the device)
    cpu_cores_per_node: int = 0  # 0 = the GPU's usual server (hardware.py)
    decode_us: float = 720.0  # CPU µs to decode + resize one JPEG (docs/BENCHMARKS.md §3: minwa's loader)
    compute_fraction: float = 0.5  # achieved fraction of peak FLOP/s on compute-bound layers
    overhead_ms: float = 0.0  # constant per-step cost (launches, optimizer bookkeeping); --calibrate fits both
    calibrate: list[str] = field(default_factory=list)  # bench throughput / scaling JSON files to fit to
    out: str = ""  # folder for plan.json and plan-speedup.png
    json: bool = False


def paper_config(**changes) -> PlanConfig:
    """Deep Image §2-3.3: deepimage-scaling (8 conv + 3 FC), 64 images per GPU, fp32 on K40m, PCIe 3 in the
    node, one FDR NIC per 4-GPU node, up to 64 GPUs (16 nodes); 12 CPU cores per node."""
    base = dict(model="deepimage-scaling", size=224, batch_per_gpu=64, precision="fp32", gpu="K40m", intra="pcie3",
                inter="fdr", nics_per_node=1, gpus_per_node=4, nodes=16, gpus=[1, 2, 4, 8, 16, 32, 64])
    return PlanConfig(**{**base, **changes})


def check(cfg: PlanConfig) -> PlanConfig:
    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    check_rules([
        (not bad, f"plan strategies must be among {', '.join(STRATEGIES)}, got {', '.join(map(str, bad))}"),
        (cfg.strategies, "plan strategies must name at least one strategy"),
        (cfg.precision in PRECISIONS, f"plan precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}"),
        (cfg.input in ("cpu", "gpu"), f"plan input must be cpu or gpu, got {cfg.input!r}"),
        (cfg.batch_per_gpu >= 1, f"plan batch_per_gpu must be at least 1, got {cfg.batch_per_gpu}"),
        (cfg.global_batch >= 0, f"plan global_batch must not be negative, got {cfg.global_batch}"),
        (cfg.gpus_per_node >= 1 and cfg.nodes >= 1, "plan gpus_per_node and nodes must be at least 1"),
        (all(n >= 1 for n in cfg.gpus), f"plan gpus must be positive counts, got {cfg.gpus}"),
        (max(cfg.gpus, default=0) <= cfg.gpus_per_node * cfg.nodes,
         f"plan gpus go up to {max(cfg.gpus, default=0)} but the cluster has {cfg.gpus_per_node} × {cfg.nodes} GPUs"),
        (0 < cfg.compute_fraction <= 1, f"plan compute_fraction must be in (0, 1], got {cfg.compute_fraction}"),
        (cfg.overhead_ms >= 0, f"plan overhead_ms must not be negative, got {cfg.overhead_ms}"),
        (cfg.decode_us > 0, f"plan decode_us must be positive, got {cfg.decode_us}"),
        (cfg.bucket_mb > 0, f"plan bucket_mb must be positive, got {cfg.bucket_mb}"),
        (cfg.fc_split >= 0, f"plan fc_split must not be negative (0 = all GPUs), got {cfg.fc_split}"),
        (cfg.nics_per_node >= 0 and cfg.cpu_cores_per_node >= 0, "plan nics_per_node and cpu_cores_per_node must not be negative"),
        (all(b >= 1 for b in cfg.figure_batches), f"plan figure_batches must be positive, got {cfg.figure_batches}"),
    ])
    return cfg
