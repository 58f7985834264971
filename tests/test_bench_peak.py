"""The MFU ceiling (``minwa.benchmarks.peak``): vendor figures for known GPUs, a sustained measured
matmul otherwise, and an MFU above 100% always flagged."""

from __future__ import annotations

import pytest
import torch

from minwa.benchmarks import peak as pk


def test_known_gpus_get_the_vendors_dense_figure():
    assert pk.vendor_flop_s("NVIDIA H200", "bf16", tf32=True) == pytest.approx(989.5e12)
    assert pk.vendor_flop_s("NVIDIA H100 PCIe", "bf16", tf32=True) == pytest.approx(756e12)
    assert pk.vendor_flop_s("NVIDIA H100 80GB HBM3", "bf16", tf32=True) == pytest.approx(989.5e12)
    assert pk.vendor_flop_s("NVIDIA A100-SXM4-80GB", "fp32", tf32=True) == pytest.approx(156e12)  # TF32 convs
    assert pk.vendor_flop_s("NVIDIA A100-SXM4-80GB", "fp32", tf32=False) == pytest.approx(19.5e12)
    assert pk.vendor_flop_s("NVIDIA GeForce GTX 1080", "bf16", tf32=True) is None


def test_a_measured_peak_is_the_best_sustained_matmul_of_every_dtype_the_precision_runs_in():
    p = pk.training_peak("bf16", "cpu", max_side=128, seconds=0.05, rounds=1)
    assert set(p.measured) == {"bf16", "fp32"} and p.flop_s == max(p.measured.values()) > 1e8
    assert p.source.startswith("measured: ") and "128" in p.source
    assert set(pk.training_peak("fp32", "cpu", max_side=128, seconds=0.05).measured) == {"fp32"}


def test_sustained_matmul_skips_sizes_that_would_take_too_long():
    # a 2 ms budget per product: 64 is measured, 4096 (~1 s on one core) is skipped, not run
    assert pk.sustained_matmul(torch.float32, "cpu", sizes=(64, 4096), seconds=0.02, max_product_s=0.002) > 1e7


def test_an_mfu_above_one_is_flagged():
    p = pk.Peak(100e9, "measured: test", {"fp32": 100e9})
    ok, bad = pk.mfu_fields(50e9, p), pk.mfu_fields(165e9, p)
    assert ok["mfu"] == pytest.approx(0.5) and not ok["peak_suspect"] and ok["fp32_matmul_flop_s"] == 100e9
    assert bad["mfu"] == pytest.approx(1.65) and bad["peak_suspect"]
    assert "SUSPECT" not in pk.mfu_line(50e9, p) and "50.0%" in pk.mfu_line(50e9, p)
    assert pk.mfu_line(165e9, p).endswith(pk.SUSPECT) and ok["precision_note"] is None


def test_a_device_without_fast_bf16_is_named():
    """bf16 autocast on a CPU without bf16 units (an AVX2 EPYC: ~1 GFLOP/s against fp32's ~130) trains
    tens of times slower: the benchmark says so."""
    slow = pk.Peak(130e9, "measured: test", {"bf16": 1e9, "fp32": 130e9})
    assert "runtime.precision=fp32" in pk.mfu_fields(10e9, slow)["precision_note"]
    assert pk.mfu_line(10e9, slow).splitlines()[1] == pk.slow_bf16_note(slow)
    assert pk.slow_bf16_note(pk.Peak(900e9, "measured: test", {"bf16": 900e9, "fp32": 200e9})) is None
