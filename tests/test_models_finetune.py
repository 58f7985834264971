"""Fine-tuning helpers: a new softmax layer; all | fc | head freezing holds frozen weights bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.models import create_model, freeze_for_finetune


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train_steps(model, params, steps=3, seed=0, classes=5):
    """SGD with momentum and weight decay (the paper's), in train mode (dropout and BN active)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 1, 28, 28, generator=g)
        y = torch.randint(0, classes, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name", ["deepimage-tiny", "fashion-net", "resnet-tiny", "alexnet-tiny", "inception-bn-tiny"])
@pytest.mark.parametrize("mode", ["fc", "head"])
def test_frozen_weights_unchanged_bit_for_bit(name, mode):
    torch.manual_seed(0)
    model = create_model(name, 10, 1)
    model.reset_head(5)
    trainable = freeze_for_finetune(model, mode)
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    expect_layers = fcs[-3:] if mode == "fc" else fcs[-1:]
    expect = {id(p) for layer in expect_layers for p in layer.parameters()}
    assert {id(p) for p in trainable} == expect
    before = _snapshot(model)
    # hand the optimizer *every* parameter: frozen ones must still not move (no grad → no decay/momentum)
    _train_steps(model, list(model.parameters()))
    after = model.state_dict()
    trainable_names = {n for n, p in model.named_parameters() if id(p) in expect}
    for key, old in before.items():
        if key in trainable_names:
            assert not torch.equal(old, after[key]), f"{key} should have been trained"
        else:  # weights and BN running statistics alike
            assert torch.equal(old, after[key]), f"{key} changed although frozen"


def test_fc_mode_trains_exactly_the_three_fc_layers_of_deepimage():
    model = create_model("deepimage-tiny", 10, 1)
    trainable = freeze_for_finetune(model, "fc")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {f"head.fc{i}.{w}" for i in (1, 2, 3) for w in ("weight", "bias")}
    assert len(trainable) == 6
    head = freeze_for_finetune(model, "head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.fc3.weight", "head.fc3.bias"}
    assert len(head) == 2


def test_all_mode_restores_training_and_bn_statistics():
    model = create_model("fashion-net", 5, 1)
    freeze_for_finetune(model, "head")
    params = freeze_for_finetune(model, "all")
    assert len(params) == len(list(model.parameters())) and all(p.requires_grad for p in params)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    _train_steps(model, params, steps=1)
    assert not torch.equal(before, bn.running_mean)  # hooks removed: BN learns its statistics again


def test_reset_head_new_classes():
    for name in ("deepimage-tiny", "fashion-net", "resnet-tiny"):
        model = create_model(name, 10, 1)
        old_fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        model.reset_head(5)
        new_fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        assert new_fc is not old_fc and new_fc.out_features == 5 and new_fc.in_features == old_fc.in_features
        assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    meta = create_model("deepimage16", 1000, device="meta")
    meta.reset_head(200)  # the paper's CUB-200 fine-tuning, free on the meta device
    assert meta.head.fc3.out_features == 200 and meta.num_classes == 200


def test_unknown_mode_is_a_user_error():
    with pytest.raises(MinwaError, match="fine-tune mode"):
        freeze_for_finetune(create_model("deepimage-tiny", 10, 1), "conv")
