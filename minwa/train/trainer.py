"""The training loop: loader → augmenter → model → loss, with validation, logging and checkpoints.

``train(cfg)`` is what ``minwa train`` and ``minwa demo`` call. A run is built in named steps (runtime,
data, model, optimizer) from the builders of :mod:`minwa.train.build`, each given its own sub-config;
its resumable state is the :class:`~minwa.train.checkpointer.TrainCheckpointer`'s; this module is the
loop, validation and the run's outputs. The loss on each
rank is ``sum of per-sample losses / global batch`` and ``minwa.parallel`` makes gradients the sum over
ranks, so 1, 2 or N ranks compute the same update as one process on the whole batch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from minwa import config as config_io
from minwa.augment import Augmenter, apply_preset
from minwa.augment.mix import build_mixer
from minwa.data import build_loader
from minwa.data.classes import label_map
from minwa.data.listing import listing_csv
from minwa.data.subset import hold_out, select_classes
from minwa.errors import MinwaError
from minwa.evaluate.metrics import topk_correct
from minwa.evaluate.preprocess import crop_normalise
from minwa.models import list_models
from minwa.models.checkpoint import read_meta, save_checkpoint
from minwa.parallel import failure_guard, full_state_dict, init_distributed, parallelize, shutdown
from minwa.parallel.parallelize import mixed_precision_dtype
from minwa.parallel.watchdog import note_progress
from minwa.pretrained.init import read_init_meta
from minwa.train.build import (build_criterion, build_model, estimate_mean_std, input_geometry, model_kwargs,
                               open_split, seed_everything, small_data_note)
from minwa.train.best import BestWatch
from minwa.train.checkpointer import TrainCheckpointer
from minwa.train.config import TrainConfig, check
from minwa.train.interrupt import StopRequest
from minwa.train.logs import METRICS, RunLog, finite_or_none, read_metrics
from minwa.train.plots import plot_learning_curve
from minwa.train.optim import Schedule, build_optimizer, scaled_lr, set_lr
from minwa.train.reporting import Reporter, early_stop_line, epoch_line, lr_drop_line, startup_lines
from minwa.train.run_folder import check_fresh_run_folder
from minwa.utils.atomic import atomic_write_text
from minwa.utils.device_caps import PARAM_DTYPE, autocast_for, grad_scaler, resolve_precision
from minwa.utils.folder_lock import FolderLock
from minwa.utils.output import prepare_output_folder



@dataclass
class RunResult:
    out: Path
    checkpoint: Path | None  # final.safetensors: the last epoch's weights
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
    best_checkpoint: Path | None = None  # best.safetensors: the highest val top-1 (None without validation)
    best_epoch: float | None = None
    stopped_early: bool = False  # early_stop_patience validations without improvement


# ---------------------------------------------------------------- the run

class Trainer:
    """Holds the built pieces of one run; ``fit()`` trains and returns a :class:`RunResult`.

    ``progress``: draw the live bar; ``report``: print the start-up summary and a line per validation
    (rank 0; ``minwa train --quiet`` keeps these and drops the bar)."""
    def __init__(self, cfg: TrainConfig, progress: bool = False, report: bool = True):
        self.cfg = check(cfg)
        self.progress = progress
        self.report = report
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
        """Let go of the run folder (the lock) and the logs: at the end of the run, or when it failed."""
        if getattr(self, "logs", None) is not None:
            self.logs.close()
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
        cfg = self.cfg
        if not cfg.init:

            if cfg.model.name not in list_models():
                raise MinwaError(f"unknown model '{cfg.model.name}' (known: {', '.join(list_models())})")
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        self.dims = init_distributed(cfg.parallel, cfg.runtime.device)  # cuda:LOCAL_RANK under torchrun
        self.device = self.dims.device
        # "auto" becomes what this device runs fast; the saved config.toml records the resolved precision
        self.cfg = cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(
            cfg.runtime, precision=resolve_precision(cfg.runtime.precision, self.device)))
        self.precision = cfg.runtime.precision
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        self.dtype = PARAM_DTYPE[self.precision]
        self.is_main = self.dims.is_main
        seed_everything(cfg.seed)
        self.out = Path(cfg.out)
        self.lock = self._hold_run_folder()
        # the state to resume, found (and its JSON read) before anything is built: it fixes the input
        # normalisation, and a finished run is reported without touching its folder
        self.checkpointer = TrainCheckpointer(self.out, cfg.resume, self.is_main)
        self.resume_extra = self.checkpointer.resume_extra

    def _setup_data(self):
        cfg, dims = self.cfg, self.dims
        self.train_ds = select_classes(open_split(cfg.data.train, "train"), cfg.data.classes)
        self.val_ds = select_classes(open_split(cfg.data.val, "test"), cfg.data.classes) if cfg.data.val else None
        self.held_out = self.val_ds is None and cfg.data.val_fraction > 0  # validate on part of the training set
        if self.held_out:
            self.train_ds, self.val_ds = hold_out(self.train_ds, cfg.data.val_fraction, cfg.data.seed)
        self.classes = list(self.train_ds.classes)
        self.in_chans = self.train_ds.channels
        self.init_meta = read_init_meta(cfg.init) if cfg.init else None  # a minwa checkpoint's, or imported weights'
        self.scale, self.crop = input_geometry(cfg.data, self.train_ds, self.init_meta)
        dims.local_batch_size(cfg.data.batch_size)  # the global batch must divide over the ranks
        data = dataclasses.replace(cfg.data, scale=self.scale, crop=self.crop)
        self.loader = build_loader(data, self.train_ds, train=True, rank=dims.rank,
                                   world_size=dims.world_size, device=str(self.device))
        # validation images take the training geometry (the shorter side at S), whatever their own size
        val_data = dataclasses.replace(data, drop_last=False)
        self.val_loader = (build_loader(val_data, self.val_ds, train=False,
                                        rank=dims.rank, world_size=dims.world_size, device=str(self.device))
                           if self.val_ds is not None else None)
        remap = label_map(self.val_ds.classes, self.classes) if self.val_ds is not None else None
        self.val_label_map = torch.as_tensor(remap, device=self.device) if remap is not None else None
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise MinwaError(f"the training set ({len(self.train_ds)} images) is smaller than one global batch "
                             f"({cfg.data.batch_size}); lower data.batch_size")
        self.data_note = small_data_note(len(self.train_ds), cfg.data.batch_size, self.steps_per_epoch)
        self.aug_cfg = apply_preset(cfg.augment)
        self.mean, self.std = None, None

    def _setup_model(self):
        cfg = self.cfg
        self.model, trainable, init_meta = build_model(cfg.model, len(self.classes), self.in_chans, self.device,
                                                      self.dtype, self.crop, init=cfg.init, finetune=cfg.finetune,
                                                      channels_last=cfg.runtime.channels_last)
        self.model_name = init_meta["model"] if init_meta else cfg.model.name
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.n_trainable = sum(p.numel() for p in (trainable if trainable is not None else self.model.parameters()))
        if self.resume_extra and self.resume_extra.get("mean"):  # never re-estimated on a resume
            self.mean, self.std = self.resume_extra["mean"], self.resume_extra["std"]
        elif init_meta and init_meta.get("mean"):
            self.mean, self.std = init_meta["mean"], init_meta["std"]
        else:
            self.mean, self.std = estimate_mean_std(self.loader, dims=self.dims)
            self.loader.set_epoch(0)

        self.augmenter = Augmenter(self.aug_cfg, out_size=self.crop, mean=self.mean, std=self.std)
        self.mixer = build_mixer(self.aug_cfg, len(self.classes))
        if self.mixer is not None and self.dims.world_size > 1 and self.dims.local_batch_size(cfg.data.batch_size) % 2:
            raise MinwaError(f"augment.mixup/cutmix pair neighbours within each rank's part of the batch: give "
                             f"each of the {self.dims.world_size} ranks an even part (data.batch_size)")

        self.trainable = trainable
        self.model = parallelize(self.model, self.dims, cfg.parallel, mixed_precision_dtype(cfg.parallel, self.precision),
                                 checkpointing=cfg.model.checkpointing, compile=cfg.model.compile)
        self.ema = None
        if cfg.optim.ema > 0:
            if self.dims.world_size > 1:
                raise MinwaError("optim.ema is single-process only for now; set optim.ema=0 with several ranks")

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema), use_buffers=True)

    def _setup_optim(self):
        cfg = self.cfg
        self.global_batch = cfg.data.batch_size
        self.optimizer = build_optimizer(self.model, cfg.optim, self.global_batch, params=self.trainable)
        self.base_lr = scaled_lr(cfg.optim, self.global_batch)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        # what the run will train, in epochs as shown (0.5 epochs of 9 steps is 5 steps: 0.56)
        self.epochs_planned = round(self.total_steps / self.steps_per_epoch, 2)
        self.schedule = Schedule(cfg.optim, self.total_steps, self.steps_per_epoch)
        self.scaler = grad_scaler(self.precision, self.device,
                                  sharded=self.dims.world_size > 1 and self.dims.strategy in ("fsdp", "hybrid"))
        self.criterion = build_criterion(cfg.optim, self.train_ds.labels, len(self.classes), self.device)
        self.step = 0
        self.epoch = 0
        self.epoch_loss = (torch.zeros((), device=self.device), 0)  # (sum, steps) of this epoch's losses
        self.watch = BestWatch(cfg.early_stop_patience)  # best.safetensors and early stopping
        self.bad_before_resume: list[dict] = []  # damaged samples the resumed run had skipped
        self._resumed_mid_epoch = False
        if self.checkpointer.resume_path:
            self._resume()

    # -- the loop
    def train_step(self, batch) -> torch.Tensor:
        cfg = self.cfg
        note_progress()  # the batch is in hand (the watchdog names a rank stuck before or inside a step)
        x = self.augmenter(batch.images, batch.indices, self.epoch, cfg.seed)
        y = batch.labels.to(self.device, non_blocking=True)
        if self.mixer is not None:  # y becomes class probabilities (the loss takes them as soft targets)
            x, y = self.mixer(x, y, batch.indices, self.epoch, cfg.seed)
        x = x.to(self.dtype)
        if cfg.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = set_lr(self.optimizer, self.base_lr, self.schedule.factor(self.step))
        with autocast_for(self.precision, self.device):
            logits = self.model(x)
        loss = self.criterion(logits.float() if self.dtype == torch.float32 else logits, y) / self.global_batch
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
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
        """Write the resolved config and open the metric logs (on a resume, the lines of steps after the
        resumed state go: the killed run's, which the resumed run repeats)."""
        self.logs = None
        if not self.is_main:
            return
        if self.data_note:  # said once the run is set up, so that a run that cannot start says one thing
            print(f"warning: {self.data_note}", file=sys.stderr)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.toml", config_io.dump_toml(self.cfg))
        self.logs = RunLog(self.out)
        self.logs.start(self.step if self.cfg.resume else None)
        if self.held_out:  # which samples validated this run (data.val_fraction of each class, data.seed)
            atomic_write_text(self.out / "held_out.csv", listing_csv(self.val_ds))

    def finished_result(self) -> RunResult:
        """What a finished run recorded (its final.json), for a ``--resume`` that has nothing left to do."""
        final = self.out / "final"
        metrics = read_meta(final).get("metrics", {}) if (self.out / "final.json").is_file() else {}
        val = metrics.get("val_acc")
        val = float("nan") if val is None else float(val)
        best = metrics.get("best_val_acc")
        return RunResult(out=self.out, checkpoint=final.with_suffix(".safetensors") if metrics else None,
                         val_accuracy=val, best_accuracy=val if best is None else float(best),
                         best_checkpoint=self.out / "best.safetensors" if best is not None else None,
                         best_epoch=metrics.get("best_epoch"), train_seconds=0.0, setup_seconds=self.setup_seconds,
                         seconds_to_target=None, images_per_s=0.0, epochs=self.step / self.steps_per_epoch,
                         already_complete=True, is_main=self.is_main)

    def fit(self) -> RunResult:
        cfg = self.cfg
        if self.complete and self.checkpointer.resume_path:
            return self.finished_result()
        self._start_outputs()
        t0 = time.perf_counter()
        train_time = 0.0
        images = 0
        seconds_to_target = None
        val_acc = float("nan")
        eval_steps = max(1, round(cfg.eval_every * self.steps_per_epoch)) if cfg.eval_every > 0 else None
        save_steps = max(1, round(cfg.save_every * self.steps_per_epoch)) if cfg.save_every > 0 else None
        stop = stopped_early = False
        self.reporter = Reporter(bar=self.progress, enabled=self.report and self.is_main)
        for line in startup_lines(self):
            self.reporter.line(line)
        interrupt = StopRequest(enabled=self.dims.world_size == 1)
        with self.reporter, interrupt:
            self.reporter.start(self.total_steps, self.step)
            while self.step < self.total_steps and not stop:
                if not self._resumed_mid_epoch:
                    self.loader.set_epoch(self.epoch)
                    self.epoch_loss = (torch.zeros((), device=self.device), 0)
                self._resumed_mid_epoch = False
                self.reporter.epoch(self.epoch + 1, self.epochs_planned)
                t_epoch = time.perf_counter()
                for batch in self.loader:
                    loss = self.train_step(batch)
                    self.epoch_loss = (self.epoch_loss[0] + loss, self.epoch_loss[1] + 1)
                    loss_sum, loss_n = self.epoch_loss
                    images += self.global_batch
                    mean_loss = None
                    # every log_every steps and at each epoch's end (so even a small set has a point per epoch)
                    if self.step % cfg.log_every == 0 or self.step % self.steps_per_epoch == 0:
                        mean_loss = float(loss_sum) / loss_n  # the only per-interval device sync
                        self._log({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                                   "loss": mean_loss, "lr": self._last_lr, "time": time.perf_counter() - t0})
                    self.reporter.step(self.global_batch, self._last_lr, mean_loss)
                    at_end = self.step >= self.total_steps
                    over_time = cfg.time_budget_s and (train_time + time.perf_counter() - t_epoch) >= cfg.time_budget_s
                    if (eval_steps and self.step % eval_steps == 0) or at_end or over_time:
                        train_time += time.perf_counter() - t_epoch
                        val_acc = self._validate_and_log(t0, float(loss_sum) / max(1, loss_n))
                        stopped_early = self._after_validation(val_acc)
                        stop = stop or stopped_early
                        if cfg.target_accuracy and val_acc >= cfg.target_accuracy and seconds_to_target is None:
                            seconds_to_target = time.perf_counter() - t0
                            stop = True
                        t_epoch = time.perf_counter()
                        self.reporter.restart_clock()
                    if save_steps and self.step % save_steps == 0:
                        self.save_train_state()
                    if interrupt.requested and not at_end:
                        self._stop_on_signal(interrupt.name)
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
            self.logs.close()
            self._plot()
        best = self.watch.summary()
        return RunResult(out=self.out, checkpoint=ckpt, val_accuracy=val_acc,
                         best_accuracy=best["val_acc"] if best else float("nan"),
                         train_seconds=wall, setup_seconds=self.setup_seconds, seconds_to_target=seconds_to_target,
                         images_per_s=images / max(train_time, 1e-9), epochs=self.step / self.steps_per_epoch,
                         history=self.history, is_main=self.is_main, bad_samples=bad,
                         best_checkpoint=self.out / "best.safetensors" if best and self.is_main else None,
                         best_epoch=best["epoch"] if best else None, stopped_early=stopped_early)

    def _stop_on_signal(self, name: str):
        """Ctrl-C or SIGTERM: save the state at this step boundary and stop, saying how to go on."""
        self.save_train_state()
        if self.is_main:
            self.logs.close()
        raise MinwaError(f"interrupted ({name}) at step {self.step} of {self.total_steps}; the training state is "
                         f"saved: continue exactly with `minwa train --resume {self.out}`", exit_code=130)

    # -- validation
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validate(self) -> dict:
        """Top-1 accuracy, loss, and top-5 when there are more than 5 classes (on fewer it is always 100%), on
        the validation set (flip-averaged softmax if ``eval_flip``)."""
        if self.val_loader is None:
            return {}
        model = self.eval_model()
        was_training = model.training
        model.eval()
        correct1 = correct5 = n = 0
        loss = 0.0
        for batch in self.val_loader:
            # the one test-time path (eval's and predict's too): the loader's centre square, then this
            x = crop_normalise(batch.images, self.crop, self.mean, self.std, self.in_chans).to(self.dtype)
            if self.cfg.runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = batch.labels.to(self.device)
            if self.val_label_map is not None:
                y = self.val_label_map[y]
            with autocast_for(self.precision, self.device):
                logits = model(x)
                if self.cfg.eval_flip:
                    logits_f = model(torch.flip(x, dims=[3]))
            prob = logits.float().softmax(1)
            if self.cfg.eval_flip:
                prob = (prob + logits_f.float().softmax(1)) / 2
            loss += float(nn.functional.nll_loss(prob.clamp_min(1e-12).log(), y, reduction="sum"))
            correct1 += int(topk_correct(prob, y, 1).sum())
            correct5 += int(topk_correct(prob, y, 5).sum())
            n += y.numel()
        counts = torch.tensor([correct1, correct5, n, loss], dtype=torch.float64)
        counts = self.dims.all_reduce_sum(counts) if hasattr(self.dims, "all_reduce_sum") else counts
        c1, c5, n, loss = counts.tolist()
        model.train(was_training)
        return {"val_acc": c1 / n, **({"val_top5": c5 / n} if len(self.classes) > 5 else {}), "val_loss": loss / n}

    def _validate_and_log(self, t0, train_loss) -> float:
        """Validate, log (``train_loss``: the epoch's mean so far), keep ``best.*`` when top-1 improved, and
        say it in one line."""
        self.reporter.validating()
        metrics = self.validate()
        rec = {"kind": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch, "train_loss": train_loss,
               "lr": getattr(self, "_last_lr", self.base_lr), "time": time.perf_counter() - t0, **metrics}
        self._log(rec)
        val_acc = metrics.get("val_acc", float("nan"))
        improved = self.watch.observe(val_acc, rec["epoch"], self.step)
        if improved:
            self.save_best(rec)
        self.reporter.line(epoch_line(rec, self.epochs_planned, len(self.classes), best=improved))
        return val_acc

    def _after_validation(self, val_acc: float) -> bool:
        """The plateau schedule and early stopping after one validation, each said in one line and logged.
        True: stop the run (early_stop_patience validations without a better top-1)."""
        epoch = self.step / self.steps_per_epoch
        if self.schedule.observe(val_acc):
            rec = {"kind": "lr_drop", "step": self.step, "epoch": epoch, "by": 0.1,
                   "factor": self.schedule.plateau_factor, "lr": self.base_lr * self.schedule.plateau_factor}
            self._log(rec)
            self.reporter.line(lr_drop_line(rec, self.cfg.optim.plateau_patience))
        if not self.watch.should_stop:
            return False
        rec = {"kind": "early_stop", "step": self.step, "epoch": epoch, "patience": self.watch.patience,
               "best_val_acc": self.watch.val_acc, "best_epoch": self.watch.epoch}
        self._log(rec)
        self.reporter.line(early_stop_line(rec))
        return True

    # -- outputs
    def _log(self, rec: dict):
        """The one path of every metric record: the run's history, and on rank 0 metrics.jsonl, metrics.csv
        and TensorBoard (:class:`~minwa.train.logs.RunLog`)."""
        self.history.append(rec)
        if self.logs is not None:
            self.logs.write(rec)

    def checkpoint_meta(self, val_acc, metrics: dict | None = None) -> dict:
        cfg = self.cfg
        if cfg.init:
            name, kwargs = self.init_meta["model"], self.init_meta.get("model_kwargs", {})
        else:
            name, kwargs = cfg.model.name, model_kwargs(cfg.model, self.crop)
        return {"model": name, "model_kwargs": kwargs, "num_classes": len(self.classes), "in_chans": self.in_chans,
                "classes": self.classes, "scale": self.scale, "crop": self.crop, "mean": self.mean, "std": self.std,
                "metrics": {"val_acc": finite_or_none(val_acc), "epochs": self.step / self.steps_per_epoch,
                            "steps": self.step, **(metrics or {})},
                "config": config_io.to_dict(cfg)}

    def full_state_dict(self) -> dict:
        if self.dims.world_size == 1:
            return self.eval_model().state_dict()

        return full_state_dict(self.eval_model(), self.dims)

    def save_final(self, val_acc) -> Path | None:
        state = self.full_state_dict()  # collective on several ranks: every rank takes part
        if not self.is_main:
            return None
        best = self.watch.summary()
        return save_checkpoint(self.out / "final", state, self.checkpoint_meta(
            val_acc, {"best_val_acc": best["val_acc"], "best_epoch": best["epoch"]} if best else None))

    def save_best(self, rec: dict) -> None:
        """``best.*`` beside ``final.*``: the weights of the validation ``rec`` (a new best top-1), written
        atomically like final; its epoch and validation metrics in the sidecar."""
        state = self.full_state_dict()  # collective on several ranks: every rank takes part
        if self.is_main:
            extra = {k: finite_or_none(rec[k]) for k in ("val_top5", "val_loss", "train_loss") if k in rec}
            save_checkpoint(self.out / "best", state, self.checkpoint_meta(rec["val_acc"], extra))

    def train_state(self) -> dict:
        """Everything besides the weights and the optimizer that an exact resume needs (the RNG state is
        saved by the checkpointer)."""
        return {"step": self.step, "epoch": self.epoch, "loader": self.loader.state_dict(),
                "schedule": self.schedule.state_dict(), "world_size": self.dims.world_size,
                "mean": self.mean, "std": self.std, "model": self.cfg.model.name,
                "epoch_loss": [float(self.epoch_loss[0]), self.epoch_loss[1]],  # logged means go on exactly
                "best": self.watch.state_dict(),  # best.* and early stopping compare with the same best
                "bad_samples": self.bad_samples(), "grad_scaler": self.scaler.state_dict()}

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
        self.checkpointer.save(self.model, self.optimizer, self.train_state(), more=self._ema_tensors())

    def _resume(self):
        path = self.checkpointer.resume_path
        saved = self.resume_extra.get("model")
        if saved and not self.cfg.init and saved != self.cfg.model.name:
            raise MinwaError(f"the training state in {path} is of model '{saved}', this run's is "
                             f"'{self.cfg.model.name}'; resume with the settings it was saved with")
        extra = self.checkpointer.load(self.model, self.optimizer, more=self._ema_tensors())
        self.step, self.epoch = int(extra["step"]), int(extra["epoch"])
        self.loader.load_state_dict(extra["loader"])
        self._resumed_mid_epoch = True
        self.schedule.load_state_dict(extra["schedule"])
        self.bad_before_resume = list(extra.get("bad_samples", []))
        if extra.get("grad_scaler"):
            self.scaler.load_state_dict(extra["grad_scaler"])
        if extra.get("best"):
            self.watch.load_state_dict(extra["best"])
        loss_sum, loss_n = extra.get("epoch_loss", (0.0, 0))
        self.epoch_loss = (torch.tensor(loss_sum, dtype=torch.float32 if self.dtype != torch.float64 else self.dtype,
                                        device=self.device), int(loss_n))

    def _plot(self):
        """From metrics.jsonl, which holds the whole run (this process's history starts at a resume)."""
        data = "/".join(Path(self.cfg.data.train).parts[-2:])  # e.g. photos/train: a split's name alone says little
        title = f"{self.model_name} on {data} ({len(self.classes)} {'class' if len(self.classes) == 1 else 'classes'})"
        plot_learning_curve(read_metrics(self.out / METRICS), self.out / "learning_curve.png", title=title)


def train(cfg: TrainConfig, progress: bool = False, report: bool = True) -> RunResult:
    """Build everything from ``cfg``, train, validate, save; the plain call behind ``minwa train``
    (``progress``: the live bar; ``report``: the start-up summary and the epoch lines)."""
    trainer = Trainer(cfg, progress=progress, report=report)
    try:
        with failure_guard(trainer.dims):
            return trainer.fit()
    finally:
        trainer.close()

        if trainer.dims.world_size > 1:
            shutdown()
