"""minwa.parallel: every strategy trains exactly the single-process model (issue 6's proof).

Three torchrun launches in all (each costs seconds of startup on 2 cores): 2 ranks running fsdp,
butterfly and hybrid (and saving a checkpoint), 4 ranks running the same plus hybrid with the FC layers
split over 2 of the 4 ranks (and resuming the 2-rank checkpoint with three different layouts), and 2
ranks where rank 1 is killed. The ranks write what they observed; the tests judge those files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from parallel_common import GLOBAL_BATCH, grad_norm, make_batches, make_model, make_optimizer, step  # noqa: E402

from minwa.errors import MinwaError  # noqa: E402
from minwa.parallel import ParallelConfig, ParallelDims, init_distributed, parallelize  # noqa: E402
from minwa.parallel.checkpoint import load_distributed, save_distributed  # noqa: E402
from minwa.parallel.dims import resolve_strategy  # noqa: E402
from minwa.parallel.hybrid import fc_plan  # noqa: E402

STEPS = 4
SAVE_AT = 2
WORKER = HERE / "dist_parallel.py"


def torchrun(nproc: int, out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", str(WORKER), "--out", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(fashion_dir):
    """Single process, full global batch: the weights every strategy must reproduce."""
    model = make_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make_optimizer(model)
    losses, norms = [], []
    for x, y in make_batches(STEPS):
        losses.append(step(model, opt, x, y, GLOBAL_BATCH).item())
        norms.append(grad_norm(model))
    return {"state": model.state_dict(), "init": init, "losses": losses, "grad_norms": norms}


@pytest.fixture(scope="module")
def runs(fashion_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    w2 = torchrun(2, root / "w2", "--strategies", "fsdp,butterfly,hybrid", "--steps", str(STEPS),
                  "--save-at", str(SAVE_AT))
    w4 = torchrun(4, root / "w4", "--strategies", "fsdp,butterfly,hybrid,hybrid2", "--steps", str(STEPS),
                  "--ckpt", str(root / "w2" / "ckpt"), "--resume-strategies", "fsdp,butterfly,hybrid2")
    return {"root": root, 2: w2, 4: w4}


def _result(runs, world, name, mode="train"):
    base = runs["root"] / f"w{world}" / f"{name}_w{world}_{mode}"
    if not base.with_suffix(".json").exists():
        log = runs[world].stdout[-3000:] + runs[world].stderr[-6000:]
        pytest.fail(f"rank 0 of the {world}-rank run wrote no result for {name} ({mode}):\n{log}")
    return load_file(str(base.with_suffix(".safetensors"))), json.loads(base.with_suffix(".json").read_text())


def _assert_same_weights(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-12, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


CASES = [(2, "fsdp"), (2, "butterfly"), (2, "hybrid"), (4, "fsdp"), (4, "butterfly"), (4, "hybrid"), (4, "hybrid2")]


@pytest.mark.dist
@pytest.mark.parametrize("world,name", CASES, ids=[f"{n}-{w}ranks" for w, n in CASES])
def test_strategy_trains_the_single_process_model(runs, reference, world, name):
    weights, report = _result(runs, world, name)
    moved = max((reference["state"][k] - reference["init"][k]).abs().max().item() for k in reference["init"])
    assert moved > 1e-3  # the steps really changed the weights, so equality below means something
    _assert_same_weights(weights, reference["state"])
    assert report["losses"] == pytest.approx(reference["losses"], abs=1e-12)


@pytest.mark.dist
@pytest.mark.parametrize("world,name", CASES, ids=[f"{n}-{w}ranks" for w, n in CASES])
def test_gradient_magnitude_is_the_single_process_one(runs, reference, world, name):
    _, report = _result(runs, world, name)
    # summed over ranks of (sum over the rank's samples / global batch): not N x, not 1/N x
    assert report["grad_norm"] == pytest.approx(reference["grad_norms"][0], rel=1e-12)


@pytest.mark.dist
@pytest.mark.parametrize("name", ["fsdp", "butterfly", "hybrid2"])
def test_two_rank_checkpoint_resumes_on_four_ranks(runs, reference, name):
    ckpt = runs["root"] / "w2" / "ckpt"
    current = json.loads((ckpt / "LATEST").read_text())["current"]
    meta = json.loads((ckpt / current / "minwa.json").read_text())
    assert meta["world_size"] == 2 and meta["extra"] == {"loader": {"position": SAVE_AT}}
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(["LATEST", current])  # the atomic save left no other folder
    weights, report = _result(runs, 4, name, "resume")
    assert report["start"] == SAVE_AT
    assert report["losses"] == pytest.approx(reference["losses"][SAVE_AT:], abs=1e-12)
    _assert_same_weights(weights, reference["state"])


@pytest.mark.dist
def test_a_killed_rank_is_named_instead_of_a_hang(fashion_dir, tmp_path):
    t0 = time.monotonic()
    proc = torchrun(2, tmp_path, "--mode", "kill", "--victim", "1", "--strategies", "fsdp", "--steps", "6",
                    "--timeout", "30", timeout=120)
    elapsed = time.monotonic() - t0
    text = proc.stderr + proc.stdout + "".join(p.read_text() for p in tmp_path.glob("error_rank*.txt"))
    assert "rank 1 (" in text and "died" in text, text[-4000:]  # minwa's own line, naming the rank and its host:pid
    assert "rank 0 of 2 stops too" in text
    assert not (tmp_path / "fsdp_w2_kill.json").exists()  # the survivor did not carry on alone
    assert elapsed < 60  # far below the 30 s collective timeout + startup: nobody waited for it


@pytest.mark.dist
def test_a_stuck_rank_is_named_before_the_collective_timeout(fashion_dir, tmp_path):
    """Rank 1 stays alive (its heartbeat goes on) but never fetches its batch of step 3: both ranks name
    it, and where it stopped, before the 12 s collective timeout fires (which says nothing about who)."""
    t0 = time.monotonic()
    proc = torchrun(2, tmp_path, "--mode", "stall", "--victim", "1", "--strategies", "fsdp", "--steps", "6",
                    "--timeout", "12", timeout=120)
    elapsed = time.monotonic() - t0
    text = proc.stderr + proc.stdout
    assert "rank 1 of 2 (" in text and "waiting for the batch of step 3 (data loading)" in text, text[-4000:]
    assert ("is alive but has made no progress" in text) or ("is stuck" in text), text[-4000:]
    assert "Timed out" not in text and "timed out" not in text  # named before the backend gave up
    assert not (tmp_path / "fsdp_w2_stall.json").exists()
    assert elapsed < 60


@pytest.fixture(scope="module")
def bn_runs(fashion_dir, tmp_path_factory):
    """deepimage-tiny with BatchNorm: one process on the full batch, and 2 ranks with and without
    parallel.sync_batchnorm."""
    model = make_model(batchnorm=True)
    opt = make_optimizer(model)
    losses = [step(model, opt, x, y, GLOBAL_BATCH).item() for x, y in make_batches(STEPS)]
    root = tmp_path_factory.mktemp("bn")
    proc = torchrun(2, root / "w2", "--bn", "--strategies", "fsdp,butterfly,fsdp-localbn", "--steps", str(STEPS))
    return {"root": root, 2: proc, "state": model.state_dict(), "losses": losses}


@pytest.mark.dist
@pytest.mark.parametrize("name", ["fsdp", "butterfly"])
def test_sync_batchnorm_trains_the_single_process_model(bn_runs, name):
    weights, report = _result(bn_runs, 2, name)
    assert any("running_var" in k for k in weights)
    _assert_same_weights(weights, bn_runs["state"])  # weights and running statistics
    assert report["losses"] == pytest.approx(bn_runs["losses"], abs=1e-12)


@pytest.mark.dist
def test_without_sync_batchnorm_each_rank_normalises_its_own_slice(bn_runs):
    weights, _ = _result(bn_runs, 2, "fsdp-localbn")
    diff = max((weights[k] - bn_runs["state"][k]).abs().max().item() for k in bn_runs["state"])
    assert diff > 1e-6  # so the equality above is the synchronisation's doing


def test_sync_batchnorm_module_is_batchnorm_on_one_process():
    from minwa.parallel.sync_batchnorm import convert_sync_batchnorm

    torch.manual_seed(0)
    plain = make_model(batchnorm=True)
    synced = convert_sync_batchnorm(make_model(batchnorm=True), torch.device("cpu"))
    assert any(type(m).__name__ == "SyncBatchNorm" for m in synced.modules())
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(synced(x), plain(x), atol=1e-12, rtol=0)  # training mode: batch statistics
    _assert_same_weights(synced.state_dict(), plain.state_dict())  # running statistics updated alike


# --- single-process behaviour (no torchrun) ---

def test_single_process_is_strategy_none_without_a_process_group():
    dims = init_distributed(ParallelConfig(strategy="fsdp"), "cpu")
    assert (dims.world_size, dims.rank, dims.strategy, dims.is_main) == (1, 0, "none", True)
    assert not torch.distributed.is_initialized()
    model = torch.nn.Linear(3, 2)
    assert parallelize(model, dims, ParallelConfig()) is model


def test_strategy_and_layout_validation():
    assert resolve_strategy("auto", 4) == "fsdp" and resolve_strategy("auto", 1) == "none"
    with pytest.raises(MinwaError, match="unknown parallel.strategy"):
        resolve_strategy("zero3", 2)
    with pytest.raises(MinwaError, match="strategy=none"):
        resolve_strategy("none", 2)
    with pytest.raises(MinwaError, match="must divide the world size"):
        ParallelDims(rank=0, world_size=4, strategy="hybrid", fc_split=3)
    dims = ParallelDims(rank=3, world_size=4, strategy="hybrid", fc_split=2)
    assert dims.fc_replicas == 2 and dims.local_batch_size(64) == 16
    with pytest.raises(MinwaError, match="multiple of the 4 ranks"):
        dims.local_batch_size(30)


def test_fc_plan_gathers_once_and_scatters_once():
    from torch.distributed.tensor import Replicate, Shard

    def layouts(k):
        plan = fc_plan([f"fc{i}" for i in range(k)])
        return [(type(s).__name__[:3], s.input_layouts[0], s.output_layouts[0]) for s in plan.values()]

    assert layouts(1) == [("Row", Shard(0), Shard(0))]
    assert layouts(2) == [("Col", Shard(0), Shard(-1)), ("Row", Shard(-1), Shard(0))]
    assert layouts(3) == [("Col", Shard(0), Shard(-1)), ("Row", Shard(-1), Replicate()), ("Row", Replicate(), Shard(0))]
    assert layouts(4)[2] == ("Col", Replicate(), Shard(-1)) and layouts(4)[3][2] == Shard(0)


def test_checkpoint_roundtrip_single_process(tmp_path):
    """Same API without a process group: weights, momentum, extra and RNG come back; saves replace atomically."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    path = tmp_path / "state"
    save_distributed(path, model, opt, extra={"loader": {"epoch": 1, "position": 7}})
    save_distributed(path, model, opt, extra={"loader": {"epoch": 1, "position": 8}})  # replaces the first
    expected_draw = torch.rand(3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]

    torch.manual_seed(99)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    extra = load_distributed(path, fresh, fresh_opt)
    assert extra == {"loader": {"epoch": 1, "position": 8}}
    assert torch.equal(torch.rand(3), expected_draw)  # RNG restored to the moment of saving
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(opt.state[a]["momentum_buffer"], fresh_opt.state[b]["momentum_buffer"])
    with pytest.raises(MinwaError, match="does not fit this model"):
        load_distributed(path, torch.nn.Sequential(torch.nn.Linear(4, 2)), None)
    with pytest.raises(MinwaError, match="no resumable training state"):
        load_distributed(tmp_path, model, opt)
    assert [p.name for p in path.iterdir() if p.name != "LATEST"] == [json.loads((path / "LATEST").read_text())["current"]]


@pytest.mark.dist
def test_mixed_precision_setting_changes_what_fsdp_computes_with(tmp_path):
    """parallel.mixed_precision is read: a bf16 run with it gathers conv/FC weights in bf16 (norms and
    master weights stay fp32); without it every weight is used in fp32."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend=c10d",
           "--rdzv_endpoint=localhost:0", str(HERE / "dist_mixed_precision.py")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    on, off = report["True"], report["False"]
    assert on["master"] == off["master"] == ["torch.float32"]
    assert {d for n, d in on["forward"].items() if "stages" in n and n.endswith(".0")} == {"torch.bfloat16"}
    assert all(d == "torch.float32" for d in off["forward"].values())
    assert any(d == "torch.float32" for d in on["forward"].values())  # the BatchNorm layers
