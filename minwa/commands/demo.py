"""`minwa demo`: pack → train → evaluate → predict on Fashion-MNIST (what `make demo` runs)."""

HELP = "the main job end to end on Fashion-MNIST: pack, train, evaluate, predict"


def add_arguments(p):
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", metavar="DIR",
                   help="folder with the Fashion-MNIST *-ubyte.gz files")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config field, e.g. epochs=2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from minwa.demo import run_demo

    run_demo(args.data, args.out, args.overrides, progress=not args.quiet)
    return 0
