"""The model registry: paper parameter counts, every model's forward, knobs, checkpointing, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.models import count_parameters, create_model, list_models
from model_fixtures import SMALL


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_deepimage16_is_table2():
    """Table 2: 212.7M weights = 14.7M conv + 154.1M + 37.7M + 6.1M FC (seeds/002)."""
    assert abs(count_parameters("deepimage16", 1000) - 212.7e6) < 0.1e6
    m = create_model("deepimage16", 1000, device="meta")
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert abs(sum(n_params(c) for c in convs) - 14.7e6) < 0.05e6
    # the paper counts weights (biases add 13k): 154,140,672 + 37,748,736 + 6,144,000
    assert [round(fc.weight.numel() / 1e6, 1) for fc in m.fc_layers()] == [154.1, 37.7, 6.1]
    pools = [p for p in m.modules() if isinstance(p, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    drops = [d.p for d in m.modules() if isinstance(d, nn.Dropout)]
    assert drops == [0.5, 0.5]  # after FC1 and FC2 only


def test_family_shapes_and_counts():
    d19 = create_model("deepimage19", device="meta")
    assert sum(isinstance(c, nn.Conv2d) for c in d19.modules()) == 16 and len(d19.fc_layers()) == 3
    scaling = create_model("deepimage-scaling", device="meta")
    assert sum(isinstance(c, nn.Conv2d) for c in scaling.modules()) == 8 and len(scaling.fc_layers()) == 3
    assert scaling.fc_layers()[-1].out_features == 1000
    assert abs(count_parameters("resnet50", 1000) - 25.6e6) < 0.05e6  # torchvision: 25,557,032
    assert count_parameters("resnet50", 1000) == 25_557_032
    assert count_parameters("resnet18", 1000) == 11_689_512
    assert abs(count_parameters("alexnet", 1000) - 61.0e6) < 0.05e6  # "60 million parameters"
    # knobs: filters up to 1024, FC up to 8192
    wide = count_parameters("deepimage16", 1000, widths=(64, 128, 256, 1024, 1024), fc=(8192, 8192))
    assert wide > count_parameters("deepimage16", 1000)
    big = create_model("deepimage16", 1000, widths=(64, 128, 256, 1024, 1024), fc=(8192, 8192), device="meta")
    assert big.head.fc1.in_features == 1024 * 7 * 7 and big.head.fc2.out_features == 8192


def test_alexnet_has_the_papers_ingredients():
    m = create_model("alexnet", device="meta")
    assert sum(isinstance(x, nn.LocalResponseNorm) for x in m.modules()) == 2
    pools = [p for p in m.modules() if isinstance(p, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping
    assert all(isinstance(a, nn.ReLU) for a in m.modules() if isinstance(a, (nn.ReLU, nn.Tanh, nn.Sigmoid)))
    assert m.head.in_shape == (256, 6, 6) and [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("name", list_models())
def test_every_model_full_size_on_meta(name):
    """The full 1,000-class network at its native size, shape-checked on the meta device (free)."""
    m = create_model(name, 1000, 3, device="meta").eval()
    s = m.default_scale
    feats = m.forward_features(torch.empty(2, 3, s, s, device="meta"))
    assert m.forward_head(feats).shape == (2, 1000)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward_small(name):
    """A real forward and backward at a small size: finite outputs, every parameter gets a gradient."""
    torch.manual_seed(0)
    kw = SMALL.get(name, {})
    in_chans = 3 if name in SMALL else 1
    m = create_model(name, 7, in_chans, **kw)
    s = m.default_scale
    x = torch.randn(2, in_chans, s, s)
    y = m(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.logsumexp(1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing
    assert hasattr(m, "forward_features") and hasattr(m, "forward_head")


@pytest.mark.parametrize("name", ["deepimage-tiny", "alexnet-tiny", "inception-bn-tiny", "resnet-tiny"])
def test_checkpointing_and_inplace_do_not_change_results(name):
    """Activation checkpointing and in-place ReLU are memory options only: same outputs and gradients."""
    torch.manual_seed(0)
    ref = create_model(name, 10, 1, inplace=False, dtype=torch.float64)
    alt = create_model(name, 10, 1, inplace=True, checkpointing=True, dtype=torch.float64)
    alt.load_state_dict(ref.state_dict())
    ref.eval(), alt.eval()  # dropout off; BN uses running stats
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    grads = []
    for m in (ref, alt):
        m.zero_grad()
        out = m(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in m.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-12)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_set_grad_checkpointing_switch():
    m = create_model("deepimage-tiny", 10, 1)
    assert not m.grad_checkpointing
    m.set_grad_checkpointing(True)
    assert m.grad_checkpointing


def test_batchnorm_knob_and_28px_grayscale():
    plain = create_model("deepimage-tiny", 10, 1)
    bn = create_model("deepimage-tiny", 10, 1, batchnorm=True)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in plain.modules())
    assert sum(isinstance(x, nn.BatchNorm2d) for x in bn.modules()) == 3
    assert all(c.bias is None for c in bn.modules() if isinstance(c, nn.Conv2d))
    assert plain.default_scale == 28 and plain.head.in_shape == (64, 3, 3)
    big = create_model("deepimage-tiny", 10, 1, img_size=56)  # a model trained at 2x scale
    assert big.head.in_shape == (64, 7, 7) and big(torch.randn(1, 1, 56, 56)).shape == (1, 10)


def test_registry_errors_are_one_line():
    with pytest.raises(MinwaError, match="unknown model"):
        create_model("no-such-net")
    with pytest.raises(MinwaError, match="no option 'colour'"):
        create_model("deepimage-tiny", 10, 1, colour=3)


def test_models_command_lists_counts(capsys):
    import argparse

    from minwa.commands import models as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    assert cmd.run(p.parse_args([])) == 0
    out = capsys.readouterr().out
    assert "deepimage16" in out and "212.76M" in out and "resnet50" in out and "25.56M" in out


@pytest.mark.parametrize("name", ["deepimage-tiny", "alexnet-tiny", "inception-bn-tiny", "resnet-tiny", "fashion-net"])
def test_checkpoint_round_trip(tmp_path, name):
    """Through the trainer's save/load: same class, same weights, bit-identical outputs."""
    from minwa.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(1)
    m = create_model(name, 5, 1).eval()
    meta = {"model": name, "num_classes": 5, "in_chans": 1, "classes": list("abcde"), "scale": 28, "crop": 28}
    save_checkpoint(tmp_path / "ck", m, meta)
    back, meta2 = load_checkpoint(tmp_path / "ck.safetensors", "cpu")
    assert type(back) is type(m) and meta2["classes"] == list("abcde") and not back.training
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m(x), back(x))
