"""minwa plan: the cost model's formulas, FLOPs from torch's own counter, the paper's scaling points on its
own hardware (Deep Image §3.3), the modern nccl-tests figures, calibration and the command."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from minwa.cli import build_parser, main
from minwa.models import create_model
from minwa.plan.calibrate import calibrate
from minwa.plan.config import PlanConfig, paper_config
from minwa.plan.costs import Fabric, ring_all_gather, ring_all_reduce, ring_reduce_scatter, tree_all_reduce
from minwa.plan.hardware import link
from minwa.plan.predict import machine, plan
from minwa.plan.profile import profile_model
from minwa.plan.step import step

PAPER_SPEEDUP = 47.0  # seeds/002 §3.3: 64 GPUs, mini-batch 1024


@pytest.fixture(scope="module")
def scaling_net():
    return profile_model("deepimage-scaling", 224)


@pytest.fixture(scope="module")
def paper(scaling_net):
    return plan(paper_config(), scaling_net)


def _speedup(result, strategy, n):
    return next(r["speedup"] for r in result["rows"] if r["strategy"] == strategy and r["gpus"] == n)


# ---------------------------------------------------------------------------------------------- cost model
def test_ring_and_tree_formulas():
    B, bw, a = 1e9, 1e10, 5e-6
    for n in (2, 3, 8, 64):
        assert ring_all_reduce(B, n, bw, a) == pytest.approx(2 * (n - 1) / n * B / bw + 2 * (n - 1) * a)
        assert ring_reduce_scatter(B, n, bw, a) == pytest.approx((n - 1) / n * B / bw + (n - 1) * a)
        assert ring_all_gather(B, n, bw, a) == ring_reduce_scatter(B, n, bw, a)
        assert tree_all_reduce(B, n, bw, a) == pytest.approx(2 * B / bw + 2 * math.ceil(math.log2(n)) * a)
    assert ring_all_reduce(B, 1, bw, a) == 0.0
    # a small message on many ranks: the tree's logarithmic latency wins, as NCCL's tuner picks it
    f = Fabric(link("nvlink4"), link("ndr"), 8, 8)
    bw_, a_ = f.bandwidth(1024)
    assert f.all_reduce(1e3, 1024) == pytest.approx(tree_all_reduce(1e3, 1024, bw_, a_))


def test_fabric_intra_inter_and_strided_groups():
    f = Fabric(link("pcie3"), link("fdr"), 4, 1)  # the paper's node
    intra, _ = f.bandwidth(4)
    across, alpha = f.bandwidth(8)
    assert intra > across  # the FDR NIC is the narrow link
    assert alpha == pytest.approx(link("fdr").latency_us * 1e-6)
    strided, _ = f.bandwidth(4, stride=4)  # one rank per node: the node's 4 GPUs share its NIC
    assert strided == pytest.approx(across / 4)


# ---------------------------------------------------------------------------------------------- FLOPs
def test_deepimage16_flops_match_torch_counter():
    prof = profile_model("deepimage16", 224)
    net = create_model("deepimage16", num_classes=1000, device="meta")
    with FlopCounterMode(display=False) as counter:
        net(torch.empty(3, 3, 224, 224, device="meta"))
    assert prof.fwd_flops == pytest.approx(counter.get_total_flops() / 3, rel=1e-12)
    assert prof.params == sum(p.numel() for p in net.parameters())  # 212.7M (Table 2)
    # backward: twice forward, less the input gradient the first conv does not need
    first = prof.layers[0]
    assert prof.bwd_flops == pytest.approx(2 * prof.fwd_flops - first.fwd_flops, rel=1e-12)
    assert [l.name for l in prof.layers if l.params] == [n for n, _ in prof.units[:-1]]


# ---------------------------------------------------------------------------------------------- the paper
def test_paper_machine_uses_the_one_set_of_constants():
    """The paper's points are reproduced with the defaults every plan uses: only the hardware and the run differ."""
    for name in ("compute_fraction", "overhead_ms", "decode_us", "bucket_mb", "prefetch", "mixed_precision"):
        assert getattr(paper_config(), name) == getattr(PlanConfig(), name), name


def test_paper_speedup_at_64_gpus_minibatch_1024(paper):
    point = next(r for r in paper["figure_b"] if r["figure_batch"] == 1024 and r["gpus"] == 64)
    assert point["batch_per_gpu"] == 16
    assert point["speedup"] == pytest.approx(PAPER_SPEEDUP, rel=0.15)


def test_hybrid_ahead_of_data_parallel_on_few_gpus_behind_on_many(paper):
    for n in (2, 4, 8):
        assert _speedup(paper, "hybrid", n) > _speedup(paper, "fsdp", n), n
    for n in (32, 64):
        assert _speedup(paper, "hybrid", n) < _speedup(paper, "fsdp", n), n
        assert _speedup(paper, "hybrid", n) < _speedup(paper, "butterfly", n), n


def test_figure_2b_speedup_grows_with_batch(paper):
    for n in (8, 16, 32, 64):
        curve = [next(r["speedup"] for r in paper["figure_b"] if r["figure_batch"] == B and r["gpus"] == n)
                 for B in (256, 512, 1024)]
        assert curve == sorted(curve) and curve[0] < curve[-1], (n, curve)


def test_fsdp_holds_less_per_gpu_than_butterfly(paper):
    mem = {r["strategy"]: r["memory_gb"] for r in paper["rows"] if r["gpus"] == 64}
    assert mem["fsdp"] < mem["butterfly"]
    assert mem["hybrid"] < mem["butterfly"]


# ---------------------------------------------------------------------------------------------- modern checks
def _busbw(f, n, nbytes=8 * 2**30):
    return nbytes / f.all_reduce(nbytes, n) * 2 * (n - 1) / n / 1e9


def test_nccl_tests_bus_bandwidth_within_15_percent():
    f = Fabric(link("nvlink4"), link("ndr"), 8, 8)  # a DGX H100
    assert _busbw(f, 8) == pytest.approx(370, rel=0.15)  # nccl-tests, ring on 8×H100 NVLink (NVIDIA/nccl-tests#212)
    assert _busbw(f, 16) / 8 == pytest.approx(47, rel=0.15)  # per NDR NIC: 46-48 GB/s (NVIDIA/nccl-tests#290)


# ---------------------------------------------------------------------------------------------- input side
def test_input_becomes_the_bottleneck_when_cores_are_few(scaling_net):
    r = plan(paper_config(gpus=[1, 4], figure_batches=[], cpu_cores_per_node=1, decode_us=20_000.0), scaling_net)
    first = r["input"]["first_input_bound"]
    assert first is not None and first["exposed_input_s"] > 0
    fed = plan(paper_config(gpus=[1, 4], figure_batches=[], input="gpu"), scaling_net)
    assert fed["input"]["first_input_bound"] is None


# ---------------------------------------------------------------------------------------------- calibration
def _throughput_json(path, cfg, prof, batch):
    s = step(machine(cfg), prof, "none", 1, batch)
    path.write_text(json.dumps({"model": prof.name, "size": prof.size, "batch": batch, "precision": cfg.precision,
                                "device_name": "NVIDIA H100 80GB HBM3", "synthetic_img_s": batch / s.total_s}))


def test_calibration_recovers_fraction_and_overhead(tmp_path):
    prof = profile_model("deepimage-tiny", 28, 10)
    truth = PlanConfig(model="deepimage-tiny", size=28, num_classes=10, compute_fraction=0.3, overhead_ms=5.0)
    files = []
    for b in (64, 4096):
        files.append(tmp_path / f"t{b}.json")
        _throughput_json(files[-1], truth, prof, b)
    cfg = PlanConfig(model="deepimage-tiny", size=28, num_classes=10, calibrate=[str(f) for f in files])
    fitted, report = calibrate(cfg)
    assert fitted.compute_fraction == pytest.approx(0.3)
    assert fitted.overhead_ms == pytest.approx(5.0, rel=1e-3)
    assert all(abs(p["error"]) < 1e-3 for p in report["points"])


def test_calibration_from_bench_scaling_shows_every_row(tmp_path, scaling_net):
    """bench scaling's 1-process row anchors the fit; its n-process rows are predicted beside their measurement."""
    cfg = paper_config(compute_fraction=0.4)
    rows = [{"strategy": s, "processes": n, "step_s": step(machine(cfg), scaling_net, s, n, 64).total_s}
            for s, n in (("none", 1), ("fsdp", 4), ("hybrid", 4))]
    f = tmp_path / "results.json"
    f.write_text(json.dumps({"model": "deepimage-scaling", "device": "Tesla K40m", "precision": "fp32",
                             "batch_per_rank": 64, "rows": rows}))
    fitted, report = calibrate(paper_config(calibrate=[str(f)]))
    assert fitted.compute_fraction == pytest.approx(0.4) and report["fitted_points"] == 1
    assert [(p["strategy"], p["gpus"]) for p in report["points"]] == [("none", 1), ("fsdp", 4), ("hybrid", 4)]
    assert all(abs(p["error"]) < 1e-6 for p in report["points"])


def test_calibration_on_another_gpu_is_one_sentence(tmp_path, capsys):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"model": "deepimage-tiny", "size": 28, "batch": 8, "precision": "bf16",
                             "device_name": "NVIDIA A100-SXM4-80GB", "synthetic_img_s": 100.0}))
    assert main(["plan", "--calibrate", str(f), "--set", "gpu=H100"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: calibration measured on 'NVIDIA A100-SXM4-80GB'") and "\n" not in err


# ---------------------------------------------------------------------------------------------- the command
def test_plan_command_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "plan"
    code = main(["plan", "--paper", "--set", "gpus=[1,8,64]", "--set", "figure_batches=[1024]", "--out", str(out),
                 "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "plan.json").read_text())
    assert printed["best"] == saved["best"] and set(saved["best"]) == {"8", "64"}
    assert (out / "plan-speedup.png").stat().st_size > 10_000
    row = saved["rows"][-1]
    assert row["step_s"] == pytest.approx(row["compute_s"] + row["exposed_comm_s"] + row["overhead_s"]
                                          + row["exposed_input_s"])


@pytest.mark.parametrize("setting, says", [("gpu=X100", "unknown GPU 'X100'"),
                                           ("strategies=[ring]", "plan strategies must be among"),
                                           ("gpus=[1,1024]", "the cluster has")])
def test_plan_bad_input_is_one_sentence(setting, says, capsys):
    assert main(["plan", "--set", setting]) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def test_plan_flags_are_frozen_and_its_config_is_light():
    """Adding a flag is a decision (as tests/test_config.py's frozen surface); reading the config imports no torch."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    flags = sorted(o for a in sub.choices["plan"]._actions for o in a.option_strings if o.startswith("--"))
    assert flags == sorted(["--help", "--config", "--set", "--print-config", "--model", "--ckpt", "--paper",
                            "--calibrate", "--out", "--json"])
    code = "import minwa.plan.config, sys; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0


def test_plan_reads_a_checkpoint(tmp_path):
    from minwa.models.checkpoint import save_checkpoint

    net = create_model("deepimage-tiny", num_classes=10, in_chans=1)
    save_checkpoint(tmp_path / "final", net, {"model": "deepimage-tiny", "num_classes": 10, "in_chans": 1,
                                              "classes": [str(i) for i in range(10)], "scale": 32, "crop": 28})
    r = plan(PlanConfig(ckpt=str(tmp_path / "final"), gpus=[1, 2], nodes=1, figure_batches=[]))
    assert r["model"]["name"] == "deepimage-tiny" and r["model"]["size"] == 28
    assert r["model"]["params"] == sum(p.numel() for p in net.parameters())
