"""Pretrained weights (issue #17): torchvision/timm state dicts into minwa's models, proven on logits.

The proof runs torchvision's own code: Debian's python3-torchvision under the system python3
(scripts/torchvision_reference.py) builds each model with seeded random weights, saves its state dict and
its logits on real photographs; minwa imports the file and must give the same logits (max abs difference
<= 1e-4 in fp32; the logits are of order 1). timm's layouts are built from those files by timm's names
(timm itself is not installed here) and must give the same logits too. The rest needs no torchvision:
minwa's own resnet18 has torchvision's key layout (the proof above shows it), so it stands in for a
downloaded file in the error, CLI and fine-tuning tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save, save_file

from minwa.data import open_dataset
from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.models.checkpoint import load_checkpoint
from minwa.models.config import ModelConfig
from minwa.cli import main
from minwa.pretrained import import_state, import_weights
from minwa.pretrained.tables import IMAGENET_MEAN, IMAGENET_STD
from minwa.train.build import build_model
from minwa.train.config import OptimConfig
from minwa.train.optim import build_optimizer, set_lr

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
PHOTOS = [Path("/usr/share/backgrounds/mate/nature") / n for n in ("LadyBird.jpg", "Garden.jpg")]
FASHION = Path("/usr/share/datasets/fashion-mnist")
TOL = 1e-4


def _system_env() -> dict:
    """The system python3 must see Debian's packages only, not this venv's minwa or torch."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _torchvision_missing() -> str:
    if not Path(SYSTEM_PYTHON).is_file():
        return f"no {SYSTEM_PYTHON} to run torchvision's reference"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import torchvision, PIL"], env=_system_env(), capture_output=True)
    if r.returncode:
        return ("Debian's python3-torchvision and python3-pil are not installed for /usr/bin/python3 "
                "(apt-get install python3-torchvision python3-pil; make test does it as root): "
                "the logits cannot be checked against torchvision here")
    return ""


def _images(tmp: Path) -> list[Path]:
    """Two real colour photographs (Debian's wallpapers), else two Fashion-MNIST images as RGB PNGs."""
    if all(p.is_file() for p in PHOTOS):
        return PHOTOS
    if not FASHION.is_dir():
        pytest.skip("no real images: neither the wallpaper photographs nor Fashion-MNIST are installed")
    ds = open_dataset(str(FASHION), split="test")
    out = []
    for i in range(2):
        out.append(tmp / f"fashion{i}.png")
        Image.fromarray(np.repeat(ds.image(i), 3, axis=2)).save(out[-1])
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """torchvision's state dicts (ARCH.pth) and logits (reference.pth), made by torchvision under the system python3."""
    missing = _torchvision_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("torchvision")
    cmd = [SYSTEM_PYTHON, str(ROOT / "scripts" / "torchvision_reference.py"), str(out), *map(str, _images(out))]
    r = subprocess.run(cmd, env={**_system_env(), "REFERENCE_THREADS": "2"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def _ref(reference: Path) -> dict:
    return torch.load(reference / "reference.pth", weights_only=True)


def _max_diff(model, ref: dict, arch: str) -> float:
    with torch.no_grad():
        return float((model(ref["input"]) - ref["logits"][arch]).abs().max())


# ---------------------------------------------------------------- proven against torchvision's code

@pytest.mark.parametrize("arch, model", [("resnet18", "resnet18"), ("resnet50", "resnet50"),
                                         ("alexnet", "alexnet-torchvision"), ("vgg16", "deepimage16")])
def test_torchvision_logits_are_reproduced(reference, arch, model):
    imported = import_weights(reference / f"{arch}.pth")  # the architecture found from the keys
    assert (imported.layout.arch, imported.meta["model"], imported.left) == (arch, model, [])
    ref = _ref(reference)
    assert _max_diff(imported.model, ref, arch) <= TOL
    meta = imported.meta
    assert (meta["scale"], meta["crop"], meta["num_classes"]) == (256, 224, 1000)
    assert meta["mean"] == list(IMAGENET_MEAN) and meta["std"] == list(IMAGENET_STD)
    assert meta["classes"][0] == "n01440764" and meta["class_descriptions"][0].startswith("tench")


def test_timm_resnet50_layout_with_its_hub_config(reference, tmp_path):
    """timm's resnet50 names its modules as torchvision does; its hub files come as model.safetensors with a
    config.json (the preprocessing) beside them. Written here without BN's step counters, which minwa then
    reports as left initialised."""
    state = torch.load(reference / "resnet50.pth", weights_only=True)
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "num_classes": 1000, "pretrained_cfg": {
        "tag": "a1_in1k", "input_size": [3, 224, 224], "crop_pct": 0.95, "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000}}))
    imported = import_weights(tmp_path / "model.safetensors", arch="resnet50")
    assert _max_diff(imported.model, _ref(reference), "resnet50") <= TOL
    assert len(imported.left) == 53 and all(k.endswith("num_batches_tracked") for k in imported.left)
    assert (imported.meta["scale"], imported.meta["crop"]) == (235, 224)  # floor(224 / 0.95), as timm resizes


def test_timm_vgg16_layout_and_fc_reinit(reference):
    """timm's VGG-16 holds FC1/FC2 as 7×7 and 1×1 convolutions (pre_logits) and the classifier as head.fc;
    reshaped, they give torchvision's logits. --fc reinit keeps the 13 convolutions and leaves
    deepimage16's own 6144-wide FC layers initialised."""
    tv = torch.load(reference / "vgg16.pth", weights_only=True)
    rename = {"classifier.0": ("pre_logits.fc1", (4096, 512, 7, 7)), "classifier.3": ("pre_logits.fc2", (4096, 4096, 1, 1)),
              "classifier.6": ("head.fc", None)}
    timm = {}
    for k, v in tv.items():
        module, _, leaf = k.rpartition(".")
        new, shape = rename.get(module, (module, None))
        timm[f"{new}.{leaf}"] = v.reshape(shape) if shape and leaf == "weight" else v
    imported = import_state(timm, "vgg16-timm")  # in memory: 553 MB not written to disk again
    assert imported.layout.name == "vgg16 (timm)" and imported.meta["model_kwargs"] == {"fc": [4096, 4096]}
    assert _max_diff(imported.model, _ref(reference), "vgg16") <= TOL
    fresh = import_weights(reference / "vgg16.pth", fc="reinit")
    assert fresh.meta["model_kwargs"] == {} and fresh.model.head.fc1.out_features == 6144
    assert fresh.left == [f"head.fc{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    assert torch.equal(fresh.model.features[4][4].weight, tv["features.28.weight"])


# ---------------------------------------------------------------- no torchvision needed

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A torchvision-layout ResNet-18 state dict with random weights, saved as torch.save does."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(create_model("resnet18", 1000, 3).state_dict(), path)
    return path


def _edited(resnet18_file: Path, tmp_path: Path, edit) -> Path:
    state = torch.load(resnet18_file, weights_only=True)
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("layer1.0.conv1.weight"), "'layer1.0.conv1.weight' (for minwa's 'layer1.0.conv1.weight') is missing"),
    (lambda s: s.update({"layer1.0.se.fc.weight": torch.zeros(4, 64)}), "'layer1.0.se.fc.weight' has no place in resnet18"),
    (lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)}),
     "'conv1.weight' has shape [64, 3, 3, 3], minwa's 'conv1.weight' (resnet18) needs [64, 3, 7, 7]"),
])
def test_a_mismatch_names_the_first_key_or_shape(resnet18_file, tmp_path, edit, words):
    with pytest.raises(MinwaError, match=None) as e:
        import_weights(_edited(resnet18_file, tmp_path, edit), arch="resnet18")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_wrong_architecture_and_unknown_files_are_one_sentence(resnet18_file, tmp_path):
    with pytest.raises(MinwaError, match=r"'layer1.0.conv1.weight' has shape \[64, 64, 3, 3\], minwa's "
                                         r"'layer1.0.conv1.weight' \(resnet50\) needs \[64, 64, 1, 1\]"):
        import_weights(resnet18_file, arch="resnet50")
    with pytest.raises(MinwaError, match="no import table for architecture 'vit_b_16'"):
        import_weights(resnet18_file, arch="vit_b_16")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MinwaError, match="not a weights file"):
        import_weights(tmp_path / "notes.txt")
    for name, keep in (("cut.pth", 1000), ("cut.safetensors", 1000)):  # a download cut short
        data = resnet18_file.read_bytes() if name.endswith(".pth") else _safetensors_bytes(resnet18_file)
        (tmp_path / name).write_bytes(data[:keep])
        with pytest.raises(MinwaError, match="is not a readable"):
            import_weights(tmp_path / name)


def _safetensors_bytes(pth: Path) -> bytes:
    return save(torch.load(pth, weights_only=True))


def test_pickled_objects_are_refused_and_wrappers_unwrapped(resnet18_file, tmp_path):
    """A training checkpoint with its argparse Namespace needs unpickling: refused, never run. The weights
    of ``{"state_dict": ...}`` saved from DDP (``module.`` prefix) load."""
    state = torch.load(resnet18_file, weights_only=True)
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "train.pth.tar")
    with pytest.raises(MinwaError, match="never unpickles arbitrary objects"):
        import_weights(tmp_path / "train.pth.tar")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    imported = import_weights(tmp_path / "ddp.pth")
    assert torch.equal(imported.model.state_dict()["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    # torchvision's older downloads (alexnet-owt-7be5be79.pth) are in torch's pre-1.6 format: read as well
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert import_weights(tmp_path / "legacy.pth").layout.arch == "resnet18"


def test_cli_writes_a_checkpoint_and_reports_each_tensor(resnet18_file, tmp_path, capsys):
    assert main(["import-weights", str(resnet18_file), str(tmp_path / "ckpt/r18"), "--report"]) == 0
    out = capsys.readouterr().out
    assert "loaded  layer4.1.bn2.running_var  <-  layer4.1.bn2.running_var" in out
    assert "122 tensors loaded, 0 left initialised" in out
    model, meta = load_checkpoint(tmp_path / "ckpt/r18")
    assert meta["model"] == "resnet18" and len(meta["classes"]) == 1000 and meta["imported"]["file"] == "resnet18.pth"
    assert torch.equal(model.fc.weight, torch.load(resnet18_file, weights_only=True)["fc.weight"])
    assert main(["import-weights", str(resnet18_file), str(tmp_path / "ckpt/a"), "--arch", "alexnet"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "ckpt/a.json").exists()


def test_train_init_takes_the_weights_file_directly(resnet18_file):
    """``--init FILE``: imported on the fly, a new 4-way head, the trunk as the file has it."""
    model, trainable, meta = build_model(ModelConfig(), 4, 3, torch.device("cpu"), torch.float32,
                                         init=str(resnet18_file), finetune="fc")
    source = torch.load(resnet18_file, weights_only=True)
    assert meta["model"] == "resnet18" and model.fc.out_features == 4
    assert torch.equal(model.layer3[0].conv2.weight, source["layer3.0.conv2.weight"])
    assert [p.shape for p in trainable] == [torch.Size([4, 512]), torch.Size([4])]


def test_trunk_lr_mult_gives_the_trunk_a_fraction_of_the_rate():
    """Discriminative rates: the FC layers at the lr, everything before them at lr x trunk_lr_mult."""
    torch.manual_seed(0)
    model = create_model("resnet-tiny", 10, 1)
    head = {id(p) for p in model.fc.parameters()}
    cfg = OptimConfig(lr=0.1, lr_batch=256, momentum=0.0, weight_decay=0.0, trunk_lr_mult=0.1)
    opt = build_optimizer(model, cfg, global_batch=256)
    assert set_lr(opt, 0.1, 0.5) == 0.05
    for g in opt.param_groups:
        want = 0.05 if all(id(p) in head for p in g["params"]) else 0.005
        assert g["lr"] == pytest.approx(want)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    steps = {id(p): float((b - p.detach()).abs().max()) for p, b in zip(model.parameters(), before)}
    assert steps[id(model.fc.weight)] == pytest.approx(0.05) and steps[id(model.conv1.weight)] == pytest.approx(0.005)
    one = build_optimizer(model, OptimConfig(), global_batch=256)  # the default: the groups as before
    assert len(one.param_groups) == 1 and one.param_groups[0]["lr_mult"] == 1.0


def test_finetune_an_imported_resnet18_on_photographs(resnet18_file, photo_folder, tmp_path, capsys):
    """End to end as a user would: import, then fine-tune all layers with a tenth of the rate for the trunk,
    on two of the four classes, at a small input size (ResNet pools globally), two steps."""
    assert main(["import-weights", str(resnet18_file), str(tmp_path / "imagenet/resnet18")]) == 0
    threads = torch.get_num_threads()
    try:
        code = main(["train", "--init", str(tmp_path / "imagenet/resnet18"), "--recipe", "finetune", "--finetune", "all",
                     "--data", str(photo_folder / "train"), "--val", str(photo_folder / "val"),
                     "--out", str(tmp_path / "runs/ft"), "--epochs", "0.2", "--quiet",
                     "--set", 'data.classes=["nature","pattern"]', "--set", "data.batch_size=16",
                     "--set", "data.scale=40", "--set", "data.crop=32", "--set", "optim.trunk_lr_mult=0.1",
                     "--set", "eval_flip=false", "--set", "runtime.threads=2", "--set", "data.workers=0"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "runs/ft/final.json").read_text())
    assert meta["model"] == "resnet18" and meta["num_classes"] == 2 and (meta["scale"], meta["crop"]) == (40, 32)
    assert meta["mean"] == list(IMAGENET_MEAN)  # the source's normalisation, not re-estimated
    assert meta["config"]["optim"]["trunk_lr_mult"] == 0.1
    model, _ = load_checkpoint(tmp_path / "runs/ft/final")
    source = torch.load(resnet18_file, weights_only=True)
    moved = float((model.layer1[0].conv1.weight.detach() - source["layer1.0.conv1.weight"]).abs().max())
    assert 0 < moved  # the trunk trained (at a tenth of the rate)
