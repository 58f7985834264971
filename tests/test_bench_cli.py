"""`minwa bench`'s command line: every bench loads a config dataclass like `minwa train` (--config, --set)
with the same few shorthands, and a bad setting is one sentence before any work."""

from __future__ import annotations

import dataclasses

import pytest

from minwa.benchmarks.config import BENCH_CONFIGS
from minwa.cli import build_parser, main
from minwa.commands.bench import BENCHES


def _bench_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["bench"]
    return next(a for a in sub._actions if a.dest == "bench").choices


def test_bench_cli_surface_is_frozen():
    """A new bench flag is a decision: settings go in the bench's config dataclass (--set), not in flags."""
    parsers = _bench_parsers()
    assert sorted(parsers) == sorted(BENCHES) == sorted(BENCH_CONFIGS)
    common = ["--help", "--config", "--set", "--print-config", "--json"]
    with_data = {"loader", "train", "throughput", "highres", "scale21k"}  # export: no data, a random model
    for name, p in parsers.items():
        flags = sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))
        extra = (["--data"] if name in with_data else []) + (["--quick"] if "quick" in BENCH_CONFIGS[name][0].__dataclass_fields__ else [])
        assert flags == sorted(common + extra), name
        assert not [a.dest for a in p._actions if not a.option_strings], name  # no positional arguments


@pytest.mark.parametrize("name", sorted(BENCH_CONFIGS))
def test_every_bench_prints_its_config_and_takes_set(name, capsys):
    cls = BENCH_CONFIGS[name][0]
    assert main(["bench", name, "--set", "json=true", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "json = true" in out and all(f"{f.name} =" in out or f"[{f.name}]" in out for f in dataclasses.fields(cls))


@pytest.mark.parametrize("argv, words", [
    (["loader", "--set", "skip=[pil,dali]"], "skip may name only pil, webdataset, not dali"),
    (["augment", "--set", "crop=600"], "crop must be between 1 and scale 512, got 600"),
    (["train", "--set", "train.optim.lr=-1"], "optim.lr must be positive"),
    (["train", "--set", "recipe=nope"], "unknown recipe 'nope'"),
    (["scaling", "--set", "strategies=[ddp]"], "strategies may name only fsdp, butterfly, hybrid, not ddp"),
    (["throughput", "--set", "runtime.precision=fp64"], "runtime.precision must be one of auto, bf16, fp16, fp32"),
    (["throughput", "--set", "cache=disk"], "cache must be none, device, jpeg or all, not 'disk'"),
    (["integrity", "--set", "quality=0"], "quality must be in [1, 100], got 0"),
    (["highres", "--set", "high_crop=100"], "high_crop 100 must exceed low_crop 112"),
    (["export", "--set", "skip=[tensorrt]"], "skip may name only onnxruntime, eager, compile, not tensorrt"),
    (["export", "--set", "runtime.device=cuda"], "the export bench runs on the CPU (runtime.device=cpu), not 'cuda'"),
    (["serve", "--set", "models=[resnet50]"], "models are MODEL@CROP (e.g. resnet50@224), got ['resnet50']"),
    (["serve", "--set", "clients=[0]"], "clients must be 1..1024"),
    (["throughput", "--set", "precision=bf16"], "unknown config key 'precision'"),
    (["loader", "--set", "runtime.device=tpu"], "runtime.device must be auto, cpu, cuda, cuda:N or mps, not 'tpu'"),
])
def test_bad_bench_settings_are_one_sentence_before_any_work(argv, words, capsys, tmp_path):
    assert main(["bench", *argv, "--set", f"out={tmp_path}"] if argv[0] == "train" else ["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err, err
