"""The run's metric logs: ``metrics.jsonl`` (the record), ``metrics.csv`` and TensorBoard event files.

One :class:`RunLog` is fed by the trainer's one ``_log`` path, on rank 0 only; every record goes to all
three. ``metrics.jsonl`` is the source of truth: on a resume its lines after the resumed step are dropped
(:func:`~minwa.train.checkpointer.drop_superseded_metrics`, the killed run's, which the resumed run
repeats), ``metrics.csv`` is rebuilt from what is left (so it follows the same rule), and TensorBoard is
told to forget the same steps (``purge_step``). The learning curve is drawn from ``metrics.jsonl``
(:func:`read_metrics`), so it shows the whole run, not only the part after the last resume.

TensorBoard is a dependency of minwa (pyproject): people coming from timm, Lightning or Keras expect
event files in every run folder without asking for them. An environment installed without it still
trains (jsonl and csv), with one warning line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from minwa.train.checkpointer import drop_superseded_metrics
from minwa.utils.atomic import atomic_write_text
from minwa.utils.oserrors import os_error

METRICS = "metrics.jsonl"
CSV = "metrics.csv"
TENSORBOARD = "tensorboard"  # the event files' folder in the run folder
# the CSV's columns, fixed (a record's other fields, e.g. the list of damaged samples, stay in the jsonl)
CSV_COLUMNS = ("kind", "step", "epoch", "time", "train_loss", "val_loss", "val_acc", "val_top5", "lr",
               "factor", "best_val_acc", "best_epoch")
# fields that are the record's position, not a curve of their own in TensorBoard
_NOT_SCALARS = {"kind", "step", "epoch", "time"}


def finite_or_none(v):
    """Standard JSON: a NaN or infinity (a diverged loss) is written as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def read_metrics(path) -> list[dict]:
    """The records of ``metrics.jsonl`` (a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def csv_row(rec: dict) -> str:
    """One CSV line of ``rec`` in :data:`CSV_COLUMNS` order (a missing or null value is an empty cell; a
    ``train`` record's ``loss`` is its ``train_loss``)."""
    buf = io.StringIO()
    values = [finite_or_none(rec.get("loss" if c == "train_loss" and rec.get("kind") == "train" else c))
              for c in CSV_COLUMNS]
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


class RunLog:
    """Appends each record to the run folder's three logs. Build it on rank 0 only."""

    def __init__(self, out):
        self.out = Path(out)
        self.tb = None

    def start(self, resumed_step: int | None) -> None:
        """Before the first record: on a resume drop the superseded lines, then (re)write the CSV from
        ``metrics.jsonl`` and open the TensorBoard writer."""
        jsonl = self.out / METRICS
        if resumed_step is not None:
            drop_superseded_metrics(jsonl, resumed_step)
        atomic_write_text(self.out / CSV, csv_row(dict(zip(CSV_COLUMNS, CSV_COLUMNS)))
                          + "".join(csv_row(r) for r in read_metrics(jsonl)))
        self.tb = open_tensorboard(self.out / TENSORBOARD, None if resumed_step is None else resumed_step + 1)

    def write(self, rec: dict) -> None:
        rec = {k: finite_or_none(v) for k, v in rec.items()}
        self._append(self.out / METRICS, json.dumps(rec) + "\n")
        self._append(self.out / CSV, csv_row(rec))
        if self.tb is not None:
            for key, value in rec.items():
                if key not in _NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{rec.get('kind', 'misc')}/{key}", value, global_step=int(rec.get("step", 0)))
            if rec.get("kind") != "train":  # validations and events: on disk at once (train lines every 120 s)
                self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    @staticmethod
    def _append(path: Path, text: str) -> None:
        try:
            with open(path, "a") as f:
                f.write(text)
        except OSError as e:
            raise os_error(e, path) from None


def open_tensorboard(folder: Path, purge_step: int | None):
    """A TensorBoard writer into ``folder`` (``purge_step``: on a resume, the first step the resumed run
    writes again; TensorBoard hides the older events from there on), or None with one warning when the
    ``tensorboard`` package is missing."""
    try:  # heavy (tensorboard, protobuf): imported only when a run starts writing
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("warning: no TensorBoard logs for this run: the tensorboard package is not installed "
              "(pip install tensorboard); metrics.jsonl and metrics.csv are written", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)
