"""``minwa export``: every registered model family exports to ONNX (through torch.export) and ``.pt2``;
onnxruntime on real photographs gives PyTorch's probabilities to 1e-4, the dense graph takes any size,
and the metadata carries the classes and the one test-time preprocessing.

Families that do not export, and why (also docs/export.md): none today — ``NOT_EXPORTABLE`` names any.
Each family is exported once, its smallest member at its small test configuration (tests/model_fixtures).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_fixtures import SMALL, small_model
from minwa.cli import main
from minwa.data import open_dataset
from minwa.errors import MinwaError
from minwa.evaluate import load_members
from minwa.evaluate.ensemble import prepare
from minwa.evaluate.pipeline import batch_probs
from minwa.evaluate.preprocess import network_input, resize
from minwa.export import export_checkpoint, load_pt2, read_metadata
from minwa.models import list_models
from minwa.models.checkpoint import save_checkpoint

ort = pytest.importorskip("onnxruntime", reason="pip install 'minwa[export]' (onnx, onnxruntime, onnxscript)")

NOT_EXPORTABLE: dict[str, str] = {}  # family (model class) -> why it does not export


def families() -> dict[str, str]:
    """Model class -> its smallest registered member (at the small test configuration)."""
    best: dict[str, tuple[int, str]] = {}
    for name in list_models():
        m = small_model(name)
        n = sum(p.numel() for p in m.parameters())
        fam = type(m).__name__
        if fam not in best or n < best[fam][0]:
            best[fam] = (n, name)
    return {fam: name for fam, (_, name) in sorted(best.items())}


FAMILIES = families()


@pytest.fixture(scope="module")
def photos(photo_folder):
    ds = open_dataset(photo_folder / "val")
    return ds, [ds.image(i) for i in range(0, len(ds), len(ds) // 6)][:6]


def _checkpoint(tmp_path, name: str, classes, scale: float = 1.25) -> str:
    torch.manual_seed(0)
    model = small_model(name, num_classes=len(classes)).eval()
    crop, chans = model.default_scale, model.in_chans
    with torch.no_grad():  # logits of spread ~4, so the softmax is far from uniform and 1e-4 means something
        fc = model.classifier()
        logits = model(torch.randn(8, chans, crop, crop)) - fc.bias
        fc.weight.mul_(4 / float(logits.std() + 1e-12))
    meta = dict(model=name, model_kwargs=SMALL.get(name, {}), num_classes=len(classes), in_chans=chans,
                classes=list(classes), scale=round(crop * scale), crop=crop, mean=[0.48, 0.46, 0.41][:chans],
                std=[0.23, 0.22, 0.23][:chans])
    save_checkpoint(tmp_path / name, model, meta)
    return str(tmp_path / name)


def _torch_probs(ckpt, images, dense=False) -> np.ndarray:
    members = load_members([ckpt], "cpu")
    prepare(members, "cpu")
    m = members[0]
    _, final = batch_probs(members, images, {m.name: [m.scale]}, False, dense, "cpu", "fp32")
    return final[m.name].numpy()


def _inputs(md: dict, images, dense=False) -> np.ndarray:
    """The network input the metadata describes (minwa.preprocessing), built by minwa's one path."""
    pre = md["minwa.preprocessing"]
    return network_input(images, pre["scale"], None if dense else pre["crop"], pre["mean"], pre["std"],
                         pre["channels"]).numpy()


def test_every_registered_model_belongs_to_an_exported_family():
    assert set(FAMILIES) - set(NOT_EXPORTABLE), "no model family exports"
    assert len(FAMILIES) >= 5, FAMILIES


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_matches_pytorch_on_real_photos(family, photos, tmp_path):
    if family in NOT_EXPORTABLE:
        pytest.skip(f"{family} does not export: {NOT_EXPORTABLE[family]}")
    ds, images = photos
    ckpt = _checkpoint(tmp_path, FAMILIES[family], ds.classes)
    out = export_checkpoint(ckpt, tmp_path / "model.onnx", "onnx")
    md = read_metadata(out)
    assert md["minwa.classes"] == list(ds.classes) and md["minwa.model"] == FAMILIES[family]
    assert md["minwa.output"].startswith("probabilities") and md["minwa.dense"] is False
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = _torch_probs(ckpt, images)
    x = _inputs(md, images)
    got = np.concatenate([sess.run(None, {"input": x[:1]})[0], sess.run(None, {"input": x[1:]})[0]])  # batch 1, 5
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert ref.max() - ref.min() > 0.05  # not a uniform softmax


def test_dense_onnx_and_pt2_take_any_size(photos, tmp_path):
    """deepimage's FC head as convolutions: whole photographs of their own aspect ratios, as --dense."""
    ds, images = photos
    ckpt = _checkpoint(tmp_path, FAMILIES["DeepImageNet"], ds.classes, scale=2.5)  # >= one stride above C
    onnx_file = export_checkpoint(ckpt, tmp_path / "dense.onnx", "onnx", dense=True)
    pt2_file = export_checkpoint(ckpt, tmp_path / "dense.pt2", "pt2", dense=True)
    md = read_metadata(onnx_file)
    assert md["minwa.dense"] is True and md == read_metadata(pt2_file)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    module, _ = load_pt2(pt2_file)
    sizes = set()
    for im in images:
        ref = _torch_probs(ckpt, [im], dense=True)
        x = _inputs(md, [im], dense=True)
        sizes.add(x.shape[-2:])
        np.testing.assert_allclose(sess.run(None, {"input": x})[0], ref, atol=1e-4, rtol=0)
        with torch.no_grad():
            np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), ref, atol=1e-5, rtol=0)
    assert len(sizes) > 2  # several shapes through one graph


def test_pt2_round_trip_through_the_cli(photos, tmp_path, capsys):
    ds, images = photos
    ckpt = _checkpoint(tmp_path, FAMILIES["ResNet"], ds.classes)
    assert main(["export", ckpt, str(tmp_path / "m.pt2")]) == 0
    assert "wrote" in capsys.readouterr().out
    module, md = load_pt2(tmp_path / "m.pt2")
    assert md["minwa.preprocessing"]["colour_order"] == ("RGB" if md["minwa.preprocessing"]["channels"] == 3 else "L")
    x = torch.from_numpy(_inputs(md, images))
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), _torch_probs(ckpt, images), atol=1e-5, rtol=0)
        np.testing.assert_allclose(module(x[:1]).numpy(), _torch_probs(ckpt, images[:1]), atol=1e-5, rtol=0)


def test_documented_pil_numpy_recipe_reproduces_the_input(photos):
    """docs/export.md's recipe (Pillow + numpy, no minwa) gives minwa's input to within a grey level."""
    from PIL import Image

    _, images = photos
    scale, crop, mean, std = 80, 64, np.array([0.48, 0.46, 0.41]), np.array([0.23, 0.22, 0.23])
    for im in images:
        img = Image.fromarray(im)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        sq = img.resize((scale, scale), Image.BILINEAR, box=(left, top, left + side, top + side))
        a = np.asarray(sq, dtype=np.float32)
        o = (scale - crop) // 2
        x = ((a[o:o + crop, o:o + crop] / 255.0 - mean) / std).transpose(2, 0, 1)
        ref = network_input([im], scale, crop, mean, std, 3)[0].numpy()
        assert np.abs((x - ref) * std[:, None, None] * 255).max() <= 1.01
        assert resize(im, scale).shape == (3, scale, scale)


def test_bad_input_is_one_sentence(tmp_path):
    with pytest.raises(MinwaError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "none", tmp_path / "m.onnx")
    with pytest.raises(MinwaError, match="format must be one of onnx, pt2"):
        export_checkpoint(tmp_path / "none", tmp_path / "m.x", "tflite")
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    with pytest.raises(MinwaError, match="not a readable ONNX file"):
        read_metadata(tmp_path / "fake.onnx")
    (tmp_path / "fake.pt2").write_bytes(b"not a zip")
    with pytest.raises(MinwaError, match="not a readable .pt2"):
        read_metadata(tmp_path / "fake.pt2")
