"""Exact under I/O faults: a full disk, outputs that cannot be written, two commands on one folder.

Every case goes through the real CLI on real data and checks the three promises: one sentence (no
traceback) and a non-zero exit; nothing half-written that a later command would accept; temporary
files removed. A full disk is a small tmpfs where this process may mount one (root), and always also a
simulated one (``os.fdopen`` handing out files that stop at a byte budget, inherited by pack workers).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from data_fixtures import jpeg_bytes, photo, small_idx

from minwa.cli import main
from minwa.data import verify
from minwa.errors import MinwaError
from minwa.models.checkpoint import load_checkpoint, save_checkpoint
from minwa.train.run_folder import check_fresh_run_folder
from minwa.utils.folder_lock import LOCK_NAME, FolderLock, hold_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", 'model.kwargs={"widths": [16, 32, 64]}', "--set", "data.batch_size=64", "--val", "", "--set", "data.val_fraction=0"]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fashion_idx(fashion_subset) -> Path:
    """3,000 real Fashion-MNIST training images as an IDX folder."""
    return fashion_subset(3000)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fashion_dir) -> Path:
    """A finished tiny training run (600 real images, half an epoch) on an ordinary disk."""
    root = tmp_path_factory.mktemp("run")
    small_idx(root / "idx", n=600, real=fashion_dir)
    assert main(["train", "--quiet", "--data", str(root / "idx"), "--out", str(root / "run"), "--epochs", "0.5",
                 *TINY]) == 0
    return root / "run"


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(bytes)`` -> a folder on a tmpfs of that size (skips where mounting is not allowed)."""
    mounted = []

    def make(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        if not _mount_tmpfs(folder, f"size={size}"):
            pytest.skip("mounting a small tmpfs needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder nothing can be written in: a read-only tmpfs as root, else a folder without write bits."""
    folder = tmp_path_factory.mktemp("ro") / "ro"
    if _mount_tmpfs(folder, "size=1m,ro"):
        yield folder
        subprocess.run(["umount", "-l", str(folder)], check=False)
        return
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere and may not mount a read-only tmpfs here")
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


class _Budget:
    def __init__(self, left: int):
        self.left = left


class _FullDiskFile:
    """A file whose writes fail with ENOSPC once the disk's byte budget is spent."""

    def __init__(self, f, budget: _Budget):
        self._f, self._budget = f, budget

    def write(self, b):
        if len(b) > self._budget.left:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._budget.left -= len(b)
        return self._f.write(b)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(bytes)``: from now on, files minwa writes atomically share that many bytes."""
    real = os.fdopen

    def make(size: int) -> None:
        budget = _Budget(size)
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDiskFile(real(fd, *a, **k), budget))

    return make


def _one_sentence(err: str) -> str:
    lines = err.strip().splitlines()  # train's start-up summary may come first; the error is one last line
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


def _minwa(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minwa", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME)


# ------------------------------------------------------------------------------------------ a full disk
def test_pack_into_a_full_disk_is_one_sentence_and_leaves_nothing_half_written(fashion_idx, small_disk):
    disk = small_disk(3 << 20)  # two of the six shards (7.1 MB in all) fit
    out = disk / "out"
    r = _minwa("pack", str(fashion_idx), str(out), "--shard-size", "500", "--workers", "2", "--quiet")
    assert r.returncode == 2
    err = _one_sentence(r.stderr)
    assert f"no space left on {disk} while writing {out}/shard-0000" in err and "MB needed" in err, err
    needed = float(err.split("; about ")[1].split(" MB")[0])
    assert 2.0 < needed < 7.5  # the rest of the pack, estimated from the shards written
    assert _leftovers(out) == []  # the workers' temporary files, the parent's lock: all gone
    assert not (out / "manifest.json").exists()
    assert _minwa("verify", str(out)).returncode != 0  # an unfinished pack is refused


def test_a_full_disk_in_pack_workers_is_one_sentence(fashion_idx, tmp_path, full_disk, capsys):
    out = tmp_path / "out"
    full_disk(200_000)  # each worker (forked: it inherits the budget) fails inside its first shard
    assert main(["pack", str(fashion_idx), str(out), "--shard-size", "500", "--workers", "2", "--quiet"]) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert "no space left on " in err and f"while writing {out}/shard-" in err and "MB needed" in err
    assert _leftovers(out) == [] and not (out / "manifest.json").exists()


def test_train_on_a_nearly_full_disk_never_leaves_weights_without_their_sidecar(finished_run, small_disk):
    # a disk with room for what the run writes before its checkpoint, and the weights: not the sidecar
    pages = sum(-(-(finished_run / n).stat().st_size // 4096) for n in ("config.toml", "metrics.jsonl",
                                                                         "final.safetensors"))
    disk = small_disk(pages * 4096)
    run = disk / "run"
    r = _minwa("train", "--quiet", "--data", str(finished_run.parent / "idx"), "--out", str(run), "--epochs", "0.5",
               *TINY)
    assert r.returncode == 2
    err = _one_sentence(r.stderr)
    assert err.startswith(f"error: no space left on {disk} while writing {run}/") and "MB needed" in err, err
    assert not (run / "final.safetensors").exists() and not (run / "final.json").exists()
    assert _leftovers(run) == []
    with pytest.raises(MinwaError, match="checkpoint not found"):
        load_checkpoint(run)


def test_a_failed_sidecar_write_removes_the_new_weights_and_the_old_sidecar(finished_run, tmp_path, full_disk):
    model, meta = load_checkpoint(finished_run)
    ckpt = tmp_path / "final"
    save_checkpoint(ckpt, model, meta)  # an earlier checkpoint in the place
    weights = ckpt.with_suffix(".safetensors").stat().st_size
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # new weights, that the old sidecar must never come to describe
    full_disk(weights + 100)  # the weights fit, the sidecar does not
    with pytest.raises(MinwaError, match="no space left on .* while writing .*final.json; 0.01 MB needed"):
        save_checkpoint(ckpt, model, meta)
    assert not ckpt.with_suffix(".safetensors").exists() and not ckpt.with_suffix(".json").exists()
    assert _leftovers(tmp_path) == []


def test_an_oserror_that_escapes_a_command_is_one_sentence(monkeypatch, capsys, tmp_path):
    """The last line of defence: an OSError no writer translated still names its path and reason."""
    from minwa.commands import verify as verify_cmd

    def broken(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.json"))

    monkeypatch.setattr(verify_cmd, "run", broken)
    assert main(["verify", str(tmp_path)]) == 2
    assert _one_sentence(capsys.readouterr().err) == f"error: cannot use {tmp_path / 'x.json'}: permission denied"


# ------------------------------------------------------------------------------------------ outputs that cannot be
@pytest.fixture(scope="module")
def jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    path.write_bytes(jpeg_bytes(photo("coffee")))
    return path


def _command(name: str, out: Path, fashion_idx: Path, jpeg: Path) -> list[str]:
    return {
        "pack": ["pack", str(fashion_idx), str(out), "--quiet"],
        # the data are real; the checkpoint does not exist: the output is checked before either is read
        "train": ["train", "--quiet", "--data", str(fashion_idx), "--init", str(out.parent / "none"), "--out", str(out)],
        "eval": ["eval", "--ckpt", str(out.parent / "none"), "--data", str(fashion_idx), "--out", str(out)],
        "augment-preview": ["augment-preview", str(jpeg), "--out", str(out) + ".png"],
    }[name]


@pytest.mark.parametrize("command", ["pack", "train", "eval", "augment-preview"])
@pytest.mark.parametrize("problem, words", [
    ("long name", "bytes long and the file system allows"),
    ("a file", "exists and is not a folder"),
    ("read-only", ""),
])
def test_an_output_that_cannot_be_written_is_one_sentence_before_any_work(
        command, problem, words, tmp_path, fashion_idx, jpeg, request, capsys):
    if problem == "long name":
        out = tmp_path / ("n" * 300)
    elif problem == "a file":
        (tmp_path / "a-file").write_text("not a folder")
        out = tmp_path / "a-file" / "out"
    else:
        out = request.getfixturevalue("read_only") / "out"
        words = "the file system is read-only" if os.geteuid() == 0 else "permission denied"
    t0 = time.perf_counter()
    assert main(_command(command, out, fashion_idx, jpeg)) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert "cannot write" in err and words in err, err
    assert "not found" not in err  # refused before the checkpoint (or any data) was looked at
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize("command", ["pack", "train", "eval"])
def test_an_out_folder_that_is_an_existing_file_is_one_sentence(command, tmp_path, fashion_idx, jpeg, capsys):
    out = tmp_path / "taken"
    out.write_text("a file")
    assert main(_command(command, out, fashion_idx, jpeg)) == 2
    assert _one_sentence(capsys.readouterr().err).endswith(f"{out} exists and is not a folder; choose a folder")


def test_augment_preview_out_naming_a_folder_is_one_sentence(tmp_path, jpeg, capsys):
    assert main(["augment-preview", str(jpeg), "--out", str(tmp_path)]) == 2
    assert "is a folder; name a file in it instead" in _one_sentence(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------ two commands, one folder
def _slow_pack(src: Path, out: Path, seed: int) -> subprocess.Popen:
    """`minwa pack` through the CLI, slowed down per image so that it is surely still running."""
    script = textwrap.dedent(f"""
        import sys, time, minwa.data.decode as dec
        from minwa.cli import main
        real = dec.encode_png
        dec.encode_png = lambda img, level=6: (time.sleep(0.004), real(img, level))[1]
        sys.exit(main(["pack", {str(src)!r}, {str(out)!r}, "--shard-size", "200", "--workers", "1",
                       "--seed", "{seed}", "--quiet"]))
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_lock(out: Path, proc: subprocess.Popen) -> dict:
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        try:
            info = json.loads((out / LOCK_NAME).read_text())
            if info.get("pid") == proc.pid:
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.02)


def test_two_packs_into_one_folder_one_is_refused_and_the_result_is_valid(fashion_idx, tmp_path):
    out = tmp_path / "out"
    first = _slow_pack(fashion_idx, out, seed=1)
    _wait_for_lock(out, first)
    second = _minwa("pack", str(fashion_idx), str(out), "--seed", "2", "--shard-size", "200", "--quiet")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.returncode == 2
    err = _one_sentence(second.stderr)
    assert f"{out} is in use by `minwa pack` (pid {first.pid} on host " in err and " since " in err, err
    assert "wait for it to finish or choose another folder" in err
    assert verify(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 1 and manifest["num_samples"] == 3000
    assert _leftovers(out) == []


def test_a_folder_held_by_another_command_names_it(tmp_path, fashion_idx, capsys):
    out = tmp_path / "run"
    with FolderLock(out, "minwa train"):
        assert main(["pack", str(fashion_idx), str(out), "--quiet"]) == 2
        err = _one_sentence(capsys.readouterr().err)
        assert f"is in use by `minwa train` (pid {os.getpid()} on host " in err
    assert not (out / LOCK_NAME).exists()  # released: the file goes with the hold
    with hold_folder(out, "minwa train", enabled=False) as lock:  # a rank other than 0 holds nothing
        assert lock is None and not (out / LOCK_NAME).exists()
        with hold_folder(out, "minwa train") as lock:  # so rank 0 can hold it
            assert lock.held and json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_dead_commands_lock_is_taken_over(tmp_path, fashion_idx):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from minwa.utils.folder_lock import FolderLock
        FolderLock({str(out)!r}, "minwa pack").acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False, timeout=120)
    assert json.loads((out / LOCK_NAME).read_text())["command"] == "minwa pack"  # left behind by the dead
    r = _minwa("pack", str(fashion_idx), str(out), "--shard-size", "1000", "--quiet")
    assert r.returncode == 0, r.stderr
    assert verify(out) == [] and _leftovers(out) == []


# ------------------------------------------------------------------------------------------ a finished run's folder
def test_a_finished_run_folder_is_refused_or_cleared_on_request(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.txt").write_text("the user's own file")
    with pytest.raises(MinwaError, match=r"already holds a run \(final.json, final.safetensors, metrics.csv, metrics.jsonl, "
                                         r"tensorboard, train_state.*\); continue it with --resume"):
        check_fresh_run_folder(out, overwrite=False)
    assert (out / "final.json").exists()
    removed = check_fresh_run_folder(out, overwrite=True)
    assert {p.name for p in removed} >= {"final.json", "final.safetensors", "metrics.jsonl"}
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert check_fresh_run_folder(out, overwrite=False) == []  # fresh now


def test_killed_run_folder_is_not_appended_to(tmp_path):
    """Issue #16 item 11: a run killed before final.* (config.toml + metrics.jsonl only) is still a run:
    a new train refuses it, and --overwrite removes its metrics.jsonl instead of appending to it."""
    out = tmp_path / "killed"
    out.mkdir()
    (out / "config.toml").write_text("epochs = 1\n")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(MinwaError, match=r"already holds a run \(metrics.jsonl\)"):
        check_fresh_run_folder(out, overwrite=False)
    check_fresh_run_folder(out, overwrite=True)
    assert not (out / "metrics.jsonl").exists()
