"""The training run's configuration: the component configs composed, plus optimisation and run settings."""

from dataclasses import dataclass, field

from minwa import config as config_io
from minwa.augment import config as augment_config
from minwa.augment.config import AugmentConfig
from minwa.data import config as data_config
from minwa.data.config import DataConfig
from minwa.errors import check_rules
from minwa.models import config as model_config
from minwa.models.config import ModelConfig
from minwa.parallel import config as parallel_config
from minwa.parallel.config import ParallelConfig
from minwa.utils import runtime_config
from minwa.utils.runtime_config import RuntimeConfig

CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (momentum, the paper's) | adamw
    lr: float = 0.01  # peak learning rate per `lr_batch` images (scaled linearly with the global batch)
    lr_batch: int = 256  # the batch size `lr` is quoted for
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_bias: bool = True  # False: no weight decay on norms and biases
    schedule: str = "plateau"  # plateau (paper: /10 when val accuracy stops improving) | onecycle | cosine | linear | constant
    warmup_epochs: float = 0.0
    final_lr_frac: float = 0.0  # linear/cosine/onecycle end at lr * final_lr_frac
    plateau_patience: int = 2  # epochs without improvement before dividing by 10
    min_lr: float = 1e-4
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | balanced: each class's loss weighted by N / (classes x its training images)
    ema: float = 0.0  # exponential moving average of weights (0 = off), evaluated instead of the raw weights
    grad_clip: float = 0.0
    # fine-tuning's discriminative rates (timm/fastai): the layers before the FC layers train at lr x this
    # (0.1: a pretrained trunk moves 10x slower than the head it feeds); 1 = one rate for all
    trunk_lr_mult: float = 1.0


@dataclass
class TrainConfig:
    recipe: str = "fashion"  # the recipe this config started from (for the record)
    out: str = "runs/train"  # run folder: checkpoints, metrics.jsonl, plots, resolved config
    epochs: float = 10.0  # may be fractional
    time_budget_s: float = 0.0  # stop after this many seconds of training (0 = no limit)
    target_accuracy: float = 0.0  # stop once val accuracy reaches this (0 = never)
    early_stop_patience: int = 0  # stop after this many validations without a better val top-1 (0 = never)
    seed: int = 0  # weights and augmentation
    eval_every: float = 1.0  # epochs between validations (0 = only at the end)
    eval_flip: bool = True  # flip test-time augmentation in validation
    log_every: int = 50  # steps between metric lines
    init: str = ""  # checkpoint to start from (fine-tuning)
    finetune: str = "all"  # all | fc (last three FC layers) | head (softmax layer only); with `init`
    resume: str = ""  # run folder or train-state to resume exactly (loader position and RNG included)
    save_every: float = 1.0  # epochs between resumable train-state saves (0 = end only; Ctrl-C also saves)
    overwrite: bool = False  # a new run (no resume) may replace a finished run's outputs in `out`
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    # keys that moved into a section: a file or --set that still uses them is told the new name
    MOVED = {"precision": "runtime.precision", "device": "runtime.device", "threads": "runtime.threads"}


def check(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible settings up front, each in one sentence (before any data is read): every number
    finite, then each section's own rules, then the run's."""
    config_io.check_finite(cfg)
    data_config.check(cfg.data)
    augment_config.check(cfg.augment)
    parallel_config.check(cfg.parallel)
    if not cfg.init:  # with --init the checkpoint's model is used, not model.*
        model_config.check(cfg.model)
    runtime_config.check(cfg.runtime)
    o = cfg.optim
    check_rules([
        (cfg.epochs > 0, f"epochs must be positive, got {cfg.epochs}"),
        (o.lr > 0, f"optim.lr must be positive, got {o.lr}"),
        (o.lr_batch > 0, f"optim.lr_batch must be positive, got {o.lr_batch}"),
        (0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}"),
        (o.weight_decay >= 0, f"optim.weight_decay must not be negative, got {o.weight_decay}"),
        (0 <= o.label_smoothing < 1, f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}"),
        (o.class_weights in CLASS_WEIGHTS, f"optim.class_weights must be {' or '.join(CLASS_WEIGHTS)}, "
                                           f"got '{o.class_weights}'"),
        (0 <= o.ema < 1, f"optim.ema must be in [0, 1), got {o.ema}"),
        (o.warmup_epochs >= 0, f"optim.warmup_epochs must not be negative, got {o.warmup_epochs}"),
        (0 <= o.final_lr_frac <= 1, f"optim.final_lr_frac must be in [0, 1], got {o.final_lr_frac}"),
        (o.plateau_patience >= 1, f"optim.plateau_patience must be at least 1, got {o.plateau_patience}"),
        (o.grad_clip >= 0, f"optim.grad_clip must not be negative, got {o.grad_clip}"),
        (0 < o.trunk_lr_mult <= 1, f"optim.trunk_lr_mult is a fraction of the lr in (0, 1], got {o.trunk_lr_mult}"),
        (cfg.eval_every >= 0 and cfg.save_every >= 0, "eval_every and save_every must not be negative"),
        (cfg.time_budget_s >= 0, f"time_budget_s must not be negative, got {cfg.time_budget_s}"),
        (0 <= cfg.target_accuracy <= 1, f"target_accuracy is a fraction in [0, 1], got {cfg.target_accuracy}"),
        (cfg.early_stop_patience >= 0, f"early_stop_patience must not be negative (0 = off), got {cfg.early_stop_patience}"),
        (cfg.log_every >= 1, f"log_every must be at least 1, got {cfg.log_every}"),
        (cfg.finetune in ("all", "fc", "head"), f"finetune must be all, fc or head, not '{cfg.finetune}'"),
    ])
    return cfg
