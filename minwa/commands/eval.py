"""`minwa eval`: checkpoints (one, or several as an ensemble) scored on a data set at several scales."""

import argparse
import contextlib

HELP = "evaluate checkpoints: multi-scale, flips, dense testing, ensembles; top-1/top-5 error, per-class table"


def scale_list(text: str) -> list[int]:
    try:
        scales = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be whole numbers separated by commas, got '{text}'") from None
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError(f"scales must be positive, got '{text}'")
    return scales


def add_arguments(p):
    p.add_argument("--ckpt", action="append", required=True, metavar="PATH",
                   help="checkpoint (x.safetensors, x.json, or a run folder); repeat for an ensemble")
    p.add_argument("--data", default="", help="evaluation data (shards, IDX folder, ImageFolder, .lst); default: the checkpoint's val data")
    p.add_argument("--split", default="", help="split of the data to use (default: the held-out one: IDX test, val folder)")
    p.add_argument("--scales", type=scale_list, default=[], metavar="S1,S2,...",
                   help="test scales (shorter side resized to S); default: each model's training scale")
    p.add_argument("--flip", action="store_true", help="also test the mirrored images (softmax averaged)")
    p.add_argument("--dense", action="store_true", help="FC layers as convolutions over the whole image, class-score map averaged")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--topk", type=int, default=5, help="k of the top-k error (default 5)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--out", default="", help="folder for eval.json and confusion.png")


def run(args) -> int:
    import json

    from minwa.evaluate import EvalConfig, evaluate, print_report, write_outputs
    from minwa.errors import MinwaError
    from minwa.utils.folder_lock import hold_folder
    from minwa.utils.output import prepare_output_folder

    if args.batch_size < 1 or args.topk < 1 or args.limit < 0:
        raise MinwaError("--batch-size and --topk must be positive, --limit not negative")
    cfg = EvalConfig(data=args.data, ckpts=list(args.ckpt), scales=args.scales, flip=args.flip, dense=args.dense,
                     batch_size=args.batch_size, topk=args.topk, json=args.json, out=args.out, split=args.split,
                     limit=args.limit, device=args.device, precision=args.precision)
    if cfg.out:
        prepare_output_folder(cfg.out, "output folder")  # before the data are read
    with hold_folder(cfg.out, "minwa eval") if cfg.out else contextlib.nullcontext():
        report = evaluate(cfg, progress=not cfg.json)
        if cfg.out:
            write_outputs(report, cfg.out)
    if cfg.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 0
