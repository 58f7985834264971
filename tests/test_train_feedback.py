"""What a person gets from a training run on their own photographs: the terminal (start-up summary, epoch
lines above the live bar, kept by --quiet), best.* beside final.*, metrics.csv and TensorBoard beside
metrics.jsonl (resume-safe), early stopping, the learning curve, and mixup/cutmix."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time

import numpy as np
import pytest
import torch
from rich.console import Console

from minwa.augment.config import AugmentConfig
from minwa.augment.mix import Mixer, beta_symmetric, MIX_STREAMS
from minwa.cli import main
from minwa.models.checkpoint import checkpoint_paths, read_meta
from minwa.train.logs import CSV_COLUMNS, RunLog, read_metrics
from minwa.train.reporting import Reporter, epoch_line
from minwa.utils import counter_rng as rng

# a small, fast run on the photos: resnet-tiny on 32 px crops of the shorter side at 40, fp32, one thread
SMALL = ["--recipe", "deepimage16-256", "--model", "resnet-tiny", "--set", "data.scale=40", "--set", "data.crop=32",
         "--set", "data.batch_size=32", "--set", "data.workers=0", "--set", "runtime.threads=1", "--set", "runtime.precision=fp32",
         "--set", "log_every=4"]


def _photo_run(photo_folder, out, *extra):
    return main(["train", "--quiet", "--data", str(photo_folder / "train"), "--val", str(photo_folder / "val"),
                 "--out", str(out), *SMALL, *extra])


@pytest.fixture(scope="module")
def photo_run(photo_folder, tmp_path_factory):
    """Three epochs on the photos with --quiet; (run folder, stderr, stdout)."""
    import contextlib
    import sys

    out = tmp_path_factory.mktemp("feedback") / "run"
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        assert _photo_run(photo_folder, out, "--epochs", "3") == 0
    sys.stderr.write(err.getvalue())
    return out, err.getvalue(), std.getvalue()


# -- the terminal

def test_quiet_keeps_the_summary_and_one_labelled_line_per_epoch(photo_run):
    out, err, std = photo_run
    meta = read_meta(out / "final")
    # the start-up summary: images, classes, steps and what drop_last leaves out, parameters, device, lr arithmetic
    assert "training images in 4 classes (abstract, desktop, nature, pattern)" in err
    assert "validation images" in err and "per epoch x 3 epochs" in err and "global batch 32" in err
    assert "drop_last leaves out" in err and "M parameters" in err and "cpu" in err and "precision fp32" in err  # SMALL sets fp32
    assert "cache:" in err and "0.01 per 256 images x 32/256 = 0.00125 peak" in err
    lines = [ln for ln in err.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    for ln in lines:  # each loss says whose it is; 4 classes: no top-5 (always 100%)
        assert "val top-1" in ln and "val loss" in ln and "train loss" in ln and "top-5" not in ln
    assert "━" not in err  # --quiet: no bar
    records = read_metrics(out / "metrics.jsonl")
    assert all("val_top5" not in r for r in records)
    assert meta["metrics"]["best_val_acc"] == max(r["val_acc"] for r in records if r["kind"] == "val")
    assert "final " in std and "best (epoch" in std and "best.safetensors" in std


def test_a_fractional_length_shows_the_epochs_the_run_really_trains(photo_folder, tmp_path, capsys):
    """0.25 epochs of 10 steps are 3 steps (0.3 epochs); the lines used to say "epoch 0.30/0.25"."""
    assert _photo_run(photo_folder, tmp_path / "run", "--epochs", "0.25") == 0
    heads = [ln.split(":")[0] for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch ")]
    assert heads == ["epoch 0.30/0.3"]


def _screen(raw: str) -> list[str]:
    """What a terminal shows for ``raw`` (carriage return, newline, erase line, cursor up; colours dropped)."""
    rows, r, c = [""], 0, 0
    for tok in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if tok == "\r":
            c = 0
        elif tok == "\n":
            r, c = r + 1, 0
            rows += [""] * (r + 1 - len(rows))
        elif tok.startswith("\x1b") and tok.endswith("K"):
            rows[r] = ""
        elif tok.startswith("\x1b") and tok.endswith("A"):
            r -= int(tok[2:-1] or 1)
        elif not tok.startswith("\x1b"):
            rows[r] = rows[r][:c].ljust(c) + tok + rows[r][c + len(tok):]
            c += len(tok)
    return rows


def test_epoch_lines_print_above_the_live_bar_not_onto_it():
    raw = io.StringIO()
    rep = Reporter(bar=True, console=Console(file=raw, force_terminal=True, width=120))
    with rep:
        rep.start(total=20, completed=0)
        rep.epoch(1, 2)
        for _ in range(10):
            rep.step(32, 0.01, 1.25)
        rep.validating()
        rep.line(epoch_line({"epoch": 1.0, "val_acc": 0.5, "val_loss": 1.1, "train_loss": 1.25, "lr": 0.01,
                             "time": 3.0}, 2, 4))
    rows = [row for row in _screen(raw.getvalue()) if row.strip()]
    assert rows[0] == "epoch 1/2: val top-1 50.00%, val loss 1.100 | train loss 1.250 | lr 0.01 | 3 s"  # its own line
    assert len(rows) == 2 and rows[1].startswith("epoch 1/2 · done ━")  # then the bar, its caption current
    assert "10/20 loss 1.250" in rows[1] and "img/s · lr 0.01" in rows[1]


def test_top5_is_shown_only_with_more_than_five_classes():
    rec = {"epoch": 2.0, "val_acc": 0.5, "val_top5": 0.9, "val_loss": 1.0, "train_loss": 1.2, "lr": 0.1, "time": 9.0}
    assert "top-5 90.00%" in epoch_line(rec, 4, 10)
    assert "top-5" not in epoch_line(rec, 4, 4) and "top-5" not in epoch_line(rec, 4, 5)


# -- checkpoints

def test_best_is_kept_beside_final_and_a_run_folder_means_best(photo_run):
    out, _, _ = photo_run
    vals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"]
    best = max(vals, key=lambda r: r["val_acc"])
    meta = json.loads((out / "best.json").read_text())
    assert meta["metrics"]["val_acc"] == best["val_acc"] and meta["metrics"]["epochs"] == best["epoch"]
    assert checkpoint_paths(out) == (out / "best.safetensors", out / "best.json")
    assert checkpoint_paths(out / "final")[0] == out / "final.safetensors"  # the last epoch, when named
    assert json.loads((out / "final.json").read_text())["metrics"]["steps"] == vals[-1]["step"]


def test_a_run_folder_without_best_means_final(tmp_path):
    (tmp_path / "final.safetensors").write_bytes(b"")
    (tmp_path / "final.json").write_text("{}")
    assert checkpoint_paths(tmp_path)[0] == tmp_path / "final.safetensors"


# -- logs

def test_csv_and_tensorboard_hold_every_record(photo_run):
    out, _, _ = photo_run
    records = read_metrics(out / "metrics.jsonl")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == len(records) and tuple(rows[0]) == CSV_COLUMNS
    assert [(r["kind"], int(r["step"])) for r in rows] == [(r["kind"], r["step"]) for r in records]
    assert any(r["kind"] == "train" and r["step"] % 10 == 0 for r in records)  # a point at each epoch's end
    events = _tensorboard_scalars(out / "tensorboard")
    assert [s for s, _ in events["val/val_acc"]] == [r["step"] for r in records if r["kind"] == "val"]


def _tensorboard_scalars(folder) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_resume_does_not_duplicate_steps_in_any_log(tmp_path):
    """The killed run logged steps up to 50, its state was saved at 30: the resumed run logs 40 and 50
    again, and each log holds each step once, with the resumed run's values."""
    def rec(step, loss):
        return {"kind": "train", "step": step, "epoch": step / 10, "loss": loss, "lr": 0.1, "time": 1.0}

    first = RunLog(tmp_path)
    first.start(None)
    for step in (10, 20, 30, 40, 50):
        first.write(rec(step, 1.0))
    first.close()
    # event files are named events.out.tfevents.<second>.<host>.<pid>.<writer count> and read in name order: a
    # real resume is a later second (or another pid); in one test process, within one second, counts 9 and 10
    # would sort the resumed file first, so the resume starts in the next second, as a real one does
    time.sleep(1.01 - time.time() % 1)
    second = RunLog(tmp_path)
    second.start(30)
    for step in (40, 50):
        second.write(rec(step, 0.5))
    second.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == \
        [(10, 1.0), (20, 1.0), (30, 1.0), (40, 0.5), (50, 0.5)]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [(int(r["step"]), float(r["train_loss"])) for r in rows] == [(10, 1.0), (20, 1.0), (30, 1.0), (40, 0.5),
                                                                       (50, 0.5)]
    assert _tensorboard_scalars(tmp_path / "tensorboard")["train/loss"] == [(10, 1.0), (20, 1.0), (30, 1.0),
                                                                            (40, 0.5), (50, 0.5)]


# -- early stopping, lr drops, and the curve

def test_early_stopping_and_lr_drops_are_said_logged_and_drawn(photo_folder, tmp_path, monkeypatch, capsys):
    """Validation is scripted (the control logic is under test; training, with mixup and cutmix on, is real):
    top-1 rises to 0.5 at the 2nd validation, then not again; plateau patience 2 drops the lr at the 4th,
    early_stop_patience 3 stops at the 5th. best.* holds the 2nd."""
    from minwa.train.trainer import Trainer

    script = iter([0.3, 0.5, 0.4, 0.45, 0.5, 0.2, 0.2, 0.2])
    monkeypatch.setattr(Trainer, "validate", lambda self: {"val_acc": next(script), "val_loss": 1.0})
    out = tmp_path / "run"
    assert _photo_run(photo_folder, out, "--epochs", "4", "--set", "eval_every=0.5", "--set", "early_stop_patience=3",
                      "--set", "optim.plateau_patience=2", "--set", "augment.mixup=0.4",
                      "--set", "augment.cutmix=1.0") == 0
    err = capsys.readouterr().err
    records = read_metrics(out / "metrics.jsonl")
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["val_acc"] for r in vals] == [0.3, 0.5, 0.4, 0.45, 0.5]
    drop = next(r for r in records if r["kind"] == "lr_drop")
    stop = next(r for r in records if r["kind"] == "early_stop")
    assert drop["step"] == vals[3]["step"] and math.isclose(drop["lr"], 0.000125)
    assert stop["step"] == vals[4]["step"] and stop["best_val_acc"] == 0.5 and stop["best_epoch"] == vals[1]["epoch"]
    assert "learning rate 0.00125 -> 0.000125" in err
    assert [ln for ln in err.splitlines() if ln.startswith("early stop at epoch")] == [
        f"early stop at epoch {stop['epoch']:.2f}: val top-1 has not improved on 50.00% (epoch {vals[1]['epoch']:.2f}) "
        f"for 3 validations (early_stop_patience)"]
    assert json.loads((out / "best.json").read_text())["metrics"]["steps"] == vals[1]["step"]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")  # soft-target loss
    assert (out / "learning_curve.png").stat().st_size > 10_000


def test_learning_curve_shows_train_and_val_loss_top1_and_lr_drops(tmp_path):
    """Drawn from the records of the whole run; checked by its pixels: the val-loss colour (tab:cyan) and
    the lr-drop line's grey are there."""
    from PIL import Image

    from minwa.train.plots import plot_learning_curve

    records = [{"kind": "train", "step": 10 * e, "epoch": e, "loss": 2.0 / e} for e in (1, 2, 3, 4)]
    records += [{"kind": "val", "step": 10 * e, "epoch": e, "val_acc": 0.2 * e, "val_loss": 2.2 / e} for e in (1, 2, 3, 4)]
    records += [{"kind": "lr_drop", "step": 20, "epoch": 2.0, "lr": 0.001}]
    path = plot_learning_curve(records, tmp_path / "curve.png", title="resnet18 on photos/train (4 classes)")
    px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)

    def present(rgb):
        return (np.abs(px - rgb).sum(1) < 30).sum() > 50

    assert present((23, 190, 207)) and present((31, 119, 180)) and present((214, 39, 40))  # val loss, train, top-1


# -- mixup and cutmix

def _photo_batch(photo_folder, n=8):
    from minwa.data import open_dataset
    from minwa.data.loader import decode_all

    ds = open_dataset(str(photo_folder / "train"))
    which = np.linspace(0, len(ds) - 1, n).astype(np.int64)  # spread over the (class-sorted) folder
    images = decode_all(ds, (32, 32), 0, which)
    return images.float() / 255, torch.as_tensor(ds.labels[which]).long()


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixing_matches_its_targets(photo_folder, mixup, cutmix):
    x, y = _photo_batch(photo_folder)
    mixer = Mixer(AugmentConfig(mixup=mixup, cutmix=cutmix), num_classes=4)
    idx = torch.arange(100, 108)
    out, target = mixer(x, y, idx, epoch=3, seed=7)
    assert torch.allclose(target.sum(1), torch.ones(8))
    pair = torch.arange(8) ^ 1
    checked = {"cut": 0, "blend": 0}
    for i in range(8):
        j = int(pair[i])
        from_self = torch.isclose(out[i], x[i]).all(0)
        from_partner = torch.isclose(out[i], x[j]).all(0)
        if torch.allclose(out[i], x[i]) or y[i] == y[j]:
            continue  # not mixed, or the label cannot tell
        w = float(target[i, y[i]])
        if (from_self | from_partner).all():  # cutmix: the pasted area is the partner's share
            assert abs(float((from_partner & ~from_self).float().mean()) - (1 - w)) < 0.02
            checked["cut"] += 1
        else:  # mixup: a blend with the label's weight
            assert torch.allclose(out[i], w * x[i] + (1 - w) * x[j], atol=1e-5)
            checked["blend"] += 1
    assert (checked["cut"] > 0) == (cutmix > 0) and (checked["blend"] > 0) == (mixup > 0), checked


def test_mixing_is_the_same_on_two_ranks_and_after_a_resume(photo_folder):
    """Two ranks' halves of a global batch mix exactly as one process mixes the whole; the same (seed,
    epoch, samples) mix the same way again (a resumed run)."""
    x, y = _photo_batch(photo_folder)
    mixer = Mixer(AugmentConfig(mixup=0.4, cutmix=1.0), num_classes=4)
    idx = torch.arange(200, 208)
    whole = mixer(x, y, idx, 5, 0)
    halves = [mixer(x[s], y[s], idx[s], 5, 0) for s in (slice(0, 4), slice(4, 8))]
    assert torch.equal(whole[0], torch.cat([h[0] for h in halves]))
    assert torch.equal(whole[1], torch.cat([h[1] for h in halves]))
    again = Mixer(AugmentConfig(mixup=0.4, cutmix=1.0), num_classes=4)(x, y, idx, 5, 0)
    assert torch.equal(again[0], whole[0])
    assert not torch.equal(mixer(x, y, idx, 6, 0)[1], whole[1])  # another epoch, other draws


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.5])
def test_beta_draws_have_the_right_mean_and_variance(alpha):
    words = rng.Streams(MIX_STREAMS).bits(torch.arange(40_000), 0, 1)
    lam = beta_symmetric(words[:, :50], torch.full((40_000,), alpha, dtype=torch.float64))
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(float(lam.mean()) - 0.5) < 0.01
    assert abs(float(lam.var()) - 1 / (4 * (2 * alpha + 1))) < 0.01


def test_mixing_settings_are_checked():
    from minwa.augment.config import check
    from minwa.errors import MinwaError

    with pytest.raises(MinwaError, match="mixup and augment.cutmix"):
        check(AugmentConfig(mixup=-1))
    with pytest.raises(MinwaError, match="p_mix"):
        check(AugmentConfig(p_mix=2))
