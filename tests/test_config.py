"""Configuration: recipes, files, overrides, errors, the frozen CLI surface, and light config modules."""

import dataclasses
import subprocess
import sys

import pytest

from minwa import config as config_io
from minwa.cli import build_parser, main
from minwa.errors import MinwaError
from minwa.train.config import TrainConfig
from minwa.train.recipes import RECIPES, get_recipe


def test_overrides_are_typed_and_nested():
    cfg = config_io.load(get_recipe("fashion"), None,
                         ["optim.lr=0.05", "data.batch_size=512", "eval_flip=false", "model.kwargs={\"widths\": [8, 16]}",
                          "data.classes=shirt,coat"])
    assert cfg.optim.lr == 0.05 and isinstance(cfg.data.batch_size, int) and cfg.data.batch_size == 512
    assert cfg.eval_flip is False
    assert cfg.model.kwargs == {"widths": [8, 16]}
    assert cfg.data.classes == ["shirt", "coat"]
    assert cfg.optim.momentum == get_recipe("fashion").optim.momentum  # untouched fields keep the recipe's


@pytest.mark.parametrize("bad, words", [
    (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["data.batch_size=big"], "must be an integer"),
    (["eval_flip=maybe"], "true or false"),
    (["epochs"], "key.sub=value"),
])
def test_bad_overrides_are_one_sentence(bad, words):
    with pytest.raises(MinwaError, match=words.replace("(", r"\(").replace(")", r"\)")):
        config_io.load(get_recipe("fashion"), None, bad)


def test_toml_and_yaml_files_round_trip(tmp_path):
    cfg = config_io.load(get_recipe("fashion"), None, ["optim.lr=0.123", "data.workers=3"])
    toml = tmp_path / "c.toml"
    toml.write_text(config_io.dump_toml(cfg))
    assert config_io.load(TrainConfig(), toml) == cfg
    yml = tmp_path / "c.yaml"
    yml.write_text("optim:\n  lr: 0.5\ndata:\n  batch_size: 64\n")
    got = config_io.load(get_recipe("fashion"), yml)
    assert (got.optim.lr, got.data.batch_size) == (0.5, 64)
    (tmp_path / "bad.toml").write_text("optim = [")
    with pytest.raises(MinwaError, match="not valid"):
        config_io.load(cfg, tmp_path / "bad.toml")
    with pytest.raises(MinwaError, match="not found"):
        config_io.load(cfg, tmp_path / "missing.toml")


def test_every_recipe_is_complete():
    for name in RECIPES:
        cfg = get_recipe(name)
        assert dataclasses.is_dataclass(cfg) and cfg.model.name and cfg.data.batch_size > 0


def test_cli_surface_is_frozen():
    """Adding a command or a train flag is a decision: update this list on purpose (torchtitan's rule)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(["pack", "verify", "train", "eval", "predict", "demo", "augment-preview",
                                          "bench", "models"])
    train_flags = sorted(o for a in sub.choices["train"]._actions for o in a.option_strings if o.startswith("--"))
    assert train_flags == sorted(["--help", "--recipe", "--config", "--data", "--val", "--out", "--epochs", "--model",
                                  "--init", "--finetune", "--resume", "--overwrite", "--set", "--print-config", "--quiet"])


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["train", "--set", "optim.nope=1", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key") and "\n" not in err
    assert main(["train", "--recipe", "nope", "--print-config"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["train", "--print-config", "--set", "optim.lr=0.3"]) == 0
    assert "lr = 0.3" in capsys.readouterr().out


@pytest.mark.parametrize("override, words", [
    ("epochs=-1", "epochs must be positive"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("optim.momentum=1.5", "momentum"),
    ("finetune=some", "finetune must be all, fc or head"),
])
def test_impossible_settings_are_refused_before_any_work(override, words, capsys, tmp_path):
    assert main(["train", "--quiet", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "none"),
                 "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err


def test_shipped_config_files_load():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.*"))
    assert files
    for f in files:
        cfg = config_io.load(get_recipe("fashion"), f)
        assert cfg.out.startswith("runs/")


# minwa/models/__init__.py still imports minwa.models.finetune (torch) eagerly: it is being edited in another
# branch, and its exports go through minwa.utils.lazy there. strict: this fails once that lands; remove the mark.
@pytest.mark.xfail(strict=True, reason="minwa/models/__init__.py imports torch eagerly (minwa.models.finetune)")
def test_config_modules_import_nothing_heavy():
    """Reading a configuration (every command does, before any work) does not import torch or numpy; a
    lazily exported name keeps its value when a submodule of the same name is imported first."""
    code = ("import minwa.train.config, minwa.evaluate.config, minwa.data.config, minwa.augment.config, "
            "minwa.models.config, minwa.parallel.config, minwa.config, minwa.train.recipes; import sys; "
            "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules); assert not heavy, heavy; "
            "import minwa.parallel.parallelize; from minwa.parallel import parallelize; "
            "assert callable(parallelize) and parallelize.__module__ == 'minwa.parallel.parallelize'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
