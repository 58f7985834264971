"""`minwa plan`: what minwa would do on 8, 64 or 1,024 GPUs, from an analytical model (minwa.plan):
step time (compute, exposed communication, input), images/s, speed-up, best strategy, memory per GPU."""

from pathlib import Path

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.plan.config import PlanConfig, check, paper_config

HELP = "predict step time, images/s and speed-up of each strategy at cluster scale (an analytical model)"


def add_arguments(p):
    add_config_arguments(p, "gpu=A100")
    p.add_argument("--model", help="registry model (= model)")
    p.add_argument("--ckpt", metavar="PATH", help="a checkpoint: its model, options and crop (= ckpt)")
    p.add_argument("--paper", action="store_true", help="start from Deep Image §3.3's machine (K40m, FDR, 4 per node)")
    p.add_argument("--calibrate", metavar="FILE", action="append",
                   help="minwa bench throughput/scaling JSON to fit the compute fraction and overhead to (repeatable)")
    p.add_argument("--out", metavar="DIR", help="write plan.json and plan-speedup.png here (= out)")
    p.add_argument("--json", action="store_true", help="print one JSON object (= json=true)")


def run(args) -> int:
    flags = {"model": args.model, "ckpt": args.ckpt, "calibrate": args.calibrate, "out": args.out,
             "json": args.json or None}
    cfg = config_io.load(paper_config() if args.paper else PlanConfig(), args.config, args.overrides, flags=flags)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    check(cfg)  # before torch is imported
    from minwa.plan.calibrate import calibrate  # torch: only once the config is known good
    from minwa.plan.predict import plan
    from minwa.plan.report import print_report, to_json, write_outputs

    calibration = None
    if cfg.calibrate:
        cfg, calibration = calibrate(cfg)
    result = plan(cfg)
    if calibration:
        result["calibration"] = calibration
    if cfg.out:
        write_outputs(result, Path(cfg.out))
    print(to_json(result)) if cfg.json else print_report(result)
    return 0
