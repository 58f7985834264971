"""Where and how a run computes: device, precision, CPU threads, memory layout. One section (``runtime``)
shared by the train, eval and bench configs, so each setting is spelt and checked in one place. Torch-free:
``precision = "auto"`` is resolved to what the machine runs fast by ``minwa.utils.device_caps``."""

from dataclasses import dataclass

from minwa.errors import check_rules
from minwa.utils.device_names import check_device

# auto: bf16 where the device has bf16 units (GPUs that support it, CPUs with AVX512-BF16/AMX), fp16 on
# other GPUs, fp32 on other CPUs. bf16/fp16 = autocast over fp32 weights (fp16 with a gradient scaler).
PRECISIONS = ("auto", "bf16", "fp16", "fp32", "fp64")


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 | fp64 (auto = the fastest the device runs natively)
    threads: int = 0  # torch CPU threads (0 = all cores)
    channels_last: bool = True  # NHWC activations and weights (pays for convolutions on CPU and GPU)


def check(cfg: RuntimeConfig, precisions=PRECISIONS) -> RuntimeConfig:
    """An unknown device or precision, or negative threads, in one sentence."""
    check_device(cfg.device, "runtime.device")
    check_rules([
        (cfg.precision in precisions,
         f"runtime.precision must be one of {', '.join(precisions)}, not '{cfg.precision}'"),
        (cfg.threads >= 0, f"runtime.threads must not be negative (0 = all cores), got {cfg.threads}"),
    ])
    return cfg
