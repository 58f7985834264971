"""The run's resumable training state: where ``--resume`` finds it, saving and loading it, and the
metric lines a resume supersedes.

One layout for every world size (``minwa.parallel.checkpoint``: DCP shards + JSON, made current by an
atomic pointer), so the trainer never chooses between a single-file and a distributed format and the RNG
state is saved in one place (the checkpoint's JSON).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from torch import nn

from minwa.errors import MinwaError
from minwa.parallel.checkpoint import (is_distributed_checkpoint, leftover_states, load_distributed, read_extra,
                                     save_distributed)
from minwa.utils.atomic import atomic_write_text

TRAIN_STATE = "train_state"  # the run folder's resumable state (see minwa.parallel.checkpoint)
# what a run folder holds before the first save: a run killed then is resumed by starting it again
RUN_START_FILES = {"config.toml", "metrics.jsonl", "metrics.csv", "tensorboard", "held_out.csv", ".minwa.lock"}


class TrainCheckpointer:
    """Saves ``RUN/train_state`` and loads the state ``resume`` names (found, and its JSON read, at
    construction: before anything is built, since it fixes the input normalisation)."""

    def __init__(self, out, resume: str = "", report: bool = True):
        self.path = Path(out) / TRAIN_STATE
        self.resume_path = find_train_state(resume, report) if resume else None
        self.resume_extra = read_extra(self.resume_path) if self.resume_path else None

    def save(self, model: nn.Module, optimizer, extra: dict, more: dict | None = None) -> None:
        """Every rank calls it (a collective on several ranks)."""
        save_distributed(self.path, model, optimizer, extra, more=more)

    def load(self, model: nn.Module, optimizer, more: dict | None = None) -> dict:
        """Load the resumed state into the built (and parallelized) model and optimizer; its ``extra``."""
        return load_distributed(self.resume_path, model, optimizer, more=more)


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



def drop_superseded_metrics(metrics: Path, step: int) -> None:
    """Keep the metric lines of steps up to ``step`` (the resumed state's): the killed run's later lines
    are repeated by the resumed run, so ``metrics.jsonl`` reads as one run. A line the kill cut short goes."""
    if not metrics.is_file():
        return
    lines = metrics.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if _metric_step(ln) <= step]
    if len(kept) != len(lines):
        atomic_write_text(metrics, "".join(kept))


def _metric_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf  # a line the kill cut short: dropped
