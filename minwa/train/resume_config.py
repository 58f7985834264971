"""``--resume DIR`` continues the run with the settings it was saved with.

The run folder's ``config.toml`` is the resolved configuration that ran (the precision ``auto`` became, the
data it read), so a resume starts from it, not from a recipe: before this, ``minwa train --resume RUN``
rebuilt the default recipe and failed on the weights' shapes. On top of it only settings that leave the
continuation exact may change (how long to train, how often to log, validate and save, how many loader
processes and threads, the layout over ranks); any other change is refused in one sentence, since it would silently make the
resumed run a different run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from minwa import config as config_io
from minwa.errors import MinwaError

# fields a resume may change without changing what the remaining steps compute
SAFE_ON_RESUME = ("epochs", "time_budget_s", "target_accuracy", "log_every", "eval_every", "save_every",
                  "out", "resume", "data.workers", "runtime.threads")
SAFE_SECTIONS = ("parallel.",)  # the layout over ranks: N ranks compute the one-process update (1 -> N resumes)


def saved_config_path(resume) -> Path | None:
    """The run's ``config.toml`` for ``--resume PATH`` (a run folder, or a state inside its train_state/)."""
    path = Path(resume)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / "config.toml").is_file():
            return folder / "config.toml"
    return None


def _flat(cfg, prefix: str = "") -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def resume_config(base_cls, resume, path=None, overrides=None, flags=None):
    """The saved config of the run at ``resume`` with the safe changes of a file, flags and ``--set``
    applied; None when the run folder holds no config.toml (a bare state: the caller's config is used)."""
    saved_path = saved_config_path(resume)
    if saved_path is None:
        return None
    saved = config_io.load(base_cls(), saved_path)
    saved = dataclasses.replace(saved, resume=str(resume), out=str(saved_path.parent))
    cfg = config_io.load(saved, path, overrides, flags=flags)
    before, after = _flat(saved), _flat(cfg)
    changed = [k for k in after if after[k] != before.get(k) and k not in SAFE_ON_RESUME
               and not k.startswith(SAFE_SECTIONS)]
    if changed:
        raise MinwaError(f"--resume continues the run in {saved_path.parent} with the settings it was saved with; "
                         f"{', '.join(changed)} cannot change on a resume (safe to change: "
                         f"{', '.join(SAFE_ON_RESUME[:-4])}, data.workers, runtime.threads, parallel.*)")
    return cfg
