"""A user's own photographs (issue 16), the data side: a held-out validation split when no --val is given,
the recipe chosen from the data, fine-tuning in the checkpoint's geometry, labels files (ImageNet's
validation set), class weights, and the data messages. Real colour photographs: the photo_folder fixture."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import small_idx

from minwa.cli import main
from minwa.data import LabelFileDataset, open_dataset, pack
from minwa.data.listing import listing_csv
from minwa.data.subset import hold_out, held_out_indices
from minwa.errors import MinwaError
from minwa.models.checkpoint import read_meta
from minwa.train.build import build_criterion, class_weights, small_data_note
from minwa.train.config import OptimConfig
from minwa.train.optim import Schedule
from minwa.train.recipes import RECIPES, get_recipe, recipe_for_data

# a run that takes seconds on 2 cores: fashion-net cut to two narrow stages, 40 px squares, one epoch
FAST = ["--quiet", "--epochs", "1", "--set", "runtime.precision=fp32", "--set", "runtime.threads=1", "--set", "data.workers=0",
        "--model", "fashion-net", "--set", 'model.kwargs={"widths": [8, 16]}', "--set", "data.scale=40",
        "--set", "data.crop=32", "--set", "data.batch_size=16", "--set", "optim.ema=0"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Exit code, stderr and stdout of ``minwa ARGV``; an error must be exactly one line, no traceback."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    err = got.err.strip()
    if code == 2:
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return code, err, got.out


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ held-out validation
def test_held_out_split_is_stratified_seeded_and_never_empties_a_class():
    labels = np.repeat(np.arange(4), [56, 112, 64, 96])  # the photo_folder fixture's training classes
    out = held_out_indices(labels, 0.1, seed=0)
    assert np.bincount(labels[out]).tolist() == [6, 11, 6, 10]  # round(0.1 n) of every class
    assert np.array_equal(out, held_out_indices(labels, 0.1, seed=0))  # a resume or another rank: the same
    assert not np.array_equal(out, held_out_indices(labels, 0.1, seed=1))
    few = np.array([0, 0, 1, 2, 2, 2])  # a class of one image keeps it; small classes give one
    assert np.bincount(few[held_out_indices(few, 0.1, 0)], minlength=3).tolist() == [1, 0, 1]


def test_without_val_a_held_out_split_validates_and_is_recorded(photo_folder, tmp_path, capsys):
    run = tmp_path / "run"
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", run, *FAST)
    assert code == 0, err
    assert out.splitlines()[0] == "recipe: photos (photographs; --recipe to choose another)"
    train = open_dataset(photo_folder / "train")
    _, val = hold_out(train, 0.1, seed=0)
    held = open_dataset(run / "held_out.csv")  # the record reads back as a labels file: `minwa eval --data` takes it
    assert len(held) == 33 and np.bincount(held.labels).tolist() == [6, 11, 6, 10]
    assert held.files == [Path(val.source(i)) for i in range(len(val))] and held.classes == train.classes
    assert all(f.is_relative_to(photo_folder / "train") for f in held.files)
    vals = [r for r in records(run) if r["kind"] == "val"]
    assert vals and all(0 <= r["val_acc"] <= 1 for r in vals)
    assert "val_fraction = 0.1" in (run / "config.toml").read_text()
    # fashion's recipe names no data: Fashion-MNIST is never validated on behind the user's back
    assert all(get_recipe(name).data.train == "" == get_recipe(name).data.val for name in RECIPES)


def test_no_validation_at_all_leaves_the_plateau_schedule_alone(photo_folder, tmp_path, capsys):
    run = tmp_path / "run"
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", run, *FAST, "--epochs", "3",
                        "--set", "data.val_fraction=0", "--set", "optim.schedule=plateau", "--set", "optim.plateau_patience=1")
    assert code == 0, err
    recs = records(run)
    assert not (run / "held_out.csv").exists() and not [r for r in recs if r["kind"] == "lr_drop"]
    assert len({r["lr"] for r in recs if r["kind"] == "val"}) == 1  # no validation: the rate was never cut
    s = Schedule(OptimConfig(schedule="plateau", plateau_patience=1), 100, 10)
    assert not any(s.observe(math.nan) for _ in range(5)) and s.plateau_factor == 1.0
    assert s.observe(0.5) is False and s.observe(0.4) is True  # a real plateau still divides by 10


def test_a_held_out_record_reads_back_from_shards_and_idx_files(tmp_path, monkeypatch):
    """The journey's defect: `minwa pack` then `minwa train` without --val recorded shard members in
    held_out.csv, which eval could not open ("... is not a file"). Every source's record reads back as
    exactly the samples held out, from any directory."""
    small_idx(tmp_path / "idx", n=200)
    pack(tmp_path / "idx", tmp_path / "shards", workers=1, progress=False)
    for source in (tmp_path / "shards", tmp_path / "idx"):
        _, held = hold_out(open_dataset(source), 0.1, seed=0)
        record = tmp_path / f"{source.name}-held_out.csv"
        record.write_text(listing_csv(held))
        monkeypatch.chdir("/")
        back = open_dataset(record)
        assert [back.source(i) for i in range(len(back))] == [held.source(i) for i in range(len(held))]
        assert np.array_equal(back.labels, held.labels) and back.classes == held.classes
        assert np.array_equal(back.image(3), held.image(3))
    record.write_text(record.read_text().replace("[0]", "[9999]") if "[0]" in record.read_text()
                      else record.read_text() + f"{tmp_path / 'idx'}:train[9999],0\n")
    with pytest.raises(MinwaError, match=r"names .*train\[9999\], which is not a sample of"):
        open_dataset(record)


# ------------------------------------------------------------------------------------------ recipes
def test_the_recipe_is_chosen_from_the_data(photo_folder, tmp_path):
    small_idx(tmp_path / "idx", n=200)
    assert recipe_for_data(str(tmp_path / "idx")) == ("fashion", "grey 28x28 images, like Fashion-MNIST's")
    pack(tmp_path / "idx", tmp_path / "idx-shards", workers=1, progress=False)
    assert recipe_for_data(str(tmp_path / "idx-shards"))[0] == "fashion"
    rest, held = hold_out(open_dataset(tmp_path / "idx-shards"), 0.1, seed=0)  # shards are held out from alike
    assert len(rest) + len(held) == 200 and ".tar:" in held.source(0)
    assert recipe_for_data(str(tmp_path / "nowhere")) == ("photos", "")  # the trainer says what is wrong
    assert recipe_for_data(str(photo_folder / "train")) == ("photos", "photographs")
    photos = get_recipe("photos")
    assert photos.data.batch_size <= 328 // 8 and photos.data.scale and photos.data.crop < photos.data.scale
    ft = get_recipe("finetune", str(photo_folder / "train"))
    assert (ft.data.scale, ft.data.crop) == (0, 0) and ft.augment.preset == photos.augment.preset
    assert ft.data.batch_size == photos.data.batch_size and ft.optim.lr == photos.optim.lr / 10


def test_finetuning_inherits_the_checkpoints_geometry_normalisation_and_model(photo_folder, tmp_path, capsys):
    base = tmp_path / "base"
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", base, *FAST,
                        "--set", "data.classes=abstract,desktop")
    assert code == 0, err
    code, err, out = run_cli(capsys, "train", "--recipe", "finetune", "--init", base / "final", "--data",
                        photo_folder / "train", "--out", tmp_path / "ft", "--quiet", "--epochs", "0.5",
                        "--set", "runtime.threads=1", "--set", "data.workers=0", "--set", "data.classes=nature,pattern")
    assert code == 0, err
    was, now = read_meta(base / "final"), read_meta(tmp_path / "ft" / "final")
    assert (now["scale"], now["crop"]) == (was["scale"], was["crop"]) == (40, 32)
    assert (now["mean"], now["std"]) == (was["mean"], was["std"])
    assert now["model"] == "fashion-net" and now["model_kwargs"] == was["model_kwargs"]
    assert now["classes"] == ["nature", "pattern"] and now["config"]["data"]["batch_size"] == 32


def test_a_batch_too_large_for_a_small_set_is_one_warning():
    note = small_data_note(375, 256, 1)
    assert note == ("375 training images in global batches of 256: 1 step per epoch, 119 images left out of "
                    "each; set data.batch_size=32 (or lower) for a set this small")
    assert small_data_note(256, 256, 1) == ("256 training images in global batches of 256: 1 step per epoch; set "
                                            "data.batch_size=32 (or lower) for a set this small")  # none left out
    assert small_data_note(295, 32, 9) == "" and small_data_note(60_000, 256, 234) == ""


# ------------------------------------------------------------------------------------ class weights
def test_balanced_class_weights_and_the_rank_split_of_the_loss():
    labels = np.repeat(np.arange(3), [10, 30, 60])
    w = class_weights("balanced", labels, 4)
    assert torch.allclose(w, torch.tensor([100 / 40, 100 / 120, 100 / 240, 0.0]))
    assert class_weights("none", labels, 3) is None
    crit = build_criterion(OptimConfig(class_weights="balanced", label_smoothing=0.1), labels, 4, "cpu")
    logits, y = torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0, 2, 2])
    crit = crit.double()
    # each rank sums its half with the same weights: the halves add up to the whole batch's loss
    assert torch.allclose(crit(logits[:4], y[:4]) + crit(logits[4:], y[4:]), crit(logits, y))
    plain = build_criterion(OptimConfig(), labels, 4, "cpu")
    assert plain.weight is None


def test_class_weights_train_and_are_checked(photo_folder, tmp_path, capsys):
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", tmp_path / "w", *FAST,
                        "--epochs", "0.5", "--set", "optim.class_weights=balanced", "--set", "data.val_fraction=0")
    assert code == 0, err
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", tmp_path / "x", *FAST,
                        "--set", "optim.class_weights=inverse")
    assert code == 2 and "optim.class_weights must be none or balanced" in err


# -------------------------------------------------------------------------------------- label files
def _flat_val(photo_folder: Path, root: Path) -> tuple[Path, list[tuple[str, str]]]:
    """val/ as ImageNet's validation set comes: one flat folder of renamed images, the classes elsewhere."""
    root.mkdir()
    rows = []
    for k, f in enumerate(sorted((photo_folder / "val").glob("*/*.jpg"))):
        name = f"VAL_{k:05d}.JPEG"
        shutil.copy(f, root / name)
        rows.append((name, f.parent.name))
    return root, rows


def test_a_flat_validation_folder_with_a_labels_file_or_csv(photo_folder, tmp_path, capsys):
    flat, rows = _flat_val(photo_folder, tmp_path / "flat")
    (flat / "labels.csv").write_text("path,label\n" + "".join(f"{n},{c}\n" for n, c in rows))
    ds = open_dataset(flat)
    assert isinstance(ds, LabelFileDataset) and len(ds) == 104
    assert ds.classes == open_dataset(photo_folder / "train").classes == ["abstract", "desktop", "nature", "pattern"]
    assert [ds.classes[y] for y in ds.labels] == [c for _, c in rows]
    assert np.array_equal(ds.image(5), open_dataset(photo_folder / "val").image(5))  # sorted alike: same files
    # Caffe's val.txt (path label); ImageNet's LOC_val_solution.csv (ImageId without suffix, boxes after the class)
    (tmp_path / "val.txt").write_text("".join(f"flat/{n} {c}\n" for n, c in rows))
    (tmp_path / "solution.csv").write_text("ImageId,PredictionString\n" +
                                           "".join(f"flat/{n[:-5]},{c} 1 2 30 40 {c} 5 6 7 8\n" for n, c in rows))
    for other in (open_dataset(tmp_path / "val.txt"), open_dataset(tmp_path / "solution.csv")):
        assert other.classes == ds.classes and np.array_equal(other.labels, ds.labels) and other.files == ds.files
    # class indices, named by classes.txt
    (flat / "labels.csv").write_text("".join(f"{n},{ds.classes.index(c)}\n" for n, c in rows))
    (flat / "classes.txt").write_text("\n".join(ds.classes) + "\n")
    assert open_dataset(flat).classes == ds.classes and np.array_equal(open_dataset(flat).labels, ds.labels)
    (tmp_path / "missing.csv").write_text("flat/VAL_00000.JPEG,nature\nflat/nope.jpg,nature\n")
    with pytest.raises(MinwaError, match=r"missing.csv line 2 names flat/nope.jpg, which is not a file"):
        open_dataset(tmp_path / "missing.csv")
    # usable by pack and by train (validating a model trained on the class folders, matched by name)
    m = pack(tmp_path / "val.txt", tmp_path / "val-shards", workers=1, progress=False)
    assert m["num_samples"] == 104 and m["classes"] == ds.classes and m["source"]["kind"] == "labels"
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--val", tmp_path / "val.txt",
                        "--out", tmp_path / "run", *FAST, "--set", "data.classes=abstract,pattern")
    assert code == 0, err
    assert [r for r in records(tmp_path / "run") if r["kind"] == "val"][-1]["val_acc"] is not None


# ------------------------------------------------------------------------------------------ messages
def test_an_empty_file_in_a_raw_folder_is_packs_sentence(photo_folder, tmp_path, capsys):
    src = tmp_path / "src"
    for c in ("nature", "pattern"):
        shutil.copytree(photo_folder / "train" / c, src / c)
    (src / "nature" / "zz-empty.jpg").write_bytes(b"")
    m = pack(src, tmp_path / "shards", workers=1, progress=False)
    assert {"path": str(src / "nature" / "zz-empty.jpg"), "reason": "empty file"} in m["rejected"]
    code, err, out = run_cli(capsys, "train", "--data", src, "--out", tmp_path / "run", *FAST, "--set", "data.square=centre",
                        "--set", "data.cache=memory")
    assert code == 2 and err == (f"error: cannot decode {src / 'nature' / 'zz-empty.jpg'}: empty file; remove it, or "
                                 "`minwa pack` the folder, which leaves out and lists every such file")


def test_an_absurd_scale_is_refused_before_any_data_is_read(photo_folder, tmp_path, capsys):
    code, err, out = run_cli(capsys, "train", "--data", photo_folder / "train", "--out", tmp_path / "run", *FAST,
                        "--set", "data.scale=100000")
    assert code == 2 and "data.scale and data.crop are at most 4096 px (got scale 100000, crop 32)" in err
    assert not (tmp_path / "run" / "config.toml").exists()
