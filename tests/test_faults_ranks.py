"""N ranks train the one-process model, through `minwa train` itself (torchrun from scratch, real
Fashion-MNIST images): every strategy ends at the single-process weights (float64, 1e-10), BatchNorm
models with parallel.sync_batchnorm too, and a training state moves 1 -> 2 and 2 -> 1 ranks exactly.

The runs start from scratch, so the input normalisation is estimated inside each run: on several ranks
it must come out as one process's (the estimate is over the global batches, not each rank's slice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


HERE = Path(__file__).parent
# 1,280 images / 32 = 40 steps per epoch; half an epoch = 20 steps, float64 and no dropout: exact
COMMON = ["--quiet", "--epochs", "0.5", "--set", "data.batch_size=32", "--set", "eval_every=0",
          "--set", "log_every=5", "--set", "data.val=", "--set", "data.val_fraction=0", "--set", "runtime.precision=fp64", "--set", "runtime.threads=1",
          "--set", "runtime.channels_last=false", "--set", "optim.ema=0", "--set", "data.workers=0"]
TINY = ["--model", "deepimage-tiny", "--set", 'model.kwargs={"dropout": 0.0, "fc": [48, 40]}']
BN = ["--model", "fashion-net", "--set", 'model.kwargs={"widths": [8, 16]}']


def minwa_train(nproc: int, data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", "-m", "minwa"] if nproc > 1
              else [sys.executable, "-m", "minwa"])
    cmd = [*launch, "train", "--data", str(data), "--out", str(out), *COMMON, *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r


def max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def data(fashion_subset):
    return fashion_subset(1280)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ranks")


@pytest.fixture(scope="module")
def one(data, root):
    minwa_train(1, data, root / "one", *TINY)
    return root / "one"


@pytest.mark.parametrize("strategy", ["fsdp", "butterfly", "hybrid"])
def test_two_ranks_from_scratch_train_the_one_process_model(data, root, one, strategy):
    out = root / f"two-{strategy}"
    r = minwa_train(2, data, out, *TINY, "--set", f"parallel.strategy={strategy}")
    assert r.stdout.count("; final ") == 1 and r.stdout.count("recipe: ") == 1  # said once, by rank 0
    assert json.loads((out / "final.json").read_text())["mean"] == json.loads((one / "final.json").read_text())["mean"]
    assert max_diff(one, out) < 1e-10


def test_sync_batchnorm_from_scratch_trains_the_one_process_model(data, root):
    minwa_train(1, data, root / "bn-one", *BN)
    minwa_train(2, data, root / "bn-two", *BN, "--set", "parallel.strategy=fsdp", "--set", "parallel.sync_batchnorm=true")
    assert max_diff(root / "bn-one", root / "bn-two") < 1e-10


def test_a_state_moves_from_one_process_to_two_ranks_and_back(data, root, one):
    """Stopped after its first step (a time budget), saved, resumed elsewhere: the straight run's weights."""
    up, down = root / "one-to-two", root / "two-to-one"
    minwa_train(1, data, up, *TINY, "--set", "time_budget_s=0.000001")
    # the run's own config.toml holds its time budget: the resume lifts it (a setting a resume may change)
    minwa_train(2, data, up, *TINY, "--resume", str(up), "--set", "parallel.strategy=fsdp", "--set", "time_budget_s=0")
    assert max_diff(one, up) < 1e-10
    minwa_train(2, data, down, *TINY, "--set", "time_budget_s=0.000001", "--set", "parallel.strategy=hybrid")
    assert json.loads((down / "train_state" / "LATEST").read_text())["current"].startswith("state-000000001-")
    minwa_train(1, data, down, *TINY, "--resume", str(down), "--set", "time_budget_s=0")
    assert max_diff(one, down) < 1e-10
