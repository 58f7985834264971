"""Configuration: recipes, files, overrides, errors, the frozen CLI surface, and light config modules."""

import dataclasses
import subprocess
import sys

import pytest
from torch import nn

from minwa import config as config_io
from minwa.augment import Augmenter
from minwa.augment.config import AugmentConfig
from minwa.cli import build_parser, main
from minwa.errors import MinwaError
from minwa.models.registry import create_model
from minwa.evaluate.config import EvalConfig
from minwa.parallel import ParallelConfig, init_distributed
from minwa.parallel import config as parallel_config
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


def test_one_set_parser_typed_by_the_field():
    """Issue #16 item 5: booleans inside model.kwargs are booleans (the string "false" is truthy and built a
    BatchNorm model); a JSON list is a list, not split on its commas."""
    cfg = config_io.load(get_recipe("deepimage16-256"), None,
                         ["model.kwargs.batchnorm=false", 'data.classes=["a","b"]', "model.kwargs.dropout=0.25",
                          "model.kwargs.note=plain"])
    assert cfg.model.kwargs["batchnorm"] is False and cfg.model.kwargs["dropout"] == 0.25
    assert cfg.model.kwargs["note"] == "plain"
    assert cfg.data.classes == ["a", "b"]
    assert config_io.load(get_recipe("fashion"), None, ["data.classes=[\"x, y\",\"z\"]"]).data.classes == ["x, y", "z"]
    model = create_model("deepimage16", num_classes=2, batchnorm=cfg.model.kwargs["batchnorm"])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("bad, words", [
    (['data.classes=["a",'], "must be a list"),
    (["model.kwargs={oops"], "must be a JSON object"),
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
                                          "bench", "models", "make-dataset", "plan", "import-weights", "export", "serve"])

    def flags(command):
        return sorted(o for a in sub.choices[command]._actions for o in a.option_strings if o.startswith("--"))

    assert flags("train") == sorted(["--help", "--recipe", "--config", "--data", "--val", "--out", "--epochs", "--model",
                                     "--init", "--finetune", "--resume", "--overwrite", "--set", "--print-config",
                                     "--quiet"])
    assert flags("eval") == sorted(["--help", "--config", "--set", "--print-config", "--ckpt", "--data", "--out",
                                    "--json", "--topk", "--hierarchy"])


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
    ("optim.trunk_lr_mult=2", "optim.trunk_lr_mult is a fraction of the lr in (0, 1], got 2.0"),
    ("finetune=some", "finetune must be all, fc or head"),
    ("augment.fill=mirror", "augment.fill must be one of surround, reflect, border, zeros, got 'mirror'"),
    ("augment.preset=vgg", "unknown augmentation preset 'vgg'"),
    ("augment.p_lens=1.5", "augment.p_lens is a probability in [0, 1], got 1.5"),
    ("parallel.timeout_s=0", "parallel.timeout_s must be a positive, finite number of seconds, got 0.0"),
    ("precision=fp32", "config key 'precision' is now 'runtime.precision'; set that instead"),
    ("device=cpu", "config key 'device' is now 'runtime.device'; set that instead"),
    ("threads=1", "config key 'threads' is now 'runtime.threads'; set that instead"),
    ("model.channels_last=false", "config key 'model.channels_last' is now 'runtime.channels_last'; set that instead"),
    ("runtime.precision=fp8", "runtime.precision must be one of auto, bf16, fp16, fp32, fp64, not 'fp8'"),
])
def test_impossible_settings_are_refused_before_any_work(override, words, capsys, tmp_path):
    assert main(["train", "--quiet", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "none"),
                 "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err


@pytest.mark.parametrize("command, text, key", [
    ("train", 'precision = "bf16"\n', "runtime.precision"),
    ("train", "[model]\nchannels_last = false\n", "runtime.channels_last"),
    ("eval", 'device = "cpu"\n', "runtime.device"),
])
def test_a_config_file_with_a_moved_key_names_the_new_one(command, text, key, capsys, tmp_path):
    f = tmp_path / "old.toml"
    f.write_text(text)
    assert main([command, "--config", str(f), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config key") and f"is now '{key}'" in err and "\n" not in err, err


def test_one_runtime_section_and_no_repeated_field():
    """device, precision, threads and channels_last live only in RuntimeConfig (the ``runtime`` section)."""
    from minwa.models.config import ModelConfig
    from minwa.utils.runtime_config import RuntimeConfig

    runtime = {f.name for f in dataclasses.fields(RuntimeConfig)}
    for cls in (TrainConfig, EvalConfig, ModelConfig):
        assert not runtime & {f.name for f in dataclasses.fields(cls)}, cls
    assert TrainConfig().runtime == EvalConfig().runtime == RuntimeConfig()
    assert all(get_recipe(name).runtime.precision == "auto" for name in RECIPES)


def test_device_caps_adapter_still_reaches_torch(monkeypatch):
    """The private torch probe behind minwa.utils.device_caps must still exist and answer a bool: if torch
    moves it, this fails here instead of every run silently training in the wrong precision."""
    import torch

    from minwa.utils import device_caps

    assert isinstance(device_caps.cpu_has_native_bf16(), bool)
    cpu = torch.device("cpu")
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(device_caps, "cpu_has_native_bf16", lambda: native)
        assert device_caps.resolve_precision("auto", cpu) == want
    assert device_caps.resolve_precision("fp16", cpu) == "fp16"  # an explicit choice is kept
    assert device_caps.resolve_precision("auto", torch.device("meta")) == "fp32"


def test_shipped_config_files_load():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.*"))
    assert files
    for f in files:
        cfg = config_io.load(get_recipe("fashion"), f)
        assert cfg.out.startswith("runs/")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


@pytest.mark.parametrize("override, words", [
    ("scales=[224,0]", "scales must be positive, got [224, 0]"),
    ("batch_size=0", "batch_size must be at least 1, got 0"),
    ("topk=0", "topk must be at least 1, got 0"),
    ("limit=-1", "limit must not be negative (0 = all images), got -1"),
    ("runtime.precision=fp64", "runtime.precision must be one of auto, bf16, fp16, fp32, not 'fp64'"),
    ("runtime.device=gpu", "runtime.device must be auto, cpu, cuda, cuda:N or mps, not 'gpu'"),
    ("precision=bf16", "config key 'precision' is now 'runtime.precision'; set that instead"),
    ("device=cpu", "config key 'device' is now 'runtime.device'; set that instead"),
    ("channels_last=false", "config key 'channels_last' is now 'runtime.channels_last'; set that instead"),
    ("scales=[224,x]", "config value scales must be an integer, got 'x'"),
    ("flips=true", "unknown config key 'flips'"),
])
def test_eval_settings_are_refused_before_checkpoints_or_data(override, words, capsys, tmp_path):
    """Neither the checkpoint nor the data exist: the configuration's sentence comes first."""
    code, _, err = run_cli(capsys, "eval", "--ckpt", tmp_path / "none", "--data", tmp_path / "none",
                           "--out", tmp_path / "report", "--set", override)
    assert code == 2 and err.startswith(f"error: {words}") and "\n" not in err, err
    assert not (tmp_path / "report").exists()


def test_eval_config_file_flags_and_set_in_order(capsys, tmp_path):
    """File, then the shorthand flags, then --set; --print-config round-trips through --config."""
    (tmp_path / "e.yaml").write_text("ckpts: [a.safetensors]\ndata: test\nscales: [28, 56]\nflip: true\n")
    code, out, _ = run_cli(capsys, "eval", "--config", tmp_path / "e.yaml", "--ckpt", "b", "--ckpt", "c",
                           "--json", "--set", "data=val", "--set", "topk=2", "--print-config")
    assert code == 0
    (tmp_path / "e.toml").write_text(out)
    cfg = config_io.load(EvalConfig(), tmp_path / "e.toml")
    assert cfg == EvalConfig(ckpts=["b", "c"], data="val", scales=[28, 56], flip=True, json=True, topk=[2])


def test_builders_use_their_configs_check():
    """Augmenter and init_distributed refuse what augment.config.check and parallel.config.check refuse."""
    with pytest.raises(MinwaError, match="augment.fill must be one of"):
        Augmenter(AugmentConfig(fill="mirror"), 8)
    with pytest.raises(MinwaError, match="parallel.timeout_s must be a positive, finite"):
        init_distributed(ParallelConfig(timeout_s=-1.0), device="cpu")
    with pytest.raises(MinwaError, match="parallel.timeout_s must be a positive, finite"):
        parallel_config.check(ParallelConfig(timeout_s=float("inf")))


def test_config_modules_import_nothing_heavy():
    """Reading a configuration (every command does, before any work) does not import torch or numpy; a
    lazily exported name keeps its value when a submodule of the same name is imported first."""
    code = ("import minwa.train.config, minwa.evaluate.config, minwa.data.config, minwa.augment.config, "
            "minwa.models.config, minwa.parallel.config, minwa.config, minwa.train.recipes, "
            "minwa.utils.runtime_config; import sys; "
            "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules); assert not heavy, heavy; "
            "import minwa.parallel.parallelize; from minwa.parallel import parallelize; "
            "assert callable(parallelize) and parallelize.__module__ == 'minwa.parallel.parallelize'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_run_records_the_precision_auto_became(fashion_subset, tmp_path):
    """runtime.precision = "auto" (the recipes' default) is saved resolved: config.toml says what ran."""
    import torch

    from minwa.utils.device_caps import resolve_precision

    out = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(fashion_subset(600)), "--out", str(out), "--epochs", "0.2",
                 "--set", "data.val=", "--set", "eval_every=0", "--set", "runtime.device=cpu",
                 "--set", 'model.kwargs={"widths": [8, 16]}', "--set", "data.batch_size=64"]) == 0
    saved = config_io.load(TrainConfig(), out / "config.toml")
    assert saved.runtime.precision == resolve_precision("auto", torch.device("cpu")) != "auto"


def test_counts_in_messages_agree_in_number():
    """Issue #16 item 11: "1 classes"."""
    from minwa.utils.words import plural
    assert plural(1, "class") == "1 class" and plural(4, "class") == "4 classes" and plural(1234, "image") == "1,234 images"


@pytest.mark.parametrize("override, drawn", [
    ("lens=false", lambda p: (p.radial == 0).all() and (p.stretch_x == 1).all() and (p.stretch_y == 1).all()),
    ("flip=false", lambda p: not p.flip.any()),
    ("rotation=0", lambda p: (p.angle == 0).all()),
    ("color_cast=false", lambda p: (p.offset == 0).all()),
    ("vignette=false", lambda p: (p.vig_strength == 0).all()),
])
def test_explicit_settings_win_over_a_preset(override, drawn, tmp_path):
    """Issue #16 item 4: under the deepimage preset `--set augment.lens=false` (a field set back to its
    default) changed nothing, yet config.toml recorded it. Now what is set wins, the augmenter draws no
    such change, and the saved config reloads to exactly what ran."""
    import torch

    from minwa.train.recipes import get_recipe

    cfg = config_io.load(get_recipe("deepimage16-256"), None, [f"augment.{override}"])
    images = torch.zeros(256, 3, 64, 64, dtype=torch.uint8)
    ran = Augmenter(cfg.augment, out_size=48)
    params = ran.params(images, torch.arange(256), epoch=0, seed=0)
    assert drawn(params)
    default = Augmenter(get_recipe("deepimage16-256").augment, out_size=48).params(images, torch.arange(256), 0, 0)
    assert not drawn(default)  # the preset does draw it: the override is what removed it
    (tmp_path / "c.toml").write_text(config_io.dump_toml(cfg))
    assert config_io.load(TrainConfig(), tmp_path / "c.toml").augment == cfg.augment == ran.cfg


def test_a_preset_named_later_is_written_out_and_keys_beside_it_win():
    from minwa.train.recipes import get_recipe

    cfg = config_io.load(get_recipe("deepimage16-256"), None, ["augment.preset=fashion", "augment.translate=4"])
    assert (cfg.augment.flip, cfg.augment.lens, cfg.augment.color_cast, cfg.augment.translate) == (True, False, False, 4)
    with pytest.raises(MinwaError, match="unknown augmentation preset 'imagenet'"):
        config_io.load(get_recipe("fashion"), None, ["augment.preset=imagenet"])
