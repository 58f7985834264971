"""Issue #16's done-when: a new user's journey on a folder of real colour photographs, through the README's
own commands, as separate ``minwa`` processes — pack, train with the defaults and no ``--val``, Ctrl-C,
``--resume DIR`` alone, evaluate at several scales with flips, fine-tune the checkpoint onto another class
subset, predict a folder. Only the length (``--epochs``) and the packed size differ from the README.

The photo_folder fixture splits train/ and val/ by source picture, so accuracy on val/ is accuracy on
pictures the model never saw a crop of.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minwa.data import open_dataset, verify
from minwa.models.checkpoint import read_meta
from minwa.train.logs import read_metrics
from minwa.utils.device_caps import resolve_precision

CLASSES = ["abstract", "desktop", "nature", "pattern"]


def minwa(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "minwa", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check:
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def train_until_interrupted(args, cwd: Path, run: Path) -> subprocess.CompletedProcess:
    """Start ``minwa train ARGS`` and press Ctrl-C (SIGINT to its process group, loader workers included)
    once its first validation is on disk."""
    p = subprocess.Popen([sys.executable, "-m", "minwa", "train", *map(str, args)], cwd=cwd, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 600
    metrics = run / "metrics.jsonl"
    while p.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and any(r["kind"] == "val" for r in read_metrics(metrics)):
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture(scope="module")
def journey(photo_folder, tmp_path_factory):
    """The whole journey once; each test below asserts one part of what the user saw."""
    home = tmp_path_factory.mktemp("user")
    photos = photo_folder
    seen = {"home": home, "photos": photos}
    seen["pack"] = minwa("pack", photos / "train", "data/photos-train", "--max-side", 128, cwd=home)
    seen["verify"] = minwa("verify", "data/photos-train", cwd=home)
    seen["interrupted"] = train_until_interrupted(["--data", "data/photos-train", "--out", "runs/photos",
                                                   "--epochs", 3], home, home / "runs/photos")
    seen["stopped_at"] = max(r["step"] for r in read_metrics(home / "runs/photos/metrics.jsonl"))
    seen["resume"] = minwa("train", "--resume", "runs/photos", cwd=home)
    seen["eval"] = minwa("eval", "--ckpt", "runs/photos", "--data", photos / "val", "--set", "scales=[64,72,96]",
                         "--set", "flip=true", cwd=home)
    seen["eval_json"] = json.loads(minwa("eval", "--ckpt", "runs/photos", "--data", photos / "val", "--set",
                                         "scales=[64,72,96]", "--set", "flip=true", "--json", cwd=home).stdout)
    seen["eval_held_out"] = minwa("eval", "--ckpt", "photos", cwd=home / "runs")  # no --data, elsewhere
    seen["finetune"] = minwa("train", "--init", "runs/photos", "--recipe", "finetune", "--data", "data/photos-train",
                             "--set", 'data.classes=["nature","pattern"]', "--out", "runs/nature-pattern",
                             "--epochs", 1, cwd=home)
    seen["predict"] = minwa("predict", "--ckpt", "runs/nature-pattern", photos / "val" / "nature", "--topk", 2,
                            cwd=home)
    seen["predict_json"] = json.loads(minwa("predict", "--ckpt", "runs/nature-pattern", photos / "val" / "nature",
                                            "--topk", 2, "--json", cwd=home).stdout)
    return seen


def test_pack_keeps_every_photo_and_verifies(journey):
    assert "packed 328 images (4 classes)" in journey["pack"].stdout
    assert not verify(journey["home"] / "data/photos-train")
    assert open_dataset(journey["home"] / "data/photos-train").classes == CLASSES


def test_training_without_val_holds_out_a_tenth_and_says_what_it_does(journey):
    assert journey["interrupted"].stdout.splitlines()[0] == "recipe: photos (photographs; --recipe to choose another)"
    out = journey["interrupted"].stderr  # the start-up summary, beside the progress bar
    for line in ("295 training images in 4 classes", "33 validation images held out of the training folder (data.val_fraction=0.1, listed in held_out.csv)",
                 "shorter side 72 px, 64 px crops",
                 "fashion-net", f"precision {resolve_precision('auto', torch.device('cpu'))}"):  # bf16 where the CPU has it
        assert line in out, line
    held = open_dataset(journey["home"] / "runs/photos/held_out.csv")
    assert len(held) == 33 and held.classes == CLASSES


def test_ctrl_c_saves_and_resume_dir_alone_finishes_the_run(journey):
    run = journey["home"] / "runs/photos"
    stopped = journey["interrupted"]
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-2000:]
    assert "minwa train --resume runs/photos" in stopped.stderr
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "val"]
    assert journey["stopped_at"] < 27 and steps == sorted(set(steps)) and len(steps) == 3  # one line per epoch
    final = json.loads((run / "final.json").read_text())["metrics"]
    assert (final["epochs"], final["steps"]) == (3.0, 27)
    assert "after 3.0 epochs" in journey["resume"].stdout and "epoch 3/3:" in journey["resume"].stderr
    for name in ("best.safetensors", "final.safetensors", "learning_curve.png", "metrics.csv", "config.toml"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())


def test_multiscale_flip_eval_on_unseen_pictures_is_above_chance(journey):
    out = journey["eval"].stdout
    assert out.startswith("checkpoint runs/photos/best.safetensors (epoch ")  # which checkpoint, said first
    report = journey["eval_json"]
    names = [r["name"] for r in report["rows"]]
    assert names[-1] == "photos @64,72,96 +flip" and "photos @96" in names and len(names) == 8
    majority = 32 / 104  # the largest val/ class: always guessing it scores this
    assert 1 - report["top1_error"] > majority + 0.05, report["top1_error"]
    assert report["images"] == 104
    assert "top-5 error" not in out and "top-5 not shown" in out  # four classes: top-5 is always right
    assert "confusion matrix: runs/photos/eval/confusion.png" in out  # written without --out, and said where


def test_eval_without_data_scores_the_held_out_tenth_from_anywhere(journey):
    out = journey["eval_held_out"].stdout
    assert "held_out.csv" in out and "(33 images" in out
    run = journey["home"] / "runs/photos"
    assert (run / "eval" / "confusion.png").is_file() and (run / "eval" / "eval.json").is_file()


def test_finetuning_onto_two_classes_keeps_the_checkpoints_geometry(journey):
    home = journey["home"]
    was, now = read_meta(home / "runs/photos/best"), read_meta(home / "runs/nature-pattern/final")
    assert now["classes"] == ["nature", "pattern"]
    assert (now["scale"], now["crop"], now["mean"], now["std"]) == (was["scale"], was["crop"], was["mean"], was["std"])
    assert 'recipe = "photos-finetune"' in (home / "runs/nature-pattern/config.toml").read_text()


def test_predict_on_a_folder_names_the_checkpoint_and_each_photo(journey):
    out = journey["predict"].stdout
    assert out.startswith("checkpoint runs/nature-pattern/best.safetensors (epoch ")
    results = journey["predict_json"]
    nature = sorted(p.name for p in (journey["photos"] / "val" / "nature").iterdir())
    assert sorted(Path(r["image"]).name for r in results) == nature
    assert all([t["class"] for t in r["top"]] in (["nature", "pattern"], ["pattern", "nature"]) for r in results)
    assert all(abs(sum(t["probability"] for t in r["top"]) - 1) < 1e-4 for r in results)
