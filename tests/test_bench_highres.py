"""`minwa bench highres --quick` end to end on the small-objects photographs: the table, the JSON, the PNG."""

from __future__ import annotations

import json

import pytest

from minwa.cli import main
from photo_fixtures import photos_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not photos_available(), reason="wallpaper photographs not installed")]


def test_quick_bench_runs_end_to_end(tmp_path, capsys):
    # the quick run as make test runs it: 2,000 photographs of 128 px, items 50-80% of the picture, 8 epochs
    assert main(["bench", "highres", "--quick", "--set", f"work={tmp_path}", "--set", "runtime.threads=2"]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    names = [r["name"] for r in result["table"]]
    for row in ("low @32", "low @32,40,48 +flip", "high @64", "high @64,80,96 +flip", "high @64,80,96 +flip +dense",
                "ensemble (low + high)"):
        assert row in names and row.split(" +")[0] in out, row
    assert all(0 <= r[k] <= 1 for r in result["table"] for k in ("top1_error", "top5_error", "mean_class_accuracy"))
    assert set(result["runs"]) == {"low", "high", "flipcrop"}
    assert all(r["epochs"] == 8 for r in result["runs"].values())
    # every model trained on the central squares, where the data set puts the items
    assert all('square = "centre"' in (tmp_path / "runs" / name / "config.toml").read_text() for name in result["runs"])
    prof = result["runs"]["high"]["profile"]
    assert set(prof["median_ms"]) == {"loader_wait", "augment", "model_step"} and prof["bottleneck"]
    assert (tmp_path / "robustness.png").is_file() and result["robustness"]["accuracy"]["flipcrop"]
    assert result["reading"] and all(r["text"] for r in result["reading"]) and "what held" in out
    # the bar: the high-resolution model far above chance (10 classes: 10%). Measured 37% top-1 on
    # 200 test images (one standard error at chance: 2.1 points); 25% is 7 standard errors above chance
    high = next(r for r in result["rows"] if r["name"] == "high @64,80,96 +flip")
    assert 1 - high["top1_error"] >= 0.25, high
