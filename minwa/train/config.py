"""The training run's configuration: the component configs composed, plus optimisation and run settings."""

from dataclasses import dataclass, field

from minwa.augment.config import AugmentConfig
from minwa.data.config import DataConfig
from minwa.evaluate.config import EvalConfig
from minwa.models.config import ModelConfig
from minwa.parallel.config import ParallelConfig


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
    ema: float = 0.0  # exponential moving average of weights (0 = off), evaluated instead of the raw weights
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    recipe: str = "fashion"  # the recipe this config started from (for the record)
    out: str = "runs/train"  # run folder: checkpoints, metrics.jsonl, plots, resolved config
    epochs: float = 10.0  # may be fractional
    time_budget_s: float = 0.0  # stop after this many seconds of training (0 = no limit)
    target_accuracy: float = 0.0  # stop once val accuracy reaches this (0 = never)
    precision: str = "bf16"  # bf16 (autocast) | fp32 | fp64
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads (0 = all cores)
    seed: int = 0  # weights and augmentation
    eval_every: float = 1.0  # epochs between validations (0 = only at the end)
    eval_flip: bool = True  # flip test-time augmentation in validation
    log_every: int = 50  # steps between metric lines
    init: str = ""  # checkpoint to start from (fine-tuning)
    finetune: str = "all"  # all | fc (last three FC layers) | head (softmax layer only); with `init`
    resume: str = ""  # run folder or train-state to resume exactly (loader position and RNG included)
    save_every: float = 0.0  # epochs between resumable train-state saves (0 = end only)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
