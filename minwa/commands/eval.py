"""`minwa eval`: checkpoints (one, or several as an ensemble) scored on a data set at several scales."""

import contextlib
import json

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.evaluate.config import EvalConfig, check
from minwa.utils.folder_lock import hold_folder
from minwa.utils.output import prepare_output_folder

HELP = "evaluate checkpoints: multi-scale, flips, dense testing, ensembles; top-1/top-5 error, per-class table"
DESCRIPTION = """Evaluate checkpoints. The settings are the fields of EvalConfig (--print-config lists them):
a TOML/YAML file (--config), then the shorthands below, then overrides (--set scales=[256,384,512]
--set flip=true --set dense=true --set limit=1000 ...)."""


def add_arguments(p):
    add_config_arguments(p, "scales=[224,256]")
    p.add_argument("--ckpt", action="append", metavar="PATH",
                   help="checkpoint (x.safetensors, x.json, or a run folder); repeat for an ensemble (= ckpts)")
    p.add_argument("--data", metavar="PATH",
                   help="evaluation data: shards, IDX folder, ImageFolder, .lst "
                        "(= data; default: the checkpoint's val data)")
    p.add_argument("--out", metavar="DIR", help="folder for eval.json and confusion.png (= out)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables (= json=true)")


def resolve_config(args) -> EvalConfig:
    """EvalConfig's defaults → file → flags → --set, in that order."""
    flags = {"ckpts": args.ckpt, "data": args.data, "out": args.out, "json": args.json or None}
    return config_io.load(EvalConfig(), args.config, args.overrides, flags=flags)


def run(args) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    check(cfg)  # before the output folder, the checkpoints and the data
    # torch and numpy are imported only when an evaluation runs (`minwa --help` imports every command)
    from minwa.evaluate.pipeline import evaluate
    from minwa.evaluate.report import print_report, write_outputs
    from minwa.models.checkpoint import describe_checkpoint

    if cfg.out:
        prepare_output_folder(cfg.out, "output folder")  # before the data are read
    if not cfg.json:  # stdout stays one JSON object with --json; stderr is kept for errors
        for ckpt in cfg.ckpts:
            print(f"checkpoint {describe_checkpoint(ckpt)}")
    with hold_folder(cfg.out, "minwa eval") if cfg.out else contextlib.nullcontext():
        report = evaluate(cfg, progress=not cfg.json)
        if cfg.out:
            write_outputs(report, cfg.out)
    if cfg.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 0
