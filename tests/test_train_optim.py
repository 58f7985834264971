"""Optimizer groups and learning-rate schedules: the paper's plateau rule and the modern closed forms."""

import dataclasses

import pytest
import torch

from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.train.config import OptimConfig
from minwa.train.optim import Schedule, build_optimizer, scaled_lr


def test_lr_scales_with_the_global_batch():
    cfg = OptimConfig(lr=0.1, lr_batch=256)
    assert scaled_lr(cfg, 1024) == pytest.approx(0.4)
    assert scaled_lr(cfg, 64) == pytest.approx(0.025)


def test_no_decay_on_norms_and_biases():
    model = create_model("fashion-net", num_classes=10, in_chans=1, widths=[8, 16])
    opt = build_optimizer(model, OptimConfig(weight_decay=5e-4, decay_norm_bias=False), 256)
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decayed["params"]) and all(p.dim() == 1 for p in free["params"])
    n = sum(1 for _ in model.parameters())
    assert len(decayed["params"]) + len(free["params"]) == n


def test_onecycle_warms_up_then_decays_to_the_floor():
    s = Schedule(OptimConfig(schedule="onecycle", warmup_epochs=1, final_lr_frac=0.0), total_steps=100, steps_per_epoch=10)
    f = [s.factor(i) for i in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] < 0.02


def test_a_run_shorter_than_its_warmup_still_reaches_the_peak():
    s = Schedule(OptimConfig(schedule="linear", warmup_epochs=5), total_steps=30, steps_per_epoch=10)
    assert max(s.factor(i) for i in range(30)) == pytest.approx(1.0)


def test_plateau_divides_by_ten_when_accuracy_stops_improving():
    s = Schedule(OptimConfig(schedule="plateau", plateau_patience=2, lr=0.01, min_lr=1e-4), 100, 10)
    for acc in (0.5, 0.6, 0.6, 0.6):
        s.observe(acc)
    assert s.factor(50) == pytest.approx(0.1)
    s2 = Schedule(OptimConfig(schedule="plateau"), 100, 10)
    s2.load_state_dict(s.state_dict())
    assert s2.factor(0) == pytest.approx(0.1)


def test_unknown_schedule_and_frozen_model_are_one_sentence():
    with pytest.raises(MinwaError, match="unknown schedule"):
        Schedule(OptimConfig(schedule="sawtooth"), 10, 1)
    model = torch.nn.Linear(2, 2)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(MinwaError, match="every parameter is frozen"):
        build_optimizer(model, dataclasses.replace(OptimConfig()), 8)
