"""Training: the loop, recipes, optimizers and schedules, checkpoints and resumable state. Names are
imported on first use, so that reading ``TrainConfig`` or a recipe does not pull in torch."""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "load_checkpoint": "minwa.models.checkpoint",
    "save_checkpoint": "minwa.models.checkpoint",
    "OptimConfig": "minwa.train.config",
    "TrainConfig": "minwa.train.config",
    "get_recipe": "minwa.train.recipes",
    "RunResult": "minwa.train.trainer",
    "Trainer": "minwa.train.trainer",
    "train": "minwa.train.trainer",
})
