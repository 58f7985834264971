"""`minwa eval`: checkpoints (one, or several as an ensemble) scored on a data set at several scales."""

import contextlib
import json
import sys
from pathlib import Path

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.errors import MinwaError
from minwa.evaluate.config import EvalConfig, check
from minwa.utils.folder_lock import hold_folder
from minwa.utils.output import prepare_output_folder

HELP = "evaluate checkpoints: multi-scale, flips, dense testing, ensembles; top-k errors, per-class table"
DESCRIPTION = """Evaluate checkpoints. The settings are the fields of EvalConfig (--print-config lists them):
a TOML/YAML file (--config), then the shorthands below, then overrides (--set scales=[256,384,512]
--set flip=true --set dense=true --set limit=1000 ...)."""


def add_arguments(p):
    add_config_arguments(p, "scales=[224,256]")
    p.add_argument("--ckpt", action="append", metavar="PATH",
                   help="checkpoint (x.safetensors, x.json, or a run folder); repeat for an ensemble (= ckpts)")
    p.add_argument("--data", metavar="PATH",
                   help="evaluation data: shards, IDX folder, ImageFolder, .lst "
                        "(= data; default: the checkpoint's val data, or its run's held_out.csv)")
    p.add_argument("--out", metavar="DIR", help="folder for eval.json and confusion.png "
                                                "(= out; default: eval/ beside the first checkpoint)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables (= json=true)")
    p.add_argument("--topk", metavar="K1,K2,...", help="top-k errors to report, e.g. 1,5,20 (= topk; default 1,5)")
    p.add_argument("--hierarchy", action="store_true",
                   help="WordNet-id classes: also score answers summed up WordNet's hypernym tree (= hierarchy=true; "
                        "hierarchy_threshold=0.9, wordnet=/usr/share/wordnet)")


def resolve_config(args) -> EvalConfig:
    """EvalConfig's defaults → file → flags → --set, in that order."""
    flags = {"ckpts": args.ckpt, "data": args.data, "out": args.out, "json": args.json or None,
             "topk": args.topk, "hierarchy": args.hierarchy or None}
    return config_io.load(EvalConfig(), args.config, args.overrides, flags=flags)


def run(args) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    check(cfg)  # before the output folder, the checkpoints and the data
    # torch and numpy are imported only when an evaluation runs (`minwa --help` imports every command)
    from minwa.evaluate.ensemble import require_ckpts
    from minwa.evaluate.pipeline import evaluate
    from minwa.evaluate.report import print_report, write_outputs
    from minwa.models.checkpoint import describe_checkpoint

    if cfg.out:
        prepare_output_folder(cfg.out, "output folder")  # before the checkpoints and the data are read
    require_ckpts(cfg.ckpts)
    described = [describe_checkpoint(ckpt) for ckpt in cfg.ckpts]  # each found before a default folder is made
    out = _data_and_out(cfg)
    if not cfg.json:  # stdout stays one JSON object with --json; stderr is kept for errors
        for line in described:
            print(f"checkpoint {line}")
        print(f"data       {cfg.data}")
    with hold_folder(out, "minwa eval") if out else contextlib.nullcontext():
        report = evaluate(cfg, progress=not cfg.json)
        if out:
            write_outputs(report, out)
    if cfg.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 0


def _data_and_out(cfg: EvalConfig) -> str:
    """Fill in the default data (the checkpoint's validation data) and return the output folder: ``--out``
    (already checked), else :func:`default_out` checked writable ("" when it is not: said, not fatal)."""
    from minwa.evaluate.pipeline import default_eval_data
    from minwa.models.checkpoint import read_meta

    if not cfg.data:
        cfg.data = default_eval_data(cfg.ckpts[0], read_meta(cfg.ckpts[0]))
    if cfg.out:
        return cfg.out
    out = default_out(cfg.ckpts)
    try:
        prepare_output_folder(out, "output folder")  # before the data are read
    except MinwaError as e:
        print(f"warning: {e}; pass --out DIR to keep eval.json and confusion.png", file=sys.stderr)
        return ""
    return out


def default_out(ckpts) -> str:
    """``eval/`` in the first checkpoint's run folder (``eval-ensemble/`` for several checkpoints)."""
    first = Path(ckpts[0])
    folder = first if first.is_dir() else first.parent
    return str(folder / ("eval" if len(ckpts) == 1 else "eval-ensemble"))
