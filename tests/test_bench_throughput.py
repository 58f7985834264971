"""`minwa bench throughput` on the CPU: a tiny JPEG corpus from real photographs through the whole path."""

from __future__ import annotations

import json

import pytest
import torch

from minwa import config as config_io
from minwa.benchmarks import throughput as bench
from minwa.benchmarks.config import ThroughputBenchConfig, check_throughput
from minwa.benchmarks.peak import RUNS_IN
from minwa.errors import MinwaError
from minwa.utils.device_caps import resolve_precision


def parse(*overrides):
    return check_throughput(config_io.load(ThroughputBenchConfig(), None, list(overrides)))


def test_throughput_benchmark_reports_every_path(tmp_path, capsys):
    args = parse("model=resnet-tiny", "size=48", "batch=8", "steps=2", "warmup=1", "repeats=2", "make_corpus=32",
                 f"work={tmp_path}", "workers=1", "cache=device", "runtime.device=cpu", "peak_n=256", "json=true")
    assert bench.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scale"] == round(48 * 256 / 224) and out["size"] == 48 and out["batch"] == 8
    assert out["corpus_images"] == 32 and out["device"] == "cpu" and out["torch"] == torch.__version__
    assert out["forward_flops_per_image"] > 1e6 and out["train_flops_per_image"] == 3 * out["forward_flops_per_image"]
    # the peak is the best measured matmul, whatever the machine's load: a structural bound, not a speed
    measured = out["peak_measured_flop_s"]
    assert out["matmul_peak_flop_s"] == max(measured.values()) and out["peak_source"].startswith("measured: ")
    assert all(0 < v < float("inf") for v in measured.values())
    # runtime.precision = auto: what this CPU runs fast, and the peak over every dtype it computes in
    assert out["precision"] == resolve_precision("auto", torch.device("cpu"))
    assert set(out["peak_measured_flop_s"]) == set(RUNS_IN[out["precision"]])
    for path in ("synthetic", "real", "device_cache"):
        assert out[f"{path}_img_s"] > 0, path
        assert out[f"mfu_{path}"] > 0, path
        assert out[f"gpu_idle_fraction_{path}"] is None  # no CUDA events on a CPU
        assert len(out["paths"][path]["rounds_images_per_s"]) == 2
        # MFU is exactly 3 x forward FLOPs x images/s over the measured peak
        want = out["train_flops_per_image"] * out[f"{path}_img_s"] / out["matmul_peak_flop_s"]
        assert out[f"mfu_{path}"] == pytest.approx(want, rel=1e-3)
    assert out["real_drained_batches_per_round"] == 1 * 2 + 1 + 2  # workers * prefetch + 1 + the thread's 2
    # 32 images = 4 batches, fewer than drain + steps: the timed steps cannot avoid the restarts here
    assert out["real_epoch_restarts"] >= (1 + (2 + 5) * 2) // 4 and out["real_epoch_restarts_in_timed_steps"] >= 0
    assert out["real_over_synthetic"] > 0 and out["device_cache_over_synthetic"] > 0
    assert out["device_cache_build_seconds"] >= 0 and "jpeg_cache_img_s" not in out
    assert out["peak_suspect"] == any(out[f"mfu_{path}"] > 1 for path in ("synthetic", "real", "device_cache"))


def test_throughput_benchmark_needs_shards(tmp_path):
    with pytest.raises(MinwaError, match="shard folder"):
        bench.run(parse("model=resnet-tiny", f"work={tmp_path}", "runtime.device=cpu"))


def test_real_rounds_drain_the_lead_and_keep_timed_steps_off_epoch_restarts():
    """The runbook's shape (48 batches an epoch, 5 warm-up, 33 drained + 14 timed a round): every timed
    window starts at least 33 batches into an epoch and never spans a restart."""
    import itertools
    import types

    from minwa.benchmarks.throughput import PathTimer

    timed = []
    trainer = types.SimpleNamespace(device=torch.device("cpu"), global_batch=1,
                                    train_step=lambda b: timed.append(b))
    timer = PathTimer("real", trainer, itertools.count(), warmup=5, epoch_len=48)
    for _ in range(4):
        timed.clear()
        timer.round(14, drain=33)
        first, last = timed[0], timed[-1]
        assert len(timed) == 14 and first % 48 >= 33 and first // 48 == last // 48, (first, last)
    assert timer.restarts_timed == 0
