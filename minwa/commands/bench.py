"""`minwa bench loader|augment|train|scaling`: benchmarks that run minwa and its peer side by side."""

import importlib

HELP = "benchmarks against peers, side by side in one run (loader, augment, train, scaling, throughput, integrity)"

BENCHES = {
    "loader": ("minwa.benchmarks.loader", "shard loader vs a PIL DataLoader, webdataset and the decode ceiling"),
    "augment": ("minwa.benchmarks.augment", "the fused Table 1 engine vs an Albumentations pipeline"),
    "train": ("minwa.benchmarks.train", "time to accuracy of a recipe vs a plain PyTorch script"),
    "scaling": ("minwa.benchmarks.scaling", "images/s, speed-up and efficiency over 1..N processes per strategy"),
    "throughput": ("minwa.benchmarks.throughput", "training step images/s and MFU: JPEG shards vs data already on the device"),
    "integrity": ("minwa.benchmarks.integrity", "the per-sample CRC-32 check vs decoding the same JPEG"),
}


def add_arguments(p):
    sub = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    for name, (module, help_) in BENCHES.items():
        q = sub.add_parser(name, help=help_, description=help_)
        try:
            mod = importlib.import_module(module)
        except ImportError:
            q.set_defaults(_bench_missing=name)
            continue
        mod.add_arguments(q)
        q.set_defaults(_bench_run=mod.run)


def run(args) -> int:
    from minwa.errors import MinwaError

    if getattr(args, "_bench_missing", None):
        raise MinwaError(f"benchmark '{args._bench_missing}' is not available in this install")
    if not getattr(args, "_bench_run", None):
        raise MinwaError(f"name a benchmark: minwa bench {'|'.join(BENCHES)}")
    return args._bench_run(args)
