"""The real path on real data: pack a few hundred Fashion-MNIST images → train → eval → predict (CLI)."""

import json

import numpy as np
import pytest

from minwa.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fashion_dir):
    """600 training images (an ImageFolder of PNGs) packed to shards, 6 short epochs, validated on 500."""
    from minwa.data import open_dataset, pack

    root = tmp_path_factory.mktemp("e2e")
    # An ImageFolder of real Fashion-MNIST PNGs: the same route a user's own photos take.
    from PIL import Image

    for split, count in (("train", 600), ("test", 500)):
        ds = open_dataset(str(fashion_dir), split=split)
        for i in range(count):
            d = root / split / ds.classes[int(ds.labels[i])].replace("/", "-")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.image(i)[..., 0]).save(d / f"{i}.png")
    manifest = pack(str(root / "train"), str(root / "shards"), shard_size=256, progress=False)
    assert manifest["num_samples"] == 600 and manifest["rejected"] == []
    code = main(["train", "--quiet", "--data", str(root / "shards"), "--val", str(root / "test"), "--out", str(root / "run"),
                 "--epochs", "6", "--set", "model.kwargs={\"widths\": [16, 32, 64]}", "--set", "data.batch_size=64",
                 "--set", "optim.lr=0.1", "--set", "eval_every=3"])
    assert code == 0
    return root


def test_training_learns_and_logs(tiny_run):
    lines = [json.loads(line) for line in (tiny_run / "run" / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in lines if r["kind"] == "val"]
    assert len(vals) == 2 and vals[-1]["val_acc"] > 0.6  # 10 classes: chance is 0.1
    assert vals[-1]["train_loss"] < vals[0]["train_loss"]
    assert (tiny_run / "run" / "learning_curve.png").stat().st_size > 10_000
    meta = json.loads((tiny_run / "run" / "final.json").read_text())
    # ImageFolder sorts class folders by name; the checkpoint carries those names
    from minwa.data import open_dataset

    assert meta["classes"][0] == "Ankle boot" and meta["num_classes"] == 10
    assert meta["in_chans"] == open_dataset(str(tiny_run / "shards")).channels
    assert abs(meta["metrics"]["val_acc"] - vals[-1]["val_acc"]) < 1e-12


def test_eval_and_predict_agree_with_training(tiny_run, fashion_dir, capsys):
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(tiny_run / "run"), "--data", str(tiny_run / "test"), "--json",
                 "--out", str(tiny_run / "eval")]) == 0
    report = json.loads(capsys.readouterr().out)
    meta = json.loads((tiny_run / "run" / "best.json").read_text())  # a run folder means its best epoch
    assert report["images"] == 500
    assert abs((1 - report["top1_error"]) - meta["metrics"]["val_acc"]) < 0.01  # same weights, same test set
    assert report["topk"] == [1, 5] and report["topk_errors"]["5"] == report["topk_error"] < report["top1_error"]
    assert (tiny_run / "eval" / "confusion.png").is_file()

    from minwa.data import open_dataset
    from minwa.demo import write_sample_images

    paths = write_sample_images(open_dataset(str(fashion_dir), split="test"), tiny_run / "samples", 3)
    assert main(["predict", "--ckpt", str(tiny_run / "run"), "--topk", "3", "--json", *map(str, paths)]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 3
    for p in preds:
        probs = [c["probability"] for c in p["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(isinstance(c["class"], str) for c in p["top"])


def test_resume_continues_exactly(tiny_run, fashion_dir, tmp_path):
    """Two runs of 2 epochs, the second resumed mid-way, end with the weights of one straight run."""
    from minwa import config as config_io
    from minwa.train import get_recipe, train
    from minwa.models.checkpoint import load_state as load_weights

    base = ["data.train=" + str(tiny_run / "shards"), "data.val=", "data.val_fraction=0", "data.batch_size=64", "optim.ema=0",
            "model.kwargs={\"widths\": [8, 16]}", "runtime.precision=fp32", "epochs=2", "eval_every=0"]
    straight = train(config_io.load(get_recipe("fashion"), None, base + [f"out={tmp_path / 'a'}"]))
    half = train(config_io.load(get_recipe("fashion"), None,
                                base + [f"out={tmp_path / 'b'}", "time_budget_s=0.000001"]))
    assert 0 < half.epochs < 2  # stopped early, state saved
    resumed = train(config_io.load(get_recipe("fashion"), None,
                                   base + [f"out={tmp_path / 'b'}", f"resume={tmp_path / 'b'}"]))
    a = load_weights(straight.checkpoint)
    b = load_weights(resumed.checkpoint)
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


def test_bad_inputs_are_one_sentence(tmp_path, capsys, fashion_dir):
    assert main(["train", "--quiet", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nowhere" in err and "\n" not in err
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (bad / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    assert main(["train", "--quiet", "--data", str(bad), "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert main(["train", "--quiet", "--model", "vgg99", "--data", str(fashion_dir), "--out", str(tmp_path / "r")]) != 0
    assert "unknown model 'vgg99'" in capsys.readouterr().err
    assert main(["train", "--print-config", "--set", "model.name=vgg99"]) == 0  # config alone is fine
    capsys.readouterr()


def test_predict_takes_a_folder_and_says_which_checkpoint(tiny_run, capsys):
    """Issue #16 items 7 and 11: a folder given to predict said "image not found"; a run folder means its
    best checkpoint, and eval/predict say which file and what its sidecar records."""
    folder = tiny_run / "test" / "Ankle boot"
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(tiny_run / "run"), str(folder)]) == 0
    out, err = capsys.readouterr()
    assert sum(line.endswith(".png") for line in out.splitlines()) == len(list(folder.iterdir()))
    assert f"checkpoint {tiny_run / 'run' / 'best.safetensors'} (epoch " in out and "val top-1" in out
    empty = tiny_run / "empty-folder"
    empty.mkdir(exist_ok=True)
    assert main(["predict", "--ckpt", str(tiny_run / "run"), str(empty)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {empty} is a folder with no images in it"


def test_weights_without_their_sidecar_are_one_sentence(tiny_run, tmp_path, capsys):
    import shutil

    shutil.copy(tiny_run / "run" / "final.safetensors", tmp_path / "model.safetensors")
    capsys.readouterr()
    image = next((tiny_run / "test" / "Bag").iterdir())
    assert main(["predict", "--ckpt", str(tmp_path / "model.safetensors"), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no sidecar model.json beside it" in err
