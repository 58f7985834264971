"""Checkpoints and resumable state: safetensors + JSON, exact round trips, clear errors, no pickle."""

import json

import pytest
import torch

from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from minwa.parallel.checkpoint import load_distributed, read_extra, save_distributed


def _model():
    torch.manual_seed(0)
    m = create_model("fashion-net", num_classes=10, in_chans=1, widths=[8, 16, 32])
    m(torch.randn(4, 1, 28, 28))  # move BN running stats off their defaults
    return m


def test_checkpoint_round_trip_is_exact(tmp_path):
    m = _model()
    meta = {"model": "fashion-net", "model_kwargs": {"widths": [8, 16, 32]}, "num_classes": 10, "in_chans": 1,
            "classes": [str(i) for i in range(10)], "mean": [0.3], "std": [0.35]}
    save_checkpoint(tmp_path / "final", m, meta)
    weights, sidecar = checkpoint_paths(tmp_path)  # a run folder resolves to its final checkpoint
    assert weights.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    assert json.loads(sidecar.read_text())["classes"][3] == "3"
    m2, meta2 = load_checkpoint(tmp_path / "final.safetensors")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    m.eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(m(x), m2(x))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def test_broken_checkpoints_are_one_sentence(tmp_path):
    with pytest.raises(MinwaError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "c", _model(), {"model": "fashion-net", "model_kwargs": {"widths": [8, 16, 32]},
                                               "num_classes": 10, "in_chans": 1})
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(MinwaError, match="unreadable"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(MinwaError, match="not valid JSON"):
        load_checkpoint(tmp_path / "c")


def test_train_state_round_trip_with_channels_last_and_extra_tensors(tmp_path):
    """One process writes the DCP layout too: channels_last weights, momentum and extra tensors (an EMA
    copy) come back exactly, and the extra JSON says the step."""
    m = _model().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)).sum().backward()
    opt.step()
    ema = {f"ema.{k}": v.clone() * 2 for k, v in m.state_dict().items()}
    save_distributed(tmp_path / "train_state", m, opt, {"step": 7, "loader": {"position": 3}}, more=ema)
    assert read_extra(tmp_path / "train_state") == {"step": 7, "loader": {"position": 3}}

    m2 = create_model("fashion-net", num_classes=10, in_chans=1, widths=[8, 16, 32]).to(memory_format=torch.channels_last)
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    m2(torch.randn(4, 1, 28, 28)).sum().backward()
    opt2.step()
    ema2 = {k: torch.zeros_like(v) for k, v in ema.items()}
    load_distributed(tmp_path / "train_state", m2, opt2, more=ema2)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    for k, v in ema.items():
        assert torch.equal(v, ema2[k]), k
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(v["momentum_buffer"], opt2.state_dict()["state"][k]["momentum_buffer"])


def test_a_compiled_model_saves_under_plain_names(tmp_path):
    """torch.compile prefixes state-dict keys with ``_orig_mod.``; the checkpoint must not (no compile runs here)."""
    m = _model()
    meta = {"model": "fashion-net", "model_kwargs": {"widths": [8, 16, 32]}, "num_classes": 10, "in_chans": 1}
    compiled_state = torch.compile(m).state_dict()
    assert all(k.startswith("_orig_mod.") for k in compiled_state)
    save_checkpoint(tmp_path / "c", compiled_state, meta)
    m2, _ = load_checkpoint(tmp_path / "c")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
