"""The test path: dense conversion, softmax averaging over views and members, metrics, eval/predict commands."""

from __future__ import annotations

import argparse
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.evaluate import EvalConfig, evaluate, member_from_model, predict
from minwa.evaluate import preprocess as P
from minwa.evaluate.dense import DenseModel, DenseProbs, convert_head
from minwa.evaluate.ensemble import ensemble_probs, mean_probs, view_probs
from minwa.evaluate.pipeline import checkpoint_labels
from minwa.models import create_model

FC_MODELS = {
    "deepimage-tiny": dict(),
    "alexnet-tiny": dict(),
    "deepimage16": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=64),
    "deepimage-scaling": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "alexnet": dict(fc=(16, 16), img_size=67),
}


def _fc_model(name, dtype=torch.float64):
    torch.manual_seed(0)
    in_chans = 1 if name.endswith("tiny") else 3
    return create_model(name, 7, in_chans, dtype=dtype, **FC_MODELS[name]).eval()


# ---------------------------------------------------------------- dense conversion

@pytest.mark.parametrize("name", list(FC_MODELS))
def test_dense_equals_original_on_a_crop(name):
    """OverFeat conversion: on a CxC input the score map is 1x1 and equals the FC network's scores."""
    m = _fc_model(name)
    s = m.default_scale
    x = torch.randn(3, m.in_chans, s, s, dtype=torch.float64)
    with torch.no_grad():
        ref = m(x)
        dense = DenseModel(m)(x)
        probs = DenseProbs(m)(x)
    assert dense.shape == (3, 7, 1, 1)
    torch.testing.assert_close(dense[:, :, 0, 0], ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(probs.double(), torch.softmax(ref, 1), rtol=0, atol=1e-6)


def test_dense_equals_original_in_float32_channels_last():
    m = _fc_model("deepimage-tiny", torch.float32).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(DenseModel(m)(x)[:, :, 0, 0], m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["deepimage-tiny", "alexnet-tiny"])
def test_dense_head_is_the_fc_head_slid_over_the_feature_map(name):
    """Each position of the score map is the FC head applied to the window of the feature map there."""
    m = _fc_model(name)
    c, h, w = m.head.in_shape
    feats = torch.randn(2, c, h + 3, w + 2, dtype=torch.float64)
    with torch.no_grad():
        smap = convert_head(m)(feats)
        assert smap.shape == (2, 7, 4, 3)
        for i in range(4):
            for j in range(3):
                torch.testing.assert_close(smap[:, :, i, j], m.head(feats[:, :, i:i + h, j:j + w]), rtol=0, atol=1e-10)


def test_dense_on_a_larger_image_averages_the_softmax_map():
    m = _fc_model("deepimage-tiny")
    x = torch.randn(2, 1, 56, 56, dtype=torch.float64)
    with torch.no_grad():
        smap = DenseModel(m)(x)
        assert smap.shape == (2, 7, 5, 5)  # 56 → 7x7 features, 3x3 FC1 kernel
        torch.testing.assert_close(DenseProbs(m)(x).double(), torch.softmax(smap, 1).mean((2, 3)), rtol=0, atol=1e-6)
    with pytest.raises(MinwaError, match="smaller"):
        DenseModel(m)(torch.randn(1, 1, 16, 16, dtype=torch.float64))


def test_dense_on_globally_pooled_models_runs_the_whole_image():
    torch.manual_seed(0)
    m = create_model("resnet-tiny", 7, 1).eval()
    x = torch.randn(2, 1, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(DenseProbs(m)(x), torch.softmax(m(x), 1))


# ---------------------------------------------------------------- combining views and members by hand

class ConstantModel(nn.Module):
    """Ignores the image: the same class posterior ``p`` for every input."""

    def __init__(self, p):
        super().__init__()
        self.logits = nn.Parameter(torch.log(torch.tensor(p, dtype=torch.float32)))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


class EdgeModel(nn.Module):
    """logits = (10 x mean of the first column, 10 x mean of the last column, height / 4): mirroring swaps
    the first two, the test scale moves the third — every view's softmax can be written down by hand."""

    def __init__(self):
        super().__init__()
        self.one = nn.Parameter(torch.ones(()))

    def forward(self, x):
        first, last = x[..., :, 0].mean((1, 2)), x[..., :, -1].mean((1, 2))
        size = torch.full_like(first, x.shape[-2] / 4)
        return torch.stack([10 * first, 10 * last, size], 1) * self.one


class ArrayDataset:
    def __init__(self, pixels, labels, classes):
        self._pixels, self.labels, self.classes, self.channels = pixels, np.asarray(labels), classes, pixels.shape[-1]

    def __len__(self):
        return len(self.labels)

    def image(self, i, min_side=None):
        return self._pixels[i]

    def pixels(self):
        return self._pixels


META = {"classes": ["a", "b", "c"], "num_classes": 3, "in_chans": 1, "scale": 8, "crop": 8, "mean": [0.0], "std": [1.0]}


def _softmax(v):
    e = np.exp(np.asarray(v, np.float64) - max(v))
    return e / e.sum()


def test_ensemble_arithmetic_by_hand():
    """Members' softmax averaged: (0.6, 0.3, 0.1) and (0.1, 0.2, 0.7) → (0.35, 0.25, 0.40)."""
    a = member_from_model(ConstantModel([0.6, 0.3, 0.1]), META, "A")
    b = member_from_model(ConstantModel([0.1, 0.2, 0.7]), META, "B")
    images = np.zeros((5, 8, 8, 1), np.uint8)
    pa, pb = (mean_probs(view_probs(m, images, [8], False, False, "cpu"), [(8, False)]) for m in (a, b))
    fused = ensemble_probs([pa, pb])
    torch.testing.assert_close(fused, torch.tensor([[0.35, 0.25, 0.40]] * 5), rtol=0, atol=1e-6)
    # labels: 2 of class a, 1 of b, 2 of c → A predicts a (top-1 error 3/5), B and the fusion predict c (3/5),
    # top-2: A's {a, b} misses the two c's (2/5), B's {c, b} the two a's (2/5); the fusion's {c, a} only the b (1/5)
    ds = ArrayDataset(images, [0, 0, 1, 2, 2], META["classes"])
    report = evaluate(EvalConfig(topk=2), members=[a, b], dataset=ds)
    rows = {r["name"]: r for r in report.rows}
    assert list(rows) == ["A @8", "B @8", "ensemble (A + B)"]
    assert math.isclose(rows["A @8"]["top1_error"], 3 / 5) and math.isclose(rows["A @8"]["topk_error"], 2 / 5)
    assert math.isclose(rows["B @8"]["top1_error"], 3 / 5) and math.isclose(rows["B @8"]["topk_error"], 2 / 5)
    assert math.isclose(report.top1_error, 3 / 5) and math.isclose(report.topk_error, 1 / 5)
    assert report.confusion == [[0, 0, 2], [0, 0, 1], [0, 0, 2]]
    assert math.isclose(report.mean_class_accuracy, (0 + 0 + 1) / 3)


def test_scales_and_flips_by_hand():
    """Image: a bright first column. Views at S=8 and S=16 (dense, whole image), plain and mirrored."""
    img = np.zeros((1, 8, 8, 1), np.uint8)
    img[..., 0, :] = 255
    m = member_from_model(EdgeModel(), META, "E")
    probs = view_probs(m, img, [8, 16], True, True, "cpu")
    expect = {(8, False): _softmax([10, 0, 2]), (8, True): _softmax([0, 10, 2]),
              (16, False): _softmax([10, 0, 4]), (16, True): _softmax([0, 10, 4])}
    for key, p in expect.items():
        np.testing.assert_allclose(probs[key][0].numpy(), p, rtol=1e-5, atol=1e-6)
    combined = mean_probs(probs, probs.keys())[0].numpy()
    np.testing.assert_allclose(combined, sum(expect.values()) / 4, rtol=1e-5, atol=1e-6)
    # the pipeline scores each combination; with label 'a' every unmirrored view is right, and the
    # combination of both scales with mirrors is the mean of the four by-hand posteriors above
    ds = ArrayDataset(np.concatenate([img, img[:, :, ::-1]]), [0, 1], META["classes"])
    report = evaluate(EvalConfig(scales=[8, 16], flip=True, dense=True, topk=1), members=[m], dataset=ds)
    names = [r["name"] for r in report.rows]
    assert names == ["E @8", "E @8 +flip", "E @16", "E @16 +flip", "E @8,16", "E @8,16 +flip"]
    by_name = {r["name"]: r["top1_error"] for r in report.rows}
    assert by_name["E @8"] == by_name["E @16"] == by_name["E @8,16"] == 0.0  # mirrored image → class b: right too


def test_centre_crop_view_and_scale_errors():
    m = member_from_model(EdgeModel(), META, "E")
    img = np.zeros((2, 8, 12, 1), np.uint8)
    img[:, :, 2] = 255  # column 2 is the first column of the centre 8x8 crop of the 8x12 image
    p = view_probs(m, img, [8], False, False, "cpu")[(8, False)]
    np.testing.assert_allclose(p[0].numpy(), _softmax([10, 0, 2]), rtol=1e-5, atol=1e-6)
    with pytest.raises(MinwaError, match="smaller than the model"):
        view_probs(m, img, [4], False, False, "cpu")


def test_view_helpers():
    assert P.resized_size(28, 28, 56) == (56, 56)
    assert P.resized_size(375, 500, 256) == (256, 341)
    assert P.resized_size(500, 375, 256) == (341, 256)
    rgb = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert math.isclose(float(P.match_channels(rgb, 1)), 0.299 * 255, rel_tol=1e-6)
    assert P.match_channels(torch.ones(1, 1, 2, 2), 3).shape == (1, 3, 2, 2)
    x = torch.full((1, 1, 4, 4), 51.0)
    torch.testing.assert_close(P.normalise(x, [0.2], [0.5]), torch.zeros(1, 1, 4, 4))


def test_members_with_different_classes_refuse_to_ensemble(tmp_path):
    from minwa.evaluate.ensemble import load_members
    from minwa.models.checkpoint import save_checkpoint

    for name, classes in (("a", ["x", "y"]), ("b", ["y", "x"])):
        save_checkpoint(tmp_path / name, create_model("deepimage-tiny", 2, 1),
                        {"model": "deepimage-tiny", "num_classes": 2, "in_chans": 1, "classes": classes})
    with pytest.raises(MinwaError, match="different classes"):
        load_members([tmp_path / "a", tmp_path / "b"], "cpu")


# ---------------------------------------------------------------- real data: Fashion-MNIST

@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_dir):
    """deepimage-tiny trained briefly (2 epochs of 4,000 real training images), saved as a checkpoint."""
    from minwa.data import open_dataset
    from minwa.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    train = open_dataset(fashion_dir, "train")
    x = torch.from_numpy(train.pixels()[:4000].copy()).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(train.labels[:4000])
    mean, std = float(x.mean()), float(x.std())
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
    model = create_model("deepimage-tiny", 10, 1, batchnorm=True, dropout=0.0).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(2):
        for i in range(0, 4000, 200):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 200]), y[i:i + 200]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("ck") / "tiny"
    save_checkpoint(path, model, {"model": "deepimage-tiny", "model_kwargs": {"batchnorm": True, "dropout": 0.0},
                                  "num_classes": 10, "in_chans": 1, "classes": train.classes, "scale": 28,
                                  "crop": 28, "mean": [mean], "std": [std]})
    return path


def test_evaluate_on_fashion_mnist(trained, fashion_dir):
    cfg = EvalConfig(data=str(fashion_dir), ckpts=[str(trained)], limit=1000, flip=True)
    report = evaluate(cfg)
    conf = np.asarray(report.confusion)
    assert report.images == 1000 and conf.sum() == 1000
    assert report.top1_accuracy > 0.6  # a briefly trained net on real data, well above chance (0.1)
    assert math.isclose(report.top1_error, 1 - np.trace(conf) / 1000)
    assert report.topk_error <= report.top1_error
    per = [r["accuracy"] for r in report.per_class]
    assert math.isclose(report.mean_class_accuracy, float(np.mean(per)))
    assert [r["images"] for r in report.per_class] == conf.sum(1).tolist()
    assert report.per_class[0]["class"] == "T-shirt/top"
    # dense testing at the training size is the same network: same predictions
    dense = evaluate(EvalConfig(data=str(fashion_dir), ckpts=[str(trained)], limit=1000, flip=True, dense=True))
    assert abs(np.trace(np.asarray(dense.confusion)) - np.trace(conf)) <= 1


def _run_command(module, argv):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return module.run(p.parse_args(argv))


def test_eval_command_json_and_outputs(trained, fashion_dir, tmp_path, capsys):
    from PIL import Image

    from minwa.commands import eval as eval_cmd

    out = tmp_path / "report"
    rc = _run_command(eval_cmd, ["--ckpt", str(trained), "--ckpt", str(trained), "--data", str(fashion_dir),
                                 "--set", "scales=[28,56]", "--set", "flip=true", "--set", "dense=true",
                                 "--set", "limit=200", "--json", "--out", str(out)])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 200 and len(data["confusion"]) == 10
    assert data["rows"][-1]["name"].startswith("ensemble") and len(data["members"]) == 2
    assert json.loads((out / "eval.json").read_text())["top1_error"] == data["top1_error"]
    with Image.open(out / "confusion.png") as im:
        assert im.size[0] > 200
    with pytest.raises(MinwaError, match="config value scales must be an integer, got 'x'"):
        _run_command(eval_cmd, ["--ckpt", str(trained), "--set", "scales=28,x"])


def test_predict_on_image_files(trained, fashion_dir, tmp_path, capsys):
    from PIL import Image

    from minwa.commands import predict as predict_cmd
    from minwa.data import open_dataset

    test = open_dataset(fashion_dir, "test")
    png = tmp_path / "item.png"
    Image.fromarray(test.image(0)[..., 0]).save(png)
    rgb = tmp_path / "item_rgb.jpg"  # a colour JPEG: converted to the checkpoint's one channel
    Image.fromarray(np.repeat(test.image(0), 3, axis=2)).save(rgb, quality=95)
    res = predict([trained], [png, rgb], topk=3, flip=True)
    assert [len(r["top"]) for r in res] == [3, 3]
    assert res[0]["top"][0]["class"] == res[1]["top"][0]["class"]
    p = [t["probability"] for t in res[0]["top"]]
    assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    assert _run_command(predict_cmd, ["--ckpt", str(trained), str(png), "--topk", "2", "--flip"]) == 0
    out = capsys.readouterr().out
    assert str(png) in out and res[0]["top"][0]["class"] in out
    with pytest.raises(MinwaError, match="image not found"):
        predict([trained], [tmp_path / "missing.png"])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(MinwaError, match="cannot decode"):
        predict([trained], [tmp_path / "bad.png"])


def test_data_classes_are_matched_to_the_checkpoints_by_name():
    """A labels file sorts its class names; a checkpoint keeps its own order (Fashion-MNIST's, or the order
    a fine-tuning run named its classes in): labels are scored by name, and a foreign class is one sentence."""
    member = SimpleNamespace(classes=["pattern", "nature", "desktop"], meta={"classes": ["pattern", "nature", "desktop"]})
    data = SimpleNamespace(classes=["desktop", "pattern"], labels=np.array([0, 1, 1, 0]))
    assert checkpoint_labels(data, [member]).tolist() == [2, 0, 0, 2]
    with pytest.raises(MinwaError, match=r"1 class not in the checkpoint: abstract"):
        checkpoint_labels(SimpleNamespace(classes=["abstract", "nature"], labels=np.array([0, 1])), [member])
