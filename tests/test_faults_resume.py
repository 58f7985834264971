"""Exact resume under faults, through `minwa train` on real Fashion-MNIST images.

A run is SIGKILLed at several moments (between saves, and inside a save: between the state's files and
its pointer), resumed with ``--resume``, and must end with the uninterrupted run's weights bit for bit and
its metric lines. A finished run, a changed model and a folder without a state are one sentence each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


# 2,560 images / 32 = 80 steps per epoch, 4 epochs = 320 steps, a resumable state every 40 steps
ARGS = ["--quiet", "--epochs", "4", "--set", "data.batch_size=32", "--set", "save_every=0.5",
        "--set", "eval_every=0", "--set", "log_every=1", "--set", "data.val=", "--set", "data.val_fraction=0", "--set", "runtime.precision=fp32",
        "--set", 'model.kwargs={"widths": [8, 16]}', "--set", "runtime.threads=1", "--set", "data.workers=0"]
TOTAL = 320

# kill before the KILL_AT-th JSON write of the state saves: each save writes its minwa.json, then LATEST
INJECT = """
import os, sys
import minwa.parallel.checkpoint as ck
calls, at, write = [0], int(os.environ["KILL_AT"]), ck.atomic_write_json
def killed(path, obj):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), 9)
    write(path, obj)
ck.atomic_write_json = killed
from minwa.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _train(data, out, *extra, env=None, check=True):
    cmd = [sys.executable, "-m", "minwa", "train", "--data", str(data), "--out", str(out), *ARGS, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


def _assert_same_weights(a: Path, b: Path):
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def data(fashion_subset):
    return fashion_subset(2560)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    _train(data, out)
    assert _steps(out)[-1] == TOTAL
    return out


def _kill_when_logged(data, out, line: int):
    """Start `minwa train`, SIGKILL it once metrics.jsonl holds ``line`` lines (a real, unannounced kill)."""
    cmd = [sys.executable, "-m", "minwa", "train", "--data", str(data), "--out", str(out), *ARGS]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if metrics.is_file() and metrics.read_bytes().count(b"\n") >= line:
            break
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.parametrize("line", [15, 81, 160, 241, 315])
def test_sigkill_then_resume_is_bit_identical(data, straight, tmp_path, line):
    out = tmp_path / "run"
    _kill_when_logged(data, out, line)
    r = _train(data, out, "--resume", str(out))
    assert ("before its first save" in r.stderr) == (line < 40)  # then it starts again from step 0
    _assert_same_weights(straight, out)
    assert _steps(out) == _steps(straight)  # the killed run's lines after its last save are gone
    assert _losses(out) == _losses(straight)


@pytest.mark.parametrize("kill_at", [5, 6], ids=["before-the-state-json", "before-the-pointer"])
def test_a_kill_inside_a_save_keeps_the_previous_state(data, straight, tmp_path, kill_at):
    """Killed inside the third save, with the new state's tensors (and, for kill_at 6, its JSON) on disk:
    the second save's state stays current and the resume is exact."""
    out = tmp_path / "run"
    env = {**os.environ, "KILL_AT": str(kill_at)}
    cmd = [sys.executable, "-c", INJECT, "train", "--data", str(data), "--out", str(out), *ARGS]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == -signal.SIGKILL
    current = json.loads((out / "train_state" / "LATEST").read_text())["current"]
    assert current.startswith("state-000000080-")
    assert len(list((out / "train_state").glob("state-000000120-*"))) == 1  # the torn one, never named
    _train(data, out, "--resume", str(out))
    _assert_same_weights(straight, out)
    assert _steps(out) == _steps(straight)
    assert [p.name for p in (out / "train_state").iterdir() if p.name != "LATEST"] == [
        json.loads((out / "train_state" / "LATEST").read_text())["current"]]  # superseded states removed


def _digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_changes_nothing(data, straight, tmp_path):
    before = _digests(straight)
    r = _train(data, straight, "--resume", str(straight))
    assert "already complete" in r.stdout and "nan" not in r.stdout
    assert _digests(straight) == before
    final = json.loads((straight / "final.json").read_text())  # standard JSON: no NaN without a val set
    assert final["metrics"]["val_acc"] is None


def test_resume_with_another_model_is_one_sentence(data, straight, tmp_path):
    r = _train(data, straight, "--resume", str(straight), "--epochs", "5",
               "--set", 'model.kwargs={"widths": [8, 32]}', check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "model.kwargs cannot change on a resume" in r.stderr


def test_resume_dir_alone_continues_with_the_runs_own_settings(data, straight, tmp_path):
    """Issue #16 item 1: `--resume RUN --epochs N` alone used to rebuild the default recipe and fail on
    the weights' shapes; now the run's config.toml is the base, and only safe settings may change."""
    out = tmp_path / "run"
    _kill_when_logged(data, out, 100)
    cmd = [sys.executable, "-m", "minwa", "train", "--quiet", "--resume", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_weights(straight, out)
    assert _steps(out) == _steps(straight)
    r = subprocess.run([*cmd, "--set", "optim.lr=0.5"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "optim.lr cannot change on a resume" in r.stderr


def test_ctrl_c_saves_the_state_and_the_resume_is_exact(data, straight, tmp_path):
    """Issue #16 item 1: SIGINT (Ctrl-C reaches loader workers too) saves the state at the step in hand and
    exits 130 with how to go on; resuming gives the uninterrupted run's weights and metrics bit for bit."""
    out = tmp_path / "run"
    args = [a if a != "data.workers=0" else "data.workers=2" for a in ARGS]
    cmd = [sys.executable, "-m", "minwa", "train", "--data", str(data), "--out", str(out), *args,
           "--set", "save_every=0"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and metrics.read_bytes().count(b"\n") >= 123):
        time.sleep(0.001)
    os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group, workers included
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert f"minwa train --resume {out}" in err
    stopped_at = _steps(out)[-1]
    assert 123 <= stopped_at < TOTAL
    r = subprocess.run([sys.executable, "-m", "minwa", "train", "--quiet", "--resume", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _steps(out) == _steps(straight) and _losses(out) == _losses(straight)
    wa, wb = load_file(str(straight / "final.safetensors")), load_file(str(out / "final.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_without_a_state_says_what_is_there(data, tmp_path):
    r = _train(data, tmp_path / "new", "--resume", str(tmp_path / "nowhere"), check=False)
    assert r.returncode == 2 and r.stderr.strip() == f"error: nothing to resume at {tmp_path / 'nowhere'}: no such folder"
    # an older minwa's swap killed between its two renames left the complete state beside the folder
    left = tmp_path / "old" / "train_state_dcp.tmp-1a2b3c4d"
    left.mkdir(parents=True)
    (left / "minwa.json").write_text("{}")
    r = _train(data, tmp_path / "new", "--resume", str(tmp_path / "old"), check=False)
    assert r.returncode == 2 and str(left) in r.stderr and "Traceback" not in r.stderr


def test_a_finished_run_is_not_replaced_without_overwrite(data, straight, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    before = _digests(out)
    r = _train(data, out, check=False)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--overwrite" in r.stderr
    assert _digests(out) == before
    _train(data, out, "--overwrite")
    assert _steps(out) == _steps(straight)  # one run's lines, not two runs mixed
    _assert_same_weights(straight, out)


def test_a_run_folder_in_use_is_refused(data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "minwa", "train", "--data", str(data), "--out", str(out), *ARGS]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out / "metrics.jsonl").is_file():  # the first run is training
            assert first.poll() is None
            time.sleep(0.01)
        r = _train(data, out, "--resume", str(out), check=False)
        assert r.returncode == 2 and "in use" in r.stderr and str(first.pid) in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    finally:
        first.kill()
        first.wait()
    r = _train(data, out, "--resume", str(out))  # the killed holder's lock is stale: taken over


def test_a_damaged_state_is_refused_before_it_is_read(data, straight, tmp_path):
    """A shard of the state flipped, cut short or gone after the save: one sentence, nothing loaded."""
    out = tmp_path / "run"
    shutil.copytree(straight, out, ignore=shutil.ignore_patterns(".minwa.lock"))
    current = out / "train_state" / json.loads((out / "train_state" / "LATEST").read_text())["current"]
    shard = sorted(current.glob("*.safetensors"))[0]
    raw = bytearray(shard.read_bytes())
    for damage, words in [(lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0x40]) + b[len(b) // 2 + 1:],
                           "does not match the checksum"),
                          (lambda b: b[:30], "30 bytes"), (None, "is missing")]:
        if damage is None:
            shard.unlink()
        else:
            shard.write_bytes(bytes(damage(raw)))
        r = _train(data, out, "--resume", str(out), "--epochs", "5", check=False)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    (current / "minwa.json").write_text('{"format": "minwa-dcp/1"}')
    r = _train(data, out, "--resume", str(out), "--epochs", "5", check=False)
    assert r.returncode == 2 and "minwa.json is damaged" in r.stderr and "Traceback" not in r.stderr


def test_an_fp16_run_resumes_exactly_with_its_gradient_scaler(data, tmp_path):
    """fp16 autocast trains through a GradScaler whose scale backs off on overflow (65536 -> 32768 in the
    first steps here): the scale and its growth count are part of the resumable state, so a run killed
    inside its second save resumes to the uninterrupted run's weights bit for bit."""
    fp16 = ["--epochs", "0.5", "--set", "save_every=0.25", "--set", "runtime.precision=fp16"]
    straight16 = tmp_path / "straight"
    _train(data, straight16, *fp16)
    out = tmp_path / "run"
    env = {**os.environ, "KILL_AT": "3"}  # before the second save's state JSON: the step-20 state stays current
    cmd = [sys.executable, "-c", INJECT, "train", "--data", str(data), "--out", str(out), *ARGS, *fp16]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == -signal.SIGKILL
    state = json.loads((out / "train_state" / "LATEST").read_text())["current"]
    scaler = json.loads((out / "train_state" / state / "minwa.json").read_text())["extra"]["grad_scaler"]
    assert state.startswith("state-000000020-") and scaler["scale"] < 65536.0  # it backed off before the kill
    _train(data, out, "--resume", str(out), *fp16)
    _assert_same_weights(straight16, out)
    assert _losses(out) == _losses(straight16)
