"""Training: the loop, recipes, optimizers and schedules, checkpoints and resumable state."""

from minwa.models.checkpoint import load_checkpoint, save_checkpoint
from minwa.train.config import OptimConfig, TrainConfig
from minwa.train.recipes import get_recipe
from minwa.train.trainer import RunResult, Trainer, train

__all__ = ["OptimConfig", "RunResult", "TrainConfig", "Trainer", "get_recipe", "load_checkpoint",
           "save_checkpoint", "train"]
