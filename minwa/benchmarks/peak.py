"""The FLOP/s ceiling an MFU is measured against, and the flag for an MFU no ceiling allows.

Why: a peak must be an upper bound. One 1024³ matmul timed six times is not one: on a shared 2-core
CPU it once measured 146 GFLOP/s while training reached 240, an "MFU" of 165%. So the ceiling is the
vendor's dense figure where the GPU is known (``VENDOR_TFLOPS``), else the best sustained rate of
several large matmuls (each timed for at least ``seconds``) in every dtype the training precision runs
in (bf16 autocast leaves some ops in fp32). An MFU above 1 still means the ceiling is wrong (Winograd
convolutions do fewer multiplications than the FLOPs counted; a slow BLAS): it is reported with
``peak_suspect`` set, never as a plain figure. The measured dtypes also show a device with no fast
bf16 path (``slow_bf16_note``), where bf16 autocast trains tens of times slower than fp32.
"""

from __future__ import annotations

import dataclasses
import time

import torch

# dense (no sparsity) TFLOP/s per GPU from NVIDIA's datasheets; first match on torch.cuda.get_device_name
VENDOR_TFLOPS = (
    ("H200", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.7, "fp32": 66.9, "fp64": 66.9}),  # SXM (NVL: 835 bf16, lower)
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2, "fp64": 51.2}),
    ("H100", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.7, "fp32": 66.9, "fp64": 66.9}),  # SXM (NVL: 835 bf16, lower)
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5, "fp64": 19.5}),
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64}
# a resolved precision (not "auto") -> the dtypes it computes in: bf16/fp16 = autocast over fp32
RUNS_IN = {"bf16": ("bf16", "fp32"), "fp16": ("fp16", "fp32"), "fp32": ("fp32",), "fp64": ("fp64",)}
SIZES = {"cpu": (1024, 2048, 4096), "cuda": (4096, 8192, 16384)}
SUSPECT = ("PEAK SUSPECT: an MFU above 100% means this peak is no upper bound here (Winograd convolutions "
           "count more FLOPs than they do, or the matmul library is slow): quote FLOP/s or images/s, not the MFU")


@dataclasses.dataclass
class Peak:
    flop_s: float
    source: str  # "vendor: ..." or "measured: ..."
    measured: dict  # dtype name -> best sustained matmul FLOP/s on this device


def vendor_flop_s(device_name: str, precision: str, tf32: bool) -> float | None:
    """The datasheet's dense FLOP/s for ``precision`` on a known GPU (fp32 counts as TF32 when cuDNN or
    cuBLAS may use it), else None."""
    key = "tf32" if precision == "fp32" and tf32 else precision
    return next((t[key] * 1e12 for name, t in VENDOR_TFLOPS if name in device_name), None)


def sustained_matmul(dtype: torch.dtype, device="cpu", sizes=(1024, 2048, 4096), seconds: float = 0.5,
                     max_product_s: float = 4.0) -> float:
    """The best FLOP/s of n×n matmuls over ``sizes``, each repeated for at least ``seconds`` after a
    warm-up product; a size whose product would take over ``max_product_s`` (scaled from the last one
    as n³) is skipped: bf16 on a CPU without bf16 units runs at ~1 GFLOP/s."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    best, last = 0.0, None  # last: (side, seconds of one product)
    for n in sizes:
        if last and last[1] * (n / last[0]) ** 3 > max_product_s:
            break
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        c = torch.empty(n, n, device=device, dtype=dtype)
        single = _timed(lambda: torch.matmul(a, b, out=c), sync)  # warm-up: library set-up, caches
        if single > max_product_s:
            return max(best, 2 * n**3 / single)
        single = _timed(lambda: torch.matmul(a, b, out=c), sync)
        inner = max(1, int(0.05 / max(single, 1e-6)))  # products between synchronisations
        count, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            for _ in range(inner):
                torch.matmul(a, b, out=c)
            sync()
            count += inner
        best, last = max(best, 2 * n**3 * count / (time.perf_counter() - t)), (n, single)
    return best


def _timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def training_peak(precision: str, device="cpu", max_side: int = 0, seconds: float = 0.5, rounds: int = 2) -> Peak:
    """The ceiling for training in ``precision`` on ``device``: the vendor's figure for a known GPU, else
    the best sustained matmul of every dtype the precision runs in, over ``rounds`` sweeps of the sizes
    (sides up to ``max_side``, 0: the device's default sizes): on the shared 2-core VM one sweep of fp32
    varies from 90 to 150 GFLOP/s."""
    device = torch.device(device)
    sizes = SIZES.get(device.type, SIZES["cpu"])
    if max_side:
        sizes = tuple(n for n in sizes if n <= max_side) or (max_side,)
    measured = {name: max(sustained_matmul(DTYPES[name], device, sizes, seconds) for _ in range(rounds))
                for name in RUNS_IN[precision]}
    best = max(measured, key=measured.get)
    found = (f"measured: best sustained {best} matmul of {rounds} sweeps, sides {'/'.join(map(str, sizes))}, "
             f">= {seconds:g} s each")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
        vendor = vendor_flop_s(name, precision, tf32)
        if vendor:
            return Peak(vendor, f"vendor: {name}, dense {'tf32' if precision == 'fp32' and tf32 else precision}", measured)
    return Peak(measured[best], found, measured)


def slow_bf16_note(peak: Peak) -> str | None:
    """A sentence when bf16 runs far slower than fp32 on this device (a CPU without bf16 units: bf16
    autocast then costs more than it saves), else None."""
    bf16, fp32 = peak.measured.get("bf16"), peak.measured.get("fp32")
    if bf16 is None or fp32 is None or bf16 * 4 > fp32:
        return None
    return (f"note: bf16 matmuls run at {bf16 / 1e9:.1f} GFLOP/s on this device against fp32's {fp32 / 1e9:.0f}: "
            "it has no fast bf16 path, so train with --set runtime.precision=fp32")


def mfu_fields(achieved_flop_s: float, peak: Peak) -> dict:
    """The JSON fields of an MFU: ``peak_suspect`` when it exceeds 1 (the peak is then no upper bound)."""
    mfu = achieved_flop_s / peak.flop_s
    return {"mfu": mfu, "peak_flop_s": peak.flop_s, "peak_source": peak.source, "peak_suspect": mfu > 1.0,
            **{f"{k}_matmul_flop_s": v for k, v in peak.measured.items()}, "precision_note": slow_bf16_note(peak)}


def mfu_line(achieved_flop_s: float, peak: Peak) -> str:
    """For people: the MFU and its ceiling, why the MFU is not a figure to quote, and the bf16 note."""
    mfu = achieved_flop_s / peak.flop_s
    line = f"{achieved_flop_s / 1e9:.1f} GFLOP/s achieved = {mfu:.1%} of {peak.flop_s / 1e9:.0f} GFLOP/s ({peak.source})"
    line = line if mfu <= 1.0 else f"{line}. {SUSPECT}"
    note = slow_bf16_note(peak)
    return line if note is None else f"{line}\n{note}"
