"""What the device computes fast, and so which precision ``runtime.precision = "auto"`` becomes.

The one place that asks torch about the hardware: private torch APIs stay behind this adapter
(``tests/test_config.py::test_device_caps_adapter_still_reaches_torch`` fails loudly if torch moves them).
On an AVX2-only CPU bf16 matmuls run ~1 GFLOP/s against fp32's ~170 (docs/BENCHMARKS.md §1), so auto
must not pick bf16 there."""

from __future__ import annotations

import contextlib

import torch
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler


def cpu_has_native_bf16() -> bool:
    """The CPU has bf16 instructions oneDNN uses (AVX512-BF16/AMX; AVX512 cores emulate them fast enough)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # private: the only probe torch offers


def cuda_has_bf16(device: torch.device) -> bool:
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on GPUs that support it else fp16; bf16 on CPUs with native bf16 else fp32 (and
    fp32 on any other device); an explicit precision is returned as it is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_has_bf16(device) else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


AUTOCAST_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}
PARAM_DTYPE = {"bf16": torch.float32, "fp16": torch.float32, "fp32": torch.float32, "fp64": torch.float64}


def autocast_for(precision: str, device: torch.device):
    """Autocast for bf16/fp16 (over fp32 weights); nothing for fp32/fp64. ``precision`` is resolved."""
    dtype = AUTOCAST_DTYPE.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(precision: str, device: torch.device, sharded: bool = False):
    """fp16 autocast scales the loss so small gradients do not flush to zero (a no-op scaler otherwise);
    with ``sharded`` weights (FSDP) the ranks all-reduce "found inf", so they skip the same steps."""
    return (ShardedGradScaler if sharded else torch.amp.GradScaler)(device.type, enabled=precision == "fp16")
