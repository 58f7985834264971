"""`minwa bench highres --quick` end to end on the small-objects photographs: the table, the JSON, the PNG."""

from __future__ import annotations

import json

import pytest

from minwa.cli import main
from photo_fixtures import photos_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not photos_available(), reason="wallpaper photographs not installed")]


def test_quick_bench_runs_end_to_end(tmp_path, capsys):
    # a short budget: this checks the bench's structure; the accuracy bar is #11's full run
    assert main(["bench", "highres", "--quick", "--set", f"work={tmp_path}", "--set", "runtime.threads=2",
                 "--set", "budget_s=8", "--set", "robust_limit=60"]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    names = [r["name"] for r in result["table"]]
    for row in ("low @32", "low @32,40,48 +flip", "high @64", "high @64,80,96 +flip", "high @64,80,96 +flip +dense",
                "ensemble (low + high)"):
        assert row in names and row.split(" +")[0] in out, row
    assert all(0 <= r[k] <= 1 for r in result["table"] for k in ("top1_error", "top5_error", "mean_class_accuracy"))
    assert set(result["runs"]) == {"low", "high", "flipcrop"}
    assert all(abs(r["train_seconds"] - 8) < 6 for r in result["runs"].values())
    prof = result["runs"]["high"]["profile"]
    assert set(prof["median_ms"]) == {"loader_wait", "augment", "model_step"} and prof["bottleneck"]
    assert (tmp_path / "robustness.png").is_file() and result["robustness"]["accuracy"]["flipcrop"]
    assert result["reading"] and all(r["text"] for r in result["reading"]) and "what held" in out
    high = next(r for r in result["rows"] if r["name"] == "high @64,80,96 +flip")
    if high["top1_error"] > 0.6:  # the bar: far above chance (10 classes); not reached yet
        pytest.xfail(f"the quick high-resolution model is at {1 - high['top1_error']:.0%} top-1 (chance 10%)")
