"""`minwa make-dataset small-objects|imagenet21k-synthetic OUT`: data generators for benchmarks and tests
(``minwa.synth``)."""

HELP = ("make a synthetic data set from real parts (small-objects: Fashion-MNIST items on real photographs; "
        "imagenet21k-synthetic: a pack of ImageNet-21k's size of tiny real JPEGs)")


def _common(q, out_help: str) -> None:
    """OUT, --seed, --workers and --quiet: every generator takes them."""
    q.add_argument("out", metavar="OUT", help=out_help)
    q.add_argument("--seed", type=int, default=0, help="the same seed makes the same files (default 0)")
    q.add_argument("--workers", type=int, default=0, metavar="W", help="processes (default 0: all cores)")
    q.add_argument("--quiet", action="store_true", help="no progress line")


def add_arguments(p):
    sub = p.add_subparsers(dest="kind", metavar="KIND", parser_class=type(p))
    q = sub.add_parser("small-objects", help="Fashion-MNIST items pasted small (8-20%% of the shorter side) on "
                       "real photographs, as an ImageFolder of JPEGs: OUT/train, OUT/test",
                       description="Fashion-MNIST items pasted small on real photographs (Debian's wallpapers, "
                       "scikit-image's samples), train and test on disjoint photographs; OUT/train/<class>/*.jpg, "
                       "OUT/test/<class>/*.jpg, OUT/boxes.csv, OUT/README.json.")
    _common(q, "folder to write (must be new or empty)")
    q.add_argument("--train", type=int, default=20000, metavar="N", help="train images (default 20000)")
    q.add_argument("--test", type=int, default=5000, metavar="N", help="test images (default 5000)")
    q.add_argument("--short-side", type=int, default=512, metavar="PX", help="shorter side of every image (default 512)")
    q.add_argument("--object-side", type=float, nargs=2, default=(0.08, 0.20), metavar=("LOW", "HIGH"),
                   help="the item's side as fractions of the shorter side (default 0.08 0.20)")
    q.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist", metavar="DIR",
                   help="folder with the Fashion-MNIST *-ubyte.gz files")
    q.add_argument("--overwrite", action="store_true", help="replace OUT/train and OUT/test if OUT is not empty")
    q = sub.add_parser("imagenet21k-synthetic", help="a pack (shards, indices, manifest) of ImageNet-21k's size: "
                       "14.2 million tiny real JPEGs in 21,841 WordNet classes, 2 KiB a sample (29 GB)",
                       description="A pack of ImageNet-21k's size for measuring minwa's bookkeeping (`minwa bench "
                       "scale21k`): 16x16 crops of real photographs reused in turn, labels drawn from the seed.")
    _common(q, "folder to write the pack into (must be new or empty)")
    q.add_argument("--samples", type=int, default=14_197_087, metavar="N", help="samples (default 14197087)")
    q.add_argument("--classes", type=int, default=21_841, metavar="C", help="classes (default 21841)")


def run(args) -> int:
    from minwa.errors import MinwaError

    if args.kind == "imagenet21k-synthetic":
        from minwa.synth.imagenet21k import make_imagenet21k  # numpy, Pillow: only when it runs

        m = make_imagenet21k(args.out, samples=args.samples, classes=args.classes, seed=args.seed,
                             workers=args.workers, progress=not args.quiet)
        print(f"wrote {m['num_samples']:,} samples in {m['num_classes']:,} classes, {len(m['shards']):,} shards "
              f"({sum(s['bytes'] for s in m['shards']) / 1e9:.1f} GB), to {args.out} in {m['pack_seconds']:.1f} s")
        return 0
    if args.kind != "small-objects":
        raise MinwaError("name a data set: minwa make-dataset small-objects|imagenet21k-synthetic OUT")
    from minwa.synth.small_objects import make_small_objects  # numpy, Pillow, torch: only when it runs

    r = make_small_objects(args.out, train=args.train, test=args.test, seed=args.seed, workers=args.workers,
                           short_side=args.short_side, progress=not args.quiet, overwrite=args.overwrite,
                           fashion=args.fashion, object_side=tuple(args.object_side))
    print(f"wrote {r.counts['train']:,} train and {r.counts['test']:,} test images to {r.out} "
          f"({len(r.sources['train'])} + {len(r.sources['test'])} background photographs) in {r.seconds:.1f} s")
    return 0
