"""The best validation so far: which epoch ``best.safetensors`` holds, and when to stop early.

A run's last epoch is often not its best (a run saved 39.6% where its best epoch reached 49.0%), so the
trainer keeps ``best.*`` (highest val top-1) beside ``final.*`` (the last). ``early_stop_patience`` = N
stops the run once N validations in a row have not improved on the best (0 = never). The state goes
into the resumable training state, so a resumed run compares with the same best.
"""

from __future__ import annotations

import math


class BestWatch:
    def __init__(self, patience: int = 0):
        self.patience = patience
        self.val_acc = -math.inf
        self.epoch = 0.0
        self.step = 0
        self.since = 0  # validations since the best

    def observe(self, val_acc: float, epoch: float, step: int) -> bool:
        """Record one validation; True when it is a new best (a NaN, no validation set, never is)."""
        if not math.isfinite(val_acc):
            return False
        if val_acc > self.val_acc:
            self.val_acc, self.epoch, self.step, self.since = val_acc, epoch, step, 0
            return True
        self.since += 1
        return False

    @property
    def found(self) -> bool:
        return math.isfinite(self.val_acc)

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since >= self.patience

    def summary(self) -> dict | None:
        """``{"val_acc", "epoch", "step"}`` of the best validation, or None before the first."""
        return {"val_acc": self.val_acc, "epoch": self.epoch, "step": self.step} if self.found else None

    def state_dict(self) -> dict:
        return {"val_acc": self.val_acc if self.found else None, "epoch": self.epoch, "step": self.step,
                "since": self.since}

    def load_state_dict(self, d: dict) -> None:
        self.val_acc = -math.inf if d.get("val_acc") is None else float(d["val_acc"])
        self.epoch, self.step, self.since = float(d["epoch"]), int(d["step"]), int(d["since"])
