"""The hardware tables the plan reads: GPUs (dense peak FLOP/s per precision, memory, memory bandwidth,
the usual server around them) and links (bandwidth per direction, latency). Every figure names its
source; none is tuned to a test point. Achieved rates are these peaks times the few documented
efficiencies in :mod:`minwa.plan.costs`."""

from __future__ import annotations

from dataclasses import dataclass

from minwa.benchmarks.peak import VENDOR_TFLOPS
from minwa.errors import MinwaError

TERA, GIGA = 1e12, 1e9


def _vendor(name: str) -> dict:
    """The datasheet TFLOP/s that ``minwa bench`` measures MFU against (one table: ``benchmarks.peak``)."""
    return dict(next(t for n, t in VENDOR_TFLOPS if n == name))


@dataclass(frozen=True)
class GPU:
    name: str
    tflops: dict  # precision -> dense peak TFLOP/s (a precision without its own units runs at fp32's rate)
    memory_gb: float
    mem_bw_gbs: float  # HBM/GDDR bandwidth, GB/s
    intra: str  # the link between GPUs of one server it usually has
    cores_per_node: int  # CPU cores of its usual server (input decoding)
    source: str

    def flop_s(self, precision: str) -> float:
        return self.tflops.get(precision, self.tflops["fp32"]) * TERA


GPUS = {g.name: g for g in (
    # Deep Image §2 (seeds/002): 4.29 TFLOP/s fp32, 12 GB; NVIDIA Tesla K40 datasheet: 288 GB/s GDDR5, PCIe 3.0
    # x16; no fp16/tensor units. Minwa's node: 2 six-core Xeon E5-2620 = 12 cores (§2).
    GPU("K40m", {"fp32": 4.29}, 12, 288, "pcie3", 12, "Deep Image §2; NVIDIA Tesla K40 datasheet"),
    # NVIDIA V100 datasheet (SXM2): 15.7 fp32, 125 fp16 tensor; 32 GB HBM2 at 900 GB/s; NVLink 2 300 GB/s.
    # DGX-1: 2 × 20-core Xeon E5-2698 v4 = 40 cores.
    GPU("V100", {"fp32": 15.7, "fp16": 125.0}, 32, 900, "nvlink2", 40, "NVIDIA V100 datasheet; DGX-1 datasheet"),
    # NVIDIA A100 datasheet (SXM4 80GB), dense (benchmarks.peak): 19.5 fp32, 156 tf32, 312 bf16/fp16; 2,039 GB/s; NVLink 3
    # 600 GB/s. DGX A100: 2 × 64-core AMD EPYC 7742 = 128 cores.
    GPU("A100", _vendor("A100"), 80, 2039, "nvlink3", 128,
        "NVIDIA A100 datasheet; DGX A100 datasheet"),
    # NVIDIA H100 datasheet (SXM5), dense (half the sparse figures): 66.9 fp32, 494.7 tf32, 989.5 bf16/fp16;
    # 80 GB HBM3 at 3.35 TB/s; NVLink 4 900 GB/s. DGX H100: 2 × 56-core Xeon 8480C = 112 cores.
    GPU("H100", _vendor("H100"), 80, 3350, "nvlink4", 112,
        "NVIDIA H100 datasheet; DGX H100 datasheet"),
    # NVIDIA H200 datasheet (SXM): the H100's compute; 141 GB HBM3e at 4.8 TB/s; NVLink 4. DGX H200: as DGX H100.
    GPU("H200", _vendor("H200"), 141, 4800, "nvlink4", 112,
        "NVIDIA H200 datasheet; DGX H200 datasheet"),
)}


@dataclass(frozen=True)
class Link:
    name: str
    gbs: float  # data bandwidth per direction (after line encoding), GB/s: per GPU (intra) or per NIC (inter)
    latency_us: float  # per hop of a collective step (NCCL's base + hardware latency, see costs.py)
    source: str


LINKS = {l.name: l for l in (
    # PCI-SIG base specifications, x16, per direction: 8 / 16 / 32 GT/s with 128b/130b encoding.
    Link("pcie3", 15.75, 5.0, "PCIe 3.0 spec: 8 GT/s x16, 128b/130b"),
    Link("pcie4", 31.5, 5.0, "PCIe 4.0 spec: 16 GT/s x16"),
    Link("pcie5", 63.0, 5.0, "PCIe 5.0 spec: 32 GT/s x16"),
    # NVIDIA's NVLink pages give the total bidirectional bandwidth per GPU: 300 / 600 / 900 GB/s; half each way.
    Link("nvlink2", 150.0, 3.0, "NVIDIA V100 datasheet: NVLink 300 GB/s bidirectional"),
    Link("nvlink3", 300.0, 3.0, "NVIDIA A100 datasheet: NVLink 600 GB/s bidirectional"),
    Link("nvlink4", 450.0, 3.0, "NVIDIA H100 datasheet: NVLink 900 GB/s bidirectional"),
    # InfiniBand Trade Association roadmap, 4x ports: FDR 56 Gb/s signalling = 54.5 Gb/s of data (64b/66b);
    # EDR 100, HDR 200, NDR 400 Gb/s data rate.
    Link("fdr", 54.5 / 8, 6.0, "IBTA: FDR 4x 56 Gb/s, 64b/66b -> 54.5 Gb/s (Deep Image §2: one per node)"),
    Link("edr", 100 / 8, 6.0, "IBTA: EDR 4x 100 Gb/s"),
    Link("hdr", 200 / 8, 6.0, "IBTA: HDR 4x 200 Gb/s"),
    Link("ndr", 400 / 8, 6.0, "IBTA: NDR 4x 400 Gb/s (ConnectX-7)"),
    # IEEE 802.3 rates; over TCP sockets NCCL's per-step latency is tens of microseconds.
    Link("eth10", 10 / 8, 30.0, "IEEE 802.3 10GbE"),
    Link("eth25", 25 / 8, 30.0, "IEEE 802.3by 25GbE"),
    Link("eth100", 100 / 8, 30.0, "IEEE 802.3 100GbE"),
    Link("eth400", 400 / 8, 30.0, "IEEE 802.3bs 400GbE"),
)}


def gpu(name: str) -> GPU:
    found = {k.lower(): v for k, v in GPUS.items()}.get(name.lower())
    if found is None:
        raise MinwaError(f"unknown GPU '{name}'; known: {', '.join(GPUS)}")
    return found


def link(name: str) -> Link:
    found = LINKS.get(name.lower())
    if found is None:
        raise MinwaError(f"unknown interconnect '{name}'; known: {', '.join(LINKS)}")
    return found


def gpu_in_name(device_name: str) -> GPU | None:
    """The table's GPU whose name a device name (``torch.cuda.get_device_name``) contains, else None."""
    return next((g for n, g in GPUS.items() if n.lower() in device_name.lower()), None)
