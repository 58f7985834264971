"""Fit the plan's two free constants to measurements: the achieved fraction of peak on compute-bound
layers and a constant per-step overhead.

Reads ``minwa bench throughput --json`` (one batch: ``synthetic_img_s``, data already on the device) and
``minwa bench scaling --json`` / ``results.json`` (the 1-process row; the n-process rows are then
predicted with the fitted constants and shown beside their measurement). With one measured step time the
overhead is 0 and the fraction solves it; with several (different batches or files) both are fitted by
least squares on the step times (a grid over the fraction, the overhead in closed form, kept >= 0).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from minwa.errors import MinwaError
from minwa.plan import hardware
from minwa.plan.config import PlanConfig
from minwa.plan.predict import machine
from minwa.plan.profile import profile_model
from minwa.plan.step import step


def _points(path: str) -> list[dict]:
    """(model, size, batch, step_s, device) measurements of one process in a bench JSON file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise MinwaError(f"calibration file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MinwaError(f"calibration file {path} is not JSON (minwa bench throughput/scaling --json)") from None
    if "synthetic_img_s" in data:  # bench throughput
        return [{"model": data["model"], "size": data["size"], "batch": data["batch"], "gpus": 1, "strategy": "none",
                 "step_s": data["batch"] / data["synthetic_img_s"], "device": data.get("device_name", ""),
                 "precision": data.get("precision", "")}]
    if "rows" in data:  # bench scaling
        return [{"model": data["model"], "size": 0, "batch": data["batch_per_rank"], "gpus": r["processes"],
                 "strategy": r["strategy"], "step_s": r["step_s"], "device": data.get("device", ""),
                 "precision": data.get("precision", "")} for r in data["rows"]]
    raise MinwaError(f"calibration file {path} is neither 'minwa bench throughput' nor 'bench scaling' JSON")


def calibrate(cfg: PlanConfig) -> tuple[PlanConfig, dict]:
    """``cfg`` with ``compute_fraction`` and ``overhead_ms`` fitted to ``cfg.calibrate``'s files, and a report."""
    points = [pt for f in cfg.calibrate for pt in _points(f)]
    for pt in points:
        found = hardware.gpu_in_name(pt["device"])
        if found is None or found.name != hardware.gpu(cfg.gpu).name:
            raise MinwaError(f"calibration measured on '{pt['device'] or 'an unnamed device'}' but the plan is for "
                             f"{cfg.gpu}; set gpu= to the measured GPU (known: {', '.join(hardware.GPUS)})")
    if pt_prec := {pt["precision"] for pt in points if pt["precision"]} - {cfg.precision}:
        raise MinwaError(f"calibration measured in {', '.join(sorted(pt_prec))} but the plan is for "
                         f"{cfg.precision}; set precision= to match")
    fit = [pt for pt in points if pt["gpus"] == 1]
    if not fit:
        raise MinwaError("calibration needs a 1-process measurement (bench throughput, or bench scaling's 'none' row)")
    profiles = {}

    def predicted(c: PlanConfig, pt: dict) -> float:
        key = (pt["model"], pt["size"] or c.size)
        if key not in profiles:
            profiles[key] = profile_model(pt["model"], pt["size"] or c.size, c.num_classes)
        return step(machine(c), profiles[key], pt["strategy"], pt["gpus"], pt["batch"],
                    fc_split=c.fc_split, bucket_mb=c.bucket_mb, prefetch=c.prefetch).total_s

    best = None
    for i in range(1, 101):
        frac = i / 100
        c = dataclasses.replace(cfg, compute_fraction=frac, overhead_ms=0.0)
        pred = [predicted(c, pt) for pt in fit]
        over = max(0.0, sum(m["step_s"] - p for m, p in zip(fit, pred)) / len(fit)) if len(fit) > 1 else 0.0
        err = sum((m["step_s"] - p - over) ** 2 for m, p in zip(fit, pred))
        if best is None or err < best[0]:
            best = (err, frac, over)
    _, frac, over = best
    fitted = dataclasses.replace(cfg, compute_fraction=frac, overhead_ms=over * 1e3)
    checks = [{**pt, "predicted_step_s": predicted(fitted, pt),
               "error": predicted(fitted, pt) / pt["step_s"] - 1} for pt in points]
    return fitted, {"files": list(cfg.calibrate), "compute_fraction": frac, "overhead_ms": over * 1e3,
                    "fitted_points": len(fit), "points": checks}
