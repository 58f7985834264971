"""A new training run starts in a folder without an earlier run's outputs, unless told to replace them.

Without this check a second ``minwa train`` (no ``--resume``) into a finished run's folder silently
replaces ``final.*`` and appends its records to the old ``metrics.jsonl``: a learning curve of two runs.
``check_fresh_run_folder(out, overwrite)`` refuses such a folder in one sentence, or with ``overwrite``
removes exactly those outputs (and nothing else of the user's).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from minwa.errors import MinwaError
from minwa.utils.oserrors import os_error, short

# what a run writes into its folder (config.toml is rewritten at the start of every run)
RUN_OUTPUTS = ("final.safetensors", "final.json", "held_out.csv", "best.safetensors", "best.json", "metrics.jsonl", "metrics.csv",
               "tensorboard", "learning_curve.png", "config.toml")
RUN_OUTPUT_PATTERNS = ("train_state*",)  # train_state.safetensors/.json, train_state_dcp/


def previous_run_outputs(out) -> list[Path]:
    """The files and folders of an earlier run in ``out`` (sorted; empty when there is none)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = {out / n for n in RUN_OUTPUTS if (out / n).exists()}
    for pattern in RUN_OUTPUT_PATTERNS:
        found.update(out.glob(pattern))
    return sorted(found)


def check_fresh_run_folder(out, overwrite: bool = False) -> list[Path]:
    """Refuse ``out`` when it holds an earlier run's outputs, or with ``overwrite`` remove them.

    A folder with only ``config.toml`` (a run that stopped before writing anything) counts as fresh.
    Returns the removed paths. Call it on one rank only, before the run writes anything."""
    found = previous_run_outputs(out)
    if [p for p in found if p.name != "config.toml"] and not overwrite:
        names = ", ".join(p.name for p in found if p.name != "config.toml")
        raise MinwaError(f"run folder {short(out)} already holds a run ({names}); continue it with --resume "
                         f"{short(out)}, replace it with --overwrite, or choose another --out")
    for p in found:  # sorted: final.json goes before final.safetensors, so no sidecar outlives its weights
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise os_error(e, p, doing="remove") from None
    return found
