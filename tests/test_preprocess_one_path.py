"""One test-time preprocessing path (issue #15): validation during training, ``evaluate`` and ``predict``
turn the same photograph into the same network input, so they give the same probabilities (to 1e-6).

Before the fix eval and predict resized the whole image in float and cropped it while validation cropped
the loader's uint8 square (inputs up to 72 grey levels apart at the crop's edges on these photographs), and
predict decoded JPEGs at full size where eval shrank them in the DCT domain.
"""

from __future__ import annotations

import json

import pytest
import torch

from minwa.data import build_loader, open_dataset
from minwa.data.config import DataConfig
from minwa.evaluate import EvalConfig, evaluate, load_members, predict
from minwa.evaluate.ensemble import prepare
from minwa.evaluate.pipeline import batch_probs
from minwa.evaluate.preprocess import crop_normalise, network_input, read
from minwa.config import load
from minwa.train import TrainConfig, train
from minwa.utils.runtime_config import RuntimeConfig

SCALE, CROP, N = 40, 32, 24


@pytest.fixture(scope="module")
def run(photo_folder, tmp_path_factory):
    """A real (short) training run on the photographs: resnet-tiny at S=40, C=32, validating with flips."""
    out = tmp_path_factory.mktemp("one-path") / "run"
    cfg = load(TrainConfig(), None, [f"data.train={photo_folder / 'train'}", f"data.val={photo_folder / 'val'}",
                                     "model.name=resnet-tiny", f"data.scale={SCALE}", f"data.crop={CROP}",
                                     "epochs=1", "data.batch_size=32", "data.workers=0", "runtime.precision=fp32",
                                     "runtime.device=cpu", "runtime.threads=1", f"out={out}", "eval_flip=true"])
    train(cfg, progress=False, report=False)
    return out


def _predict_probs(ckpt, files, **kw) -> torch.Tensor:
    out = predict([ckpt], files, topk=99, device="cpu", precision="fp32", **kw)
    p = torch.zeros(len(files), len(out[0]["top"]))
    for i, r in enumerate(out):
        for t in r["top"]:
            p[i, t["index"]] = t["probability"]
    return p


def test_predict_eval_and_validation_give_the_same_probabilities(photo_folder, run):
    ckpt = run / "final"
    ds = open_dataset(photo_folder / "val")
    files = [ds.source(i) for i in range(N)]
    members = load_members([ckpt], "cpu")
    prepare(members, "cpu")
    m = members[0]
    # evaluate's inputs: the data set's images, decoded with the shorter side >= the scale
    _, final = batch_probs(members, [ds.image(i, min_side=SCALE) for i in range(N)], {m.name: [SCALE]},
                           False, False, "cpu", "fp32")
    by_eval = final[m.name]
    by_predict = _predict_probs(ckpt, files)
    assert (by_eval - by_eval[0]).abs().max() > 1e-3  # the images differ to the model
    torch.testing.assert_close(by_predict, by_eval, atol=1e-6, rtol=0)
    # validation during training: the loader's uint8 squares, then the trainer's own call
    loader = build_loader(DataConfig(scale=SCALE, crop=CROP, batch_size=N, workers=0, cache="none",
                                     drop_last=False), ds, train=False)
    batch = next(iter(loader))
    with torch.no_grad():
        x = crop_normalise(batch.images, CROP, m.mean, m.std, 3).contiguous(memory_format=torch.channels_last)
        by_val = torch.softmax(m.model(x), 1)
    torch.testing.assert_close(by_val, by_eval[batch.indices], atol=1e-6, rtol=0)
    # and the plain composite, the recipe an exported model documents
    with torch.no_grad():
        direct = torch.softmax(m.model(network_input([read(f, SCALE) for f in files], SCALE, CROP, m.mean, m.std, 3)), 1)
    torch.testing.assert_close(direct, by_eval, atol=1e-6, rtol=0)


def test_evaluate_scores_what_predict_predicts(photo_folder, run):
    ckpt = run / "final"
    """``evaluate()`` itself: its top-1 error is the error of predict's probabilities on the same files."""
    ds = open_dataset(photo_folder / "val")
    p = _predict_probs(ckpt, [ds.source(i) for i in range(len(ds))], flip=True)
    err = float((p.argmax(1) != torch.as_tensor(ds.labels)).float().mean())
    rep = evaluate(EvalConfig(ckpts=[str(ckpt)], data=str(photo_folder / "val"), flip=True,
                              runtime=RuntimeConfig(device="cpu", precision="fp32")))
    assert rep.top1_error == pytest.approx(err, abs=1e-6)


def test_trained_run_validation_equals_predict(photo_folder, run):
    """``Trainer.validate`` itself: the val loss the run logs is the loss of predict's flip-averaged
    probabilities on the same files through its final checkpoint."""
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r.get("kind") == "val"][-1]
    ds = open_dataset(photo_folder / "val")
    p = _predict_probs(run / "final", [ds.source(i) for i in range(len(ds))], flip=True)
    loss = float(torch.nn.functional.nll_loss(p.clamp_min(1e-12).log(), torch.as_tensor(ds.labels)))
    assert val["val_loss"] == pytest.approx(loss, abs=1e-6)
