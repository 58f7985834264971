"""The training loop: loader → augmenter → model → loss, with validation, logging and checkpoints.

``train(cfg)`` is what ``minwa train`` and ``minwa demo`` call. Building is split into named steps
(runtime, data, model, optimizer) that each take the config and runtime objects only. The loss on each
rank is ``sum of per-sample losses / global batch`` and ``minwa.parallel`` makes gradients the sum over
ranks, so 1, 2 or N ranks compute the same update as one process on the whole batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from minwa import config as config_io
from minwa.errors import MinwaError
from minwa.parallel.checkpoint import (is_distributed_checkpoint, leftover_states, load_distributed, read_extra,
                                     save_distributed)
from minwa.parallel.watchdog import note_progress
from minwa.train.checkpoint import load_checkpoint, save_checkpoint
from minwa.train.config import TrainConfig
from minwa.train.optim import Schedule, build_optimizer, scaled_lr, set_lr
from minwa.train.run_folder import check_fresh_run_folder
from minwa.utils.atomic import atomic_write_text
from minwa.utils.folder_lock import FolderLock
from minwa.utils.oserrors import os_error
from minwa.utils.output import prepare_output_folder

TRAIN_STATE = "train_state"  # the run folder's resumable state (see minwa.parallel.checkpoint)
# what a run folder holds before the first save: a run killed then is resumed by starting it again
RUN_START_FILES = {"config.toml", "metrics.jsonl", ".minwa.lock"}
PARAM_DTYPE = {"bf16": torch.float32, "fp32": torch.float32, "fp64": torch.float64}  # bf16 = autocast over fp32


@dataclass
class RunResult:
    out: Path
    checkpoint: Path | None
    val_accuracy: float  # last validation (top-1, 0..1)
    best_accuracy: float
    train_seconds: float  # wall time of the training loop (data set-up excluded, validation included)
    setup_seconds: float
    seconds_to_target: float | None
    images_per_s: float  # training images per second, validation excluded
    epochs: float
    history: list[dict] = field(default_factory=list)
    already_complete: bool = False  # a --resume of a finished run: nothing was trained or written
    is_main: bool = True  # rank 0 (or the only process): the one that reports
    bad_samples: list[dict] = field(default_factory=list)  # damaged samples skipped (data.on_bad_sample=skip)


# ---------------------------------------------------------------- runtime

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- data

def open_split(path: str, split: str):
    from minwa.data import open_dataset

    if not path:
        raise MinwaError(f"no {split} data given: set --data (or data.{'train' if split == 'train' else 'val'})")
    return open_dataset(path, split=split)


def input_geometry(cfg: TrainConfig, dataset) -> tuple[int, int]:
    """(scale S handed over by the loader, crop C fed to the network)."""
    h, w = dataset.image(0).shape[:2]
    scale = cfg.data.scale or min(h, w)
    crop = cfg.data.crop or scale
    if crop > scale:
        raise MinwaError(f"crop {crop} is larger than scale {scale}")
    return scale, crop


@torch.no_grad()
def estimate_mean_std(loader, max_batches: int = 8, dims=None) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the training images on the first ``max_batches`` global batches, in 0..1
    units. Each rank sums its slice and one all-reduce adds the sums, so every rank, and any number of
    ranks, gets the one-process figures (the sums are exact in float64: integers / 255 squared)."""
    sums = None
    for i, batch in enumerate(loader):
        x = batch.images.to(torch.float64)
        part = torch.stack([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)),
                            torch.full((x.shape[1],), x.numel() / x.shape[1], dtype=torch.float64, device=x.device)])
        sums = part if sums is None else sums + part
        if i + 1 >= max_batches:
            break
    sums = sums.cpu()
    if dims is not None:
        sums = dims.all_reduce_sum(sums)
    s, s2, n = sums / torch.tensor([255.0, 255.0**2, 1.0], dtype=torch.float64)[:, None]
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


# ---------------------------------------------------------------- model

def model_kwargs(cfg: TrainConfig, crop: int) -> dict:
    """The config's constructor kwargs, plus ``img_size`` = crop for FC-headed models that size their head by it."""
    from minwa.models.registry import model_accepts

    kwargs = dict(cfg.model.kwargs)
    if "img_size" not in kwargs and model_accepts(cfg.model.name, "img_size"):
        kwargs["img_size"] = crop
    return kwargs


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, device, dtype, crop: int = 0):
    """Create from the registry, or from ``cfg.init`` (fine-tuning) with a new head when classes differ."""
    from minwa.models import create_model

    init_meta = None
    if cfg.init:
        model, init_meta = load_checkpoint(cfg.init, "cpu")
        if init_meta.get("in_chans", 3) != in_chans:
            raise MinwaError(f"--init checkpoint takes {init_meta.get('in_chans')} channels, the data have {in_chans}")
        if init_meta["num_classes"] != num_classes:
            from minwa.models.finetune import reset_head

            reset_head(model, num_classes)
        model.train()
    else:
        model = create_model(cfg.model.name, num_classes=num_classes, in_chans=in_chans,
                             **model_kwargs(cfg, crop))
    model = model.to(device=device, dtype=dtype)
    if cfg.model.channels_last and device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    trainable = None
    if cfg.init and cfg.finetune != "all":
        from minwa.models.finetune import freeze_for_finetune

        trainable = freeze_for_finetune(model, cfg.finetune)
    return model, trainable, init_meta


# ---------------------------------------------------------------- the run

class Trainer:
    """Holds the built pieces of one run; ``fit()`` trains and returns a :class:`RunResult`."""

    def __init__(self, cfg: TrainConfig, progress: bool = False):
        from minwa.train.config import check

        self.cfg = check(cfg)
        self.progress = progress
        self.t_setup = time.perf_counter()
        self.lock = None
        try:
            self._setup_runtime()
            self._setup_data()
            self._setup_model()
            self._setup_optim()
        except BaseException:
            self.close()
            raise
        self.history: list[dict] = []
        self.setup_seconds = time.perf_counter() - self.t_setup

    def close(self):
        """Let go of the run folder (the lock): at the end of the run, or when setting up failed."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- building steps
    def _hold_run_folder(self) -> FolderLock | None:
        """Rank 0 checks that the run folder can be written, holds it against a second command, and
        refuses a finished run's folder for a new run (unless ``overwrite``); every rank learns the outcome,
        so a refusal stops them all with the same sentence. Before any data is read."""
        lock, problem = None, ""
        if self.is_main:
            try:
                prepare_output_folder(self.cfg.out, "run folder")
                lock = FolderLock(self.cfg.out, "minwa train").acquire()
                if not self.cfg.resume:
                    check_fresh_run_folder(self.cfg.out, self.cfg.overwrite)
            except MinwaError as e:
                problem = str(e)
        if self.dims.world_size > 1:
            box = [problem]
            dist.broadcast_object_list(box, src=0)
            problem = box[0]
        if problem:
            if lock is not None:
                lock.release()
            raise MinwaError(problem)
        return lock

    def _setup_runtime(self):
        from minwa.parallel import init_distributed

        cfg = self.cfg
        if not cfg.init:
            from minwa.models import list_models

            if cfg.model.name not in list_models():
                raise MinwaError(f"unknown model '{cfg.model.name}' (known: {', '.join(list_models())})")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dims = init_distributed(cfg.parallel, cfg.device)  # cuda:LOCAL_RANK under torchrun
        self.device = self.dims.device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        self.dtype = PARAM_DTYPE[cfg.precision]
        self.is_main = self.dims.is_main
        seed_everything(cfg.seed)
        self.out = Path(cfg.out)
        self.lock = self._hold_run_folder()
        # the state to resume, found (and its JSON read) before anything is built: it fixes the input
        # normalisation, and a finished run is reported without touching its folder
        self.resume_path = find_train_state(cfg.resume, self.is_main) if cfg.resume else None
        self.resume_extra = read_extra(self.resume_path) if self.resume_path else None

    def _setup_data(self):
        from minwa.augment import apply_preset
        from minwa.data import build_loader
        from minwa.data.classes import label_map
        from minwa.data.subset import select_classes

        cfg, dims = self.cfg, self.dims
        self.train_ds = select_classes(open_split(cfg.data.train, "train"), cfg.data.classes)
        self.val_ds = select_classes(open_split(cfg.data.val, "test"), cfg.data.classes) if cfg.data.val else None
        self.classes = list(self.train_ds.classes)
        self.in_chans = self.train_ds.channels
        self.scale, self.crop = input_geometry(cfg, self.train_ds)
        dims.local_batch_size(cfg.data.batch_size)  # the global batch must divide over the ranks
        self.loader = build_loader(cfg.data, self.train_ds, train=True, rank=dims.rank,
                                   world_size=dims.world_size, device=str(self.device))
        # validation images take the training geometry (the shorter side at S), whatever their own size
        val_data = dataclasses.replace(cfg.data, drop_last=False, scale=cfg.data.scale or self.scale)
        self.val_loader = (build_loader(val_data, self.val_ds, train=False,
                                        rank=dims.rank, world_size=dims.world_size, device=str(self.device))
                           if self.val_ds is not None else None)
        remap = label_map(self.val_ds.classes, self.classes) if self.val_ds is not None else None
        self.val_label_map = torch.as_tensor(remap, device=self.device) if remap is not None else None
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise MinwaError(f"the training set ({len(self.train_ds)} images) is smaller than one global batch "
                             f"({cfg.data.batch_size}); lower data.batch_size")
        self.aug_cfg = apply_preset(cfg.augment)
        self.mean, self.std = None, None

    def _setup_model(self):
        cfg = self.cfg
        self.model, trainable, init_meta = build_model(cfg, len(self.classes), self.in_chans, self.device, self.dtype,
                                                      self.crop)
        if self.resume_extra and self.resume_extra.get("mean"):  # never re-estimated on a resume
            self.mean, self.std = self.resume_extra["mean"], self.resume_extra["std"]
        elif init_meta and init_meta.get("mean"):
            self.mean, self.std = init_meta["mean"], init_meta["std"]
        else:
            self.mean, self.std = estimate_mean_std(self.loader, dims=self.dims)
            self.loader.set_epoch(0)
        from minwa.augment import Augmenter

        self.augmenter = Augmenter(self.aug_cfg, out_size=self.crop, mean=self.mean, std=self.std)
        from minwa.parallel import parallelize
        from minwa.parallel.parallelize import mixed_precision_dtype

        self.trainable = trainable
        self.model = parallelize(self.model, self.dims, cfg.parallel, mixed_precision_dtype(cfg.parallel, cfg.precision),
                                 checkpointing=cfg.model.checkpointing, compile=cfg.model.compile)
        self.ema = None
        if cfg.optim.ema > 0:
            if self.dims.world_size > 1:
                raise MinwaError("optim.ema is single-process only for now; set optim.ema=0 with several ranks")
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema), use_buffers=True)

    def _setup_optim(self):
        cfg = self.cfg
        self.global_batch = cfg.data.batch_size
        self.optimizer = build_optimizer(self.model, cfg.optim, self.global_batch, params=self.trainable)
        self.base_lr = scaled_lr(cfg.optim, self.global_batch)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.schedule = Schedule(cfg.optim, self.total_steps, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(reduction="sum", label_smoothing=cfg.optim.label_smoothing)
        self.step = 0
        self.epoch = 0
        self.epoch_loss = (torch.zeros((), device=self.device), 0)  # (sum, steps) of this epoch's losses
        self.bad_before_resume: list[dict] = []  # damaged samples the resumed run had skipped
        self._resumed_mid_epoch = False
        if self.resume_path:
            self._resume(self.resume_path)

    # -- the loop
    def train_step(self, batch) -> torch.Tensor:
        cfg = self.cfg
        note_progress()  # the batch is in hand (the watchdog names a rank stuck before or inside a step)
        x = self.augmenter(batch.images, batch.indices, self.epoch, cfg.seed)
        x = x.to(self.dtype)
        if cfg.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch.labels.to(self.device, non_blocking=True)
        lr = set_lr(self.optimizer, self.base_lr, self.schedule.factor(self.step))
        with autocast_for(cfg.precision, self.device):
            logits = self.model(x)
        loss = self.criterion(logits.float() if self.dtype == torch.float32 else logits, y) / self.global_batch
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self._last_lr = lr
        note_progress()
        # this rank's share, scaled to a batch mean; a tensor, so the GPU is not waited for every step
        return loss.detach() * self.dims.world_size

    @property
    def complete(self) -> bool:
        """The run has taken all its steps (a resume of a finished run has nothing to do)."""
        return self.step >= self.total_steps

    def _start_outputs(self):
        """Write the resolved config; on a resume, drop the metric lines of steps after the resumed state
        (the killed run's, which the resumed run repeats)."""
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.toml", config_io.dump_toml(self.cfg))
        metrics = self.out / "metrics.jsonl"
        if self.cfg.resume and metrics.is_file():
            lines = metrics.read_text().splitlines(keepends=True)
            kept = [ln for ln in lines if _metric_step(ln) <= self.step]
            if len(kept) != len(lines):
                atomic_write_text(metrics, "".join(kept))

    def finished_result(self) -> RunResult:
        """What a finished run recorded (its final.json), for a ``--resume`` that has nothing left to do."""
        from minwa.train.checkpoint import read_meta

        final = self.out / "final"
        metrics = read_meta(final).get("metrics", {}) if (self.out / "final.json").is_file() else {}
        val = metrics.get("val_acc")
        val = float("nan") if val is None else float(val)
        return RunResult(out=self.out, checkpoint=final.with_suffix(".safetensors") if metrics else None,
                         val_accuracy=val, best_accuracy=val, train_seconds=0.0, setup_seconds=self.setup_seconds,
                         seconds_to_target=None, images_per_s=0.0, epochs=self.step / self.steps_per_epoch,
                         already_complete=True, is_main=self.is_main)

    def fit(self) -> RunResult:
        cfg = self.cfg
        if self.complete and self.resume_path:
            return self.finished_result()
        self._start_outputs()
        t0 = time.perf_counter()
        train_time = 0.0
        images = 0
        seconds_to_target = None
        val_acc = best = float("nan")
        eval_steps = max(1, round(cfg.eval_every * self.steps_per_epoch)) if cfg.eval_every > 0 else None
        save_steps = max(1, round(cfg.save_every * self.steps_per_epoch)) if cfg.save_every > 0 else None
        stop = False
        progress = self._progress()
        with progress or contextlib.nullcontext():
            task = progress.add_task("train", total=self.total_steps, completed=self.step) if progress else None
            while self.step < self.total_steps and not stop:
                if not self._resumed_mid_epoch:
                    self.loader.set_epoch(self.epoch)
                    self.epoch_loss = (torch.zeros((), device=self.device), 0)
                self._resumed_mid_epoch = False
                t_epoch = time.perf_counter()
                for batch in self.loader:
                    loss = self.train_step(batch)
                    self.epoch_loss = (self.epoch_loss[0] + loss, self.epoch_loss[1] + 1)
                    loss_sum, loss_n = self.epoch_loss
                    images += self.global_batch
                    if task is not None:
                        progress.update(task, advance=1)
                    if self.step % cfg.log_every == 0:
                        mean_loss = float(loss_sum) / loss_n  # the only per-interval device sync
                        self._log({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                                   "loss": mean_loss, "lr": self._last_lr, "time": time.perf_counter() - t0})
                        if task is not None:
                            progress.update(task, description=f"epoch {self.epoch + 1} loss {mean_loss:.3f}")
                    at_end = self.step >= self.total_steps
                    over_time = cfg.time_budget_s and (train_time + time.perf_counter() - t_epoch) >= cfg.time_budget_s
                    if (eval_steps and self.step % eval_steps == 0) or at_end or over_time:
                        train_time += time.perf_counter() - t_epoch
                        val_acc = self._validate_and_log(t0, float(loss_sum) / max(1, loss_n))
                        best = val_acc if not best == best else max(best, val_acc)
                        if self.schedule.observe(val_acc) and self.is_main:
                            self._log({"kind": "lr_drop", "step": self.step, "factor": self.schedule.plateau_factor})
                        if cfg.target_accuracy and val_acc >= cfg.target_accuracy and seconds_to_target is None:
                            seconds_to_target = time.perf_counter() - t0
                            stop = True
                        t_epoch = time.perf_counter()
                    if save_steps and self.step % save_steps == 0:
                        self.save_train_state()
                    if at_end or over_time or stop:
                        stop = True
                        break
                train_time += time.perf_counter() - t_epoch
                if not stop:
                    self.epoch += 1
        wall = time.perf_counter() - t0
        bad = self.bad_samples()
        if bad:
            self._log({"kind": "bad_samples", "step": self.step, "skipped": sum(r["skipped"] for r in bad),
                       "samples": bad})
            if self.is_main:
                print(f"warning: {sum(r['skipped'] for r in bad)} batch places went to a neighbour because "
                      f"{len(bad)} samples are damaged (data.on_bad_sample=skip; listed in metrics.jsonl), e.g. "
                      f"{bad[0]['shard']} sample {bad[0]['key']} ({bad[0]['reason']}); `minwa verify --deep` "
                      f"names them all", file=sys.stderr)
        ckpt = self.save_final(val_acc)
        self.save_train_state()
        if self.is_main:
            self._plot()
        return RunResult(out=self.out, checkpoint=ckpt, val_accuracy=val_acc, best_accuracy=best,
                         train_seconds=wall, setup_seconds=self.setup_seconds, seconds_to_target=seconds_to_target,
                         images_per_s=images / max(train_time, 1e-9), epochs=self.step / self.steps_per_epoch,
                         history=self.history, is_main=self.is_main, bad_samples=bad)

    # -- validation
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validate(self) -> dict:
        """Top-1 / top-5 accuracy and loss on the validation set (flip-averaged softmax if ``eval_flip``)."""
        if self.val_loader is None:
            return {}
        model = self.eval_model()
        was_training = model.training
        model.eval()
        correct1 = correct5 = n = 0
        loss = 0.0
        for batch in self.val_loader:
            images = batch.images
            if images.shape[1] != self.in_chans:  # e.g. a grey test set for a model trained on RGB
                from minwa.evaluate.views import match_channels

                images = match_channels(images.float(), self.in_chans).round().to(torch.uint8)
            x = self.augmenter.eval(images).to(self.dtype)
            if self.cfg.model.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = batch.labels.to(self.device)
            if self.val_label_map is not None:
                y = self.val_label_map[y]
            with autocast_for(self.cfg.precision, self.device):
                logits = model(x)
                if self.cfg.eval_flip:
                    logits_f = model(torch.flip(x, dims=[3]))
            prob = logits.float().softmax(1)
            if self.cfg.eval_flip:
                prob = (prob + logits_f.float().softmax(1)) / 2
            loss += float(nn.functional.nll_loss(prob.clamp_min(1e-12).log(), y, reduction="sum"))
            top = prob.topk(min(5, prob.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(1).sum())
            n += y.numel()
        counts = torch.tensor([correct1, correct5, n, loss], dtype=torch.float64)
        counts = self.dims.all_reduce_sum(counts) if hasattr(self.dims, "all_reduce_sum") else counts
        c1, c5, n, loss = counts.tolist()
        model.train(was_training)
        return {"val_acc": c1 / n, "val_top5": c5 / n, "val_loss": loss / n}

    def _validate_and_log(self, t0, train_loss) -> float:
        metrics = self.validate()
        rec = {"kind": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch, "train_loss": train_loss,
               "lr": getattr(self, "_last_lr", self.base_lr), "time": time.perf_counter() - t0, **metrics}
        self._log(rec)
        if self.is_main and self.progress and metrics:
            from rich.console import Console

            Console(stderr=True).print(f"epoch {rec['epoch']:.2f}: val top-1 {metrics['val_acc']:.2%}, "
                                       f"top-5 {metrics['val_top5']:.2%}, loss {train_loss:.3f}, "
                                       f"{rec['time']:.0f} s")
        return metrics.get("val_acc", float("nan"))

    # -- outputs
    def _log(self, rec: dict):
        self.history.append(rec)
        if self.is_main:  # standard JSON: a NaN (a diverged loss) is written as null
            path = self.out / "metrics.jsonl"
            try:
                with open(path, "a") as f:
                    f.write(json.dumps({k: _finite_or_none(v) for k, v in rec.items()}) + "\n")
            except OSError as e:
                raise os_error(e, path) from None

    def _progress(self):
        if not (self.progress and self.is_main):
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=False)

    def checkpoint_meta(self, val_acc) -> dict:
        cfg = self.cfg
        if cfg.init:
            from minwa.train.checkpoint import read_meta

            base = read_meta(cfg.init)
            name, kwargs = base["model"], base.get("model_kwargs", {})
        else:
            name, kwargs = cfg.model.name, model_kwargs(self.cfg, self.crop)
        return {"model": name, "model_kwargs": kwargs, "num_classes": len(self.classes), "in_chans": self.in_chans,
                "classes": self.classes, "scale": self.scale, "crop": self.crop, "mean": self.mean, "std": self.std,
                "metrics": {"val_acc": _finite_or_none(val_acc), "epochs": self.step / self.steps_per_epoch, "steps": self.step},
                "config": config_io.to_dict(cfg)}

    def full_state_dict(self) -> dict:
        if self.dims.world_size == 1:
            return self.eval_model().state_dict()
        from minwa.parallel import full_state_dict

        return full_state_dict(self.eval_model(), self.dims)

    def save_final(self, val_acc) -> Path | None:
        state = self.full_state_dict()  # collective on several ranks: every rank takes part
        if not self.is_main:
            return None
        return save_checkpoint(self.out / "final", state, self.checkpoint_meta(val_acc))

    def train_state(self) -> dict:
        """Everything besides the weights and the optimizer that an exact resume needs (the RNG state is
        saved by the checkpointer)."""
        return {"step": self.step, "epoch": self.epoch, "loader": self.loader.state_dict(),
                "schedule": self.schedule.state_dict(), "world_size": self.dims.world_size,
                "mean": self.mean, "std": self.std, "model": self.cfg.model.name,
                "epoch_loss": [float(self.epoch_loss[0]), self.epoch_loss[1]],  # logged means go on exactly
                "bad_samples": self.bad_samples()}

    def bad_samples(self) -> list[dict]:
        """The damaged samples every rank skipped so far, this run and the runs it resumes, by index (a
        collective with data.on_bad_sample=skip on several ranks: every rank calls it)."""
        if self.cfg.data.on_bad_sample != "skip":
            return []
        parts = [self.loader.bad_samples(), self.bad_before_resume]
        if self.dims.world_size > 1:
            gathered = [None] * self.dims.world_size
            dist.all_gather_object(gathered, parts[0])
            parts = [*gathered, self.bad_before_resume]
        merged: dict[int, dict] = {}
        for rec in (r for part in parts for r in part):
            if rec["index"] in merged:
                merged[rec["index"]]["skipped"] += rec["skipped"]
            else:
                merged[rec["index"]] = dict(rec)
        return [merged[i] for i in sorted(merged)]

    def _ema_tensors(self) -> dict:
        return {f"ema.{k}": v for k, v in self.ema.state_dict().items()} if self.ema is not None else {}

    def save_train_state(self):
        """One layout for every world size (DCP), so a state saved by N ranks resumes on M, 1 included."""
        save_distributed(self.out / TRAIN_STATE, self.model, self.optimizer, self.train_state(),
                         more=self._ema_tensors())

    def _resume(self, path):
        saved = self.resume_extra.get("model")
        if saved and not self.cfg.init and saved != self.cfg.model.name:
            raise MinwaError(f"the training state in {path} is of model '{saved}', this run's is "
                             f"'{self.cfg.model.name}'; resume with the settings it was saved with")
        extra = load_distributed(path, self.model, self.optimizer, more=self._ema_tensors())
        self.step, self.epoch = int(extra["step"]), int(extra["epoch"])
        self.loader.load_state_dict(extra["loader"])
        self._resumed_mid_epoch = True
        self.schedule.load_state_dict(extra["schedule"])
        self.bad_before_resume = list(extra.get("bad_samples", []))
        loss_sum, loss_n = extra.get("epoch_loss", (0.0, 0))
        self.epoch_loss = (torch.tensor(loss_sum, dtype=torch.float32 if self.dtype != torch.float64 else self.dtype,
                                        device=self.device), int(loss_n))

    def _plot(self):
        from minwa.train.plots import plot_learning_curve

        plot_learning_curve(self.history, self.out / "learning_curve.png", title=f"{self.cfg.recipe}")


def find_train_state(path, report: bool = True) -> Path | None:
    """The training state ``--resume PATH`` means: a run folder's ``train_state/`` or a state folder.
    None for a run folder whose run was stopped before its first save: it starts again from step 0,
    which is what resuming it exactly means."""
    path = Path(path)
    if not path.exists():
        raise MinwaError(f"nothing to resume at {path}: no such folder")
    for candidate in (path / TRAIN_STATE, path / "train_state_dcp", path):
        if is_distributed_checkpoint(candidate):
            return candidate
    if path.is_dir() and all(p.name in RUN_START_FILES for p in path.iterdir()):
        if report:
            print(f"note: the run in {path} was stopped before its first save; starting it from the beginning",
                  file=sys.stderr)
        return None
    if (path / "train_state.json").is_file():
        raise MinwaError(f"{path} holds a training state in the two-file layout of an older minwa, which this "
                         "version does not read; resume it with that version or start the run again")
    left = leftover_states(path / "train_state_dcp") or leftover_states(path / TRAIN_STATE)
    hint = f"; a complete state was left at {left[-1]} (pass it to --resume)" if left else ""
    raise MinwaError(f"nothing to resume at {path}: no training state there{hint}")


def _finite_or_none(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _metric_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf  # a line the kill cut short: dropped


def train(cfg: TrainConfig, progress: bool = False) -> RunResult:
    """Build everything from ``cfg``, train, validate, save; the plain call behind ``minwa train``."""
    from minwa.parallel import failure_guard

    trainer = Trainer(cfg, progress=progress)
    try:
        with failure_guard(trainer.dims):
            return trainer.fit()
    finally:
        trainer.close()
        from minwa.parallel import shutdown

        if trainer.dims.world_size > 1:
            shutdown()
