"""`minwa bench loader|augment|train|scaling|throughput|integrity|highres|export|serve|scale21k`: benchmarks that run minwa and its peer
side by side. Each bench's settings are a config dataclass (``minwa.benchmarks.config``) loaded like
``minwa train``'s: ``--config FILE``, then the shorthands ``--data``/``--json``, then ``--set key=value``."""

import importlib

from minwa import config as config_io
from minwa.benchmarks.config import BENCH_CONFIGS, check
from minwa.commands.config_args import add_config_arguments
from minwa.errors import MinwaError

HELP = "benchmarks against peers, side by side in one run (loader, augment, train, scaling, throughput, integrity, highres, export, serve, scale21k)"

BENCHES = {
    "loader": ("minwa.benchmarks.loader", "shard loader vs a PIL DataLoader, webdataset and the decode ceiling",
               "rounds=1"),
    "augment": ("minwa.benchmarks.augment", "the fused Table 1 engine vs an Albumentations pipeline",
                "runtime.device=cuda"),
    "train": ("minwa.benchmarks.train", "time to accuracy of a recipe vs a plain PyTorch script",
              "train.runtime.precision=fp32"),
    "scaling": ("minwa.benchmarks.scaling", "images/s, speed-up and efficiency over 1..N processes per strategy",
                "procs=[1,2]"),
    "throughput": ("minwa.benchmarks.throughput",
                   "training step images/s and MFU: JPEG shards vs data already on the device", "model=resnet18"),
    "integrity": ("minwa.benchmarks.integrity", "the per-sample CRC-32 check vs decoding the same JPEG", "images=16"),
    "highres": ("minwa.benchmarks.highres", "low- vs high-resolution models, multi-scale testing, fusion and "
                "robustness on photographs of small objects", "budget_s=300"),
    "export": ("minwa.benchmarks.export", "the exported model: onnxruntime vs PyTorch eager vs torch.compile, images/s",
               "model=resnet-tiny"),
    "serve": ("minwa.benchmarks.serve", "minwa serve under 1..128 clients: dynamic batching vs max_batch 1 vs offline",
              "quick=true"),
    "scale21k": ("minwa.benchmarks.scale21k", "ImageNet-21k's size on one machine: opening 14.2 million samples, "
                 "the epoch order for 1,024 ranks, the loader's per-sample overhead and workers' memory",
                 "ranks=1024"),
}


def add_arguments(p):
    sub = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    for name, (_, help_, example) in BENCHES.items():
        q = sub.add_parser(name, help=help_, description=f"{help_}. Settings: --print-config lists them.")
        add_config_arguments(q, example)
        if "data" in BENCH_CONFIGS[name][0].__dataclass_fields__:
            q.add_argument("--data", metavar="PATH", help="the data the bench reads (= data)")
        q.add_argument("--json", action="store_true", help="print one JSON object (= json=true)")
        if "quick" in BENCH_CONFIGS[name][0].__dataclass_fields__:
            q.add_argument("--quick", action="store_true", help="the reduced run `make test` exercises (= quick=true)")


def resolve_config(args):
    """The bench's defaults -> file -> shorthands -> --set, in that order."""
    flags = {"data": getattr(args, "data", None), "json": args.json or None,
             "quick": getattr(args, "quick", False) or None}
    return config_io.load(BENCH_CONFIGS[args.bench][0](), args.config, args.overrides, flags=flags)


def run(args) -> int:
    if not getattr(args, "bench", None):
        raise MinwaError(f"name a benchmark: minwa bench {'|'.join(BENCHES)}")
    cfg = resolve_config(args)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    check(args.bench, cfg)  # before any corpus, data or model
    try:  # torch and the peers are imported only when a benchmark runs
        module = importlib.import_module(BENCHES[args.bench][0])
    except ImportError as e:
        raise MinwaError(f"benchmark '{args.bench}' is not available in this install ({e})") from None
    return module.run(cfg)
