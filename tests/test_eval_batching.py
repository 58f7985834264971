"""Issue 16 item 9: test views are batched across image sizes (one forward pass per test scale for centre
crops, per resized size for dense views) and give the per-size results; eval finds its data and writes its
files from anywhere; shards packed smaller than the test scale are said to be upsampled."""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from minwa.cli import main
from minwa.commands import eval as eval_cmd
from minwa.data import open_dataset, pack
from minwa.errors import MinwaError
from minwa.evaluate import member_from_model, predict
from minwa.evaluate import preprocess as P
from minwa.evaluate.ensemble import view_probs
from minwa.evaluate.pipeline import default_eval_data
from minwa.models import create_model
from minwa.models.checkpoint import save_checkpoint

CLASSES = ["abstract", "desktop", "nature", "pattern"]
META = {"model": "deepimage-scaling", "model_kwargs": {"widths": [4, 4, 8, 8, 8], "fc": [16, 16], "img_size": 32},
        "num_classes": 4, "in_chans": 3, "classes": CLASSES, "scale": 36, "crop": 32, "mean": [0.5], "std": [0.25]}


def _model():
    torch.manual_seed(0)
    return create_model("deepimage-scaling", 4, 3, **META["model_kwargs"]).eval()


@pytest.fixture(scope="module")
def photos(photo_folder):
    """Real photographs of many sizes (decoded small), plus one photograph at two sizes of one aspect ratio."""
    ds = open_dataset(photo_folder / "val")
    images = [ds.image(i, min_side=48) for i in range(0, len(ds), 13)]
    base = Image.fromarray(images[0]).crop((0, 0, 60, 40))
    images += [np.asarray(base.resize((90, 60))), np.asarray(base.resize((120, 80)))]  # 3:2 both
    assert len({im.shape for im in images}) >= 6
    return images


def _per_size(member, images, scales, dense):
    """The former path: one forward pass per group of equally sized images."""
    groups = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.shape].append(i)
    out = {}
    for idx in groups.values():
        for key, p in view_probs(member, [images[i] for i in idx], scales, True, dense, "cpu").items():
            out.setdefault(key, torch.empty(len(images), p.shape[1]))[idx] = p
    return out


def _count_calls(module):
    calls = []
    module.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    return calls


def test_centre_crops_run_once_per_scale_and_equal_the_per_size_path(photos):
    member = member_from_model(_model(), META)
    calls = _count_calls(member.model)
    new = view_probs(member, photos, [36, 48], True, False, "cpu")
    assert calls == [(2 * len(photos), 3, 32, 32)] * 2  # plain and mirrored together, one pass per scale
    old = _per_size(member, photos, [36, 48], False)
    for key in new:
        torch.testing.assert_close(new[key], old[key], rtol=0, atol=1e-5)


def test_dense_views_run_once_per_resized_size_and_equal_the_per_size_path(photos):
    member = member_from_model(_model(), META)
    calls = _count_calls(member.dense())
    new = view_probs(member, photos, [36], True, True, "cpu")
    sizes = {P.resized_size(*im.shape[:2], 36) for im in photos}
    assert len(calls) == len(sizes) < len({im.shape for im in photos})  # the two 3:2 copies share a pass
    assert any(c[2:] == (36, 54) and c[0] >= 2 * 2 for c in calls)
    old = _per_size(member, photos, [36], True)
    for key in new:
        torch.testing.assert_close(new[key], old[key], rtol=0, atol=1e-5)


def test_predict_reads_and_runs_in_batches_with_the_same_result(photos):
    member = member_from_model(_model(), META)
    whole = predict(None, photos, 2, scales=[36, 40], flip=True, members=[member], batch_size=len(photos))
    parts = predict(None, photos, 2, scales=[36, 40], flip=True, members=[member], batch_size=3)
    assert [r["image"] for r in parts] == [r["image"] for r in whole]
    for a, b in zip(whole, parts):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert np.allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-5)


def test_default_data_relative_to_where_training_ran(tmp_path, monkeypatch):
    base = tmp_path / "project"
    (base / "photos" / "val").mkdir(parents=True)
    run = base / "runs" / "a"
    run.mkdir(parents=True)
    meta = {"config": {"out": "runs/a", "data": {"val": "photos/val"}}}
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path alone would not be found
    assert default_eval_data(run, meta) == str(base / "photos" / "val")
    assert default_eval_data(run / "best.safetensors", meta) == str(base / "photos" / "val")
    # a run without a validation set: the held-out part of its training data, recorded in its folder
    (run / "held_out.csv").write_text("path,label\n")
    assert default_eval_data(run, {"config": {"out": "runs/a", "data": {"val": ""}}}) == str(run / "held_out.csv")
    with pytest.raises(MinwaError, match=r"^no evaluation data: pass --data PATH \(gone/val is not found"):
        default_eval_data(run, {"config": {"out": "runs/a", "data": {"val": "gone/val"}}})


def _run(argv):
    p = argparse.ArgumentParser()
    eval_cmd.add_arguments(p)
    return eval_cmd.run(p.parse_args(argv))


def _checkpoint(folder, photo_folder, val="val"):
    meta = {**META, "config": {"out": str(folder), "data": {"val": str(photo_folder / val)}}}
    save_checkpoint(folder / "best", _model(), meta)
    return folder


def test_eval_without_out_or_data_writes_beside_the_checkpoint(photo_folder, tmp_path, capsys, monkeypatch):
    run = _checkpoint(tmp_path / "run", photo_folder)
    monkeypatch.chdir(tmp_path)
    assert _run(["--ckpt", str(run), "--set", "limit=6"]) == 0
    out = capsys.readouterr().out
    assert f"data       {photo_folder / 'val'}" in out
    assert (run / "eval" / "confusion.png").is_file() and (run / "eval" / "eval.json").is_file()
    assert f"confusion matrix: {run / 'eval' / 'confusion.png'}" in out.replace("\n", "")


def test_a_scale_above_the_packed_size_is_said_once(photo_folder, tmp_path, capsys):
    shards = tmp_path / "shards"
    pack(open_dataset(photo_folder / "val"), shards, max_side=40, workers=1, progress=False)
    run = _checkpoint(tmp_path / "run", photo_folder)
    assert _run(["--ckpt", str(run), "--data", str(shards), "--set", "scales=[36,48]", "--set", "limit=4"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "test scale 48 exceeds the 40 px shorter side the shards" in err and "upsampled" in err
    assert _run(["--ckpt", str(run), "--data", str(shards), "--set", "scales=[36]", "--set", "limit=4"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_train_records_the_data_it_was_given_absolute(photo_folder, capsys, monkeypatch):
    """So that eval's default data (the checkpoint's data.val) and held_out.csv work from any directory."""
    monkeypatch.chdir(photo_folder)
    assert main(["train", "--data", "train", "--val", "val", "--recipe", "photos", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert f'train = "{photo_folder / "train"}"' in out and f'val = "{photo_folder / "val"}"' in out
