"""Optimizer, parameter groups and learning-rate schedules.

The paper's recipe (SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when validation accuracy
stops improving) is ``schedule = "plateau"``; the modern ones (warm-up, one-cycle, cosine, linear decay)
are closed-form functions of the step. The learning rate is quoted per ``lr_batch`` images and scaled
linearly with the global batch, so a recipe keeps its meaning on 1 or 64 GPUs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.models.base import ModelBase
from minwa.train.config import OptimConfig

SCHEDULES = ("plateau", "onecycle", "cosine", "linear", "constant")


def param_groups(model: nn.Module, cfg: OptimConfig, params=None) -> list[dict]:
    """Weights with decay; norms and biases without, unless ``decay_norm_bias``. With ``trunk_lr_mult`` < 1
    each splits again into the FC layers (``lr_mult`` 1) and the trunk before them (``lr_mult`` = the
    multiplier), which :func:`set_lr` applies."""
    trainable = set(id(p) for p in (params if params is not None else model.parameters()) if p.requires_grad)
    head = _fc_params(model) if cfg.trunk_lr_mult != 1 else set()
    groups: dict[tuple[bool, bool], list] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in trainable:
                continue
            is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                          nn.LocalResponseNorm))
            decays = cfg.decay_norm_bias or not (is_norm or name == "bias")
            groups.setdefault((decays, id(p) in head or not head), []).append(p)
            trainable.discard(id(p))
    order = [(True, True), (False, True), (True, False), (False, False)]  # without a split, the two groups of old
    return [{"params": groups[k], "weight_decay": cfg.weight_decay if k[0] else 0.0,
             "lr_mult": 1.0 if k[1] else cfg.trunk_lr_mult} for k in order if groups.get(k)]


def _fc_params(model: nn.Module) -> set[int]:
    """The FC layers' parameters (the head of the ``ModelBase`` inside any wrapper: DDP, compile, FSDP)."""
    base = next((m for m in model.modules() if isinstance(m, ModelBase)), None)
    return {id(p) for layer in base.fc_layers() for p in layer.parameters()} if base is not None else set()


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int, params=None) -> torch.optim.Optimizer:
    lr = scaled_lr(cfg, global_batch)
    groups = param_groups(model, cfg, params)
    if not groups:
        raise MinwaError("nothing to train: every parameter is frozen")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise MinwaError(f"unknown optimizer '{cfg.name}' (sgd or adamw)")


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    return cfg.lr * global_batch / cfg.lr_batch


class Schedule:
    """Learning-rate multiplier per step; ``observe(val_acc)`` drives the paper's plateau rule."""

    def __init__(self, cfg: OptimConfig, total_steps: int, steps_per_epoch: int):
        if cfg.schedule not in SCHEDULES:
            raise MinwaError(f"unknown schedule '{cfg.schedule}' (one of {', '.join(SCHEDULES)})")
        self.cfg = cfg
        self.total = max(1, total_steps)
        # a run shorter than its warm-up would never reach the peak rate: warm up over a third of it at most
        self.warmup = min(int(cfg.warmup_epochs * steps_per_epoch), self.total // 3)
        self.plateau_factor = 1.0
        self.best = -math.inf
        self.bad_epochs = 0

    def factor(self, step: int) -> float:
        c = self.cfg
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        end = c.final_lr_frac
        if c.schedule in ("linear", "onecycle"):
            return end + (1 - end) * (1 - t)
        if c.schedule == "cosine":
            return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))
        if c.schedule == "plateau":
            return self.plateau_factor
        return 1.0

    def observe(self, val_acc: float) -> bool:
        """Paper §5.1: divide by 10 when accuracy stops increasing. Returns True when the lr dropped."""
        if self.cfg.schedule != "plateau" or val_acc != val_acc:  # NaN: no validation set, nothing to judge by
            return False
        if val_acc > self.best + 1e-4:
            self.best, self.bad_epochs = val_acc, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.cfg.plateau_patience and self.plateau_factor * self.cfg.lr > self.cfg.min_lr:
            self.plateau_factor /= 10
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"plateau_factor": self.plateau_factor, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict) -> None:
        self.plateau_factor, self.best, self.bad_epochs = d["plateau_factor"], d["best"], d["bad_epochs"]


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Every group at ``base_lr * factor`` times its ``lr_mult`` (the trunk's, with discriminative rates);
    returns the head's rate, the one logged."""
    lr = base_lr * factor
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
    return lr
