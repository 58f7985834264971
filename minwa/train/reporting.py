"""What a person sees while a run trains: a start-up summary, a live bar, one line per validation and event.

Every line goes through the one console the live bar draws on (stderr), so it lands above the bar
instead of being glued onto it. ``--quiet`` hides the bar only: the summary and the epoch lines are the
run's record on the terminal and stay. Validation lines label each loss (the validation set's and the
epoch's mean training loss) and show top-5 only when there are more than five classes (on 2 or 4
classes it is always 100%).
"""

from __future__ import annotations

import time
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from minwa.utils.words import noun


class Reporter:
    """Rank 0's voice. ``bar``: draw the live progress bar; ``enabled``: print anything at all (False for
    the other ranks and for library callers that want silence)."""

    def __init__(self, bar: bool = True, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False)
        self.progress = (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console)
                         if bar and enabled else None)
        self.task = None
        self.caption = ""
        self.loss = None
        self.lr = None
        self.t0, self.images = time.perf_counter(), 0  # training images since the last (re)start of the clock

    # -- the live bar
    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self._update(description=self.caption + (" · stopped" if exc[0] else " · done"))
            self.progress.stop()

    def start(self, total: int, completed: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task("", total=total, completed=completed, stats="")

    def epoch(self, epoch: int, epochs: float) -> None:
        """Caption for a new epoch (1-based); restarts the img/s clock so validation is not counted."""
        self.caption = f"epoch {epoch}/{epochs:g}"
        self.restart_clock()
        self._update(description=self.caption)

    def restart_clock(self) -> None:
        self.t0, self.images = time.perf_counter(), 0

    def step(self, images: int, lr: float, loss: float | None = None) -> None:
        """One training step of ``images`` images; ``loss``: a fresh mean loss, when one was synced."""
        self.images += images
        self.lr = lr
        if loss is not None:
            self.loss = loss
        if self.task is not None:
            rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
            parts = ([f"loss {self.loss:.3f}"] if self.loss is not None else []) + [f"{rate:,.0f} img/s",
                                                                                   f"lr {lr:.3g}"]
            self.progress.update(self.task, advance=1, description=self.caption, stats=" · ".join(parts))

    def validating(self) -> None:
        self._update(description=f"{self.caption} · validating")

    def _update(self, **fields) -> None:
        if self.task is not None:
            self.progress.update(self.task, **fields)

    # -- lines
    def line(self, text: str) -> None:
        """A line above the bar (or plain, without one)."""
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def epoch_line(rec: dict, epochs: float, num_classes: int, best: bool = False) -> str:
    """``epoch 3/10: val top-1 61.54% (best), val loss 0.912 | train loss 1.021 | lr 0.01 | 84 s``."""
    head = f"epoch {rec['epoch']:.2f}/{epochs:g}" if rec["epoch"] % 1 else f"epoch {rec['epoch']:.0f}/{epochs:g}"
    if "val_acc" not in rec:
        return f"{head}: train loss {rec['train_loss']:.3f} | lr {rec['lr']:.3g} | {rec['time']:.0f} s"
    val = f"val top-1 {rec['val_acc']:.2%}" + (" (best)" if best else "")
    if num_classes > 5:
        val += f", top-5 {rec['val_top5']:.2%}"
    return (f"{head}: {val}, val loss {rec['val_loss']:.3f} | train loss {rec['train_loss']:.3f} | "
            f"lr {rec['lr']:.3g} | {rec['time']:.0f} s")


def lr_drop_line(rec: dict, patience: int) -> str:
    """The plateau schedule divided the learning rate (by ``1 / rec['by']``)."""
    return (f"epoch {rec['epoch']:.2f}: val top-1 has not improved for {patience} {noun(patience, 'validation')}: learning rate "
            f"{rec['lr'] / rec['by']:.3g} -> {rec['lr']:.3g}")


def early_stop_line(rec: dict) -> str:
    return (f"early stop at epoch {rec['epoch']:.2f}: val top-1 has not improved on {rec['best_val_acc']:.2%} "
            f"(epoch {rec['best_epoch']:.2f}) for {rec['patience']} {noun(rec['patience'], 'validation')} (early_stop_patience)")


def startup_lines(t) -> list[str]:
    """The run's set-up in a few lines, from a built :class:`~minwa.train.trainer.Trainer` ``t``: data,
    steps, model, device and precision, cache, and the learning rate with its scaling arithmetic."""
    cfg = t.cfg
    n_train, batch = len(t.train_ds), t.global_batch
    names = ", ".join(t.classes[:6]) + (", ..." if len(t.classes) > 6 else "")
    if t.val_ds is None:
        val = "no validation set"
    elif t.held_out:
        val = (f"{len(t.val_ds):,} validation images held out of the training folder (data.val_fraction={cfg.data.val_fraction:g}, "
               f"listed in held_out.csv)")
    else:
        val = f"{len(t.val_ds):,} validation images from {cfg.data.val}"
    dropped = n_train - t.steps_per_epoch * batch if cfg.data.drop_last else 0
    ranks = t.dims.world_size
    per_rank = f" ({ranks} ranks x {batch // ranks})" if ranks > 1 else ""
    o = cfg.optim
    lr = (f"{o.lr:g} per {o.lr_batch} images x {batch}/{o.lr_batch} = {t.base_lr:.4g} peak"
          if batch != o.lr_batch else f"{t.base_lr:.4g} peak (quoted per {o.lr_batch} images = the batch)")
    warm = f", {o.warmup_epochs:g} {noun(o.warmup_epochs, 'epoch')} warm-up" if o.warmup_epochs else ""
    start = f"resumed at step {t.step:,} of {t.total_steps:,}" if t.step else "new run"
    return [
        f"run     {t.out} ({start})",
        f"data    {n_train:,} training images in {len(t.classes)} {noun(len(t.classes), 'class')} ({names}) "
        f"from {cfg.data.train}; {val}",
        f"input   {_geometry(t)}; {_cache(t.loader)}",
        f"steps   {t.steps_per_epoch:,} per epoch x {cfg.epochs:g} epochs = {t.total_steps:,}; global batch "
        f"{batch}{per_rank}" + (f"; drop_last leaves out {dropped} images per epoch" if dropped else ""),
        f"model   {t.model_name}: {t.n_params / 1e6:.2f}M parameters"
        + (f" ({t.n_trainable / 1e6:.2f}M trained)" if t.n_trainable != t.n_params else "")
        + f"; {_device(t.device)}, {ranks} {noun(ranks, 'rank')}, precision {t.precision}",
        f"lr      {lr} ({o.name}, {o.schedule} schedule{warm})",
    ]


def _geometry(t) -> str:
    s = f"shorter side {t.scale} px" if t.scale else "native size"
    return f"{s}, {t.crop} px crops" if t.crop else s


def _cache(loader) -> str:
    mode = getattr(loader, "mode", "")
    if mode == "cache":
        return f"cache: decoded once, held in {loader.cache_device.type} memory"
    if mode == "jpeg":
        return "cache: JPEG bytes in memory, decoded on the GPU each batch"
    workers = loader.cfg.workers
    return "no cache: decoded every epoch " + (f"by {workers} worker processes" if workers else "in this process")


def _device(device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
