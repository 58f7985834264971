"""`minwa pack SRC OUT`: any source into WebDataset-layout shards + index + manifest (minwa.data.pack)."""

HELP = "pack images (ImageFolder, .lst, Fashion-MNIST IDX) into verifiable shards"
DESCRIPTION = """Pack SRC (an ImageFolder tree, an MXNet .lst file, a Fashion-MNIST IDX folder or other shards)
into OUT: tar shards readable by tar/webdataset/DALI, a byte-offset index per shard and manifest.json.
Inputs that cannot be decoded are listed in the manifest's "rejected" with the reason; the exit status is
0 when every input was packed and 1 when some were rejected. Running the same command again after an
interruption finishes the job."""


def add_arguments(p):
    from minwa.data.packing import DEFAULT_MAX_SIDE, DEFAULT_SHARD_SIZE

    p.add_argument("src", metavar="SRC", help="ImageFolder root, .lst file, IDX folder or shard folder")
    p.add_argument("out", metavar="OUT", help="output folder (created; must be new, empty or an earlier pack)")
    p.add_argument("--split", help="train | test for IDX folders (default train); a sub-folder for split trees")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"re-encode images whose shorter side exceeds N to that side (0 = never; default {DEFAULT_MAX_SIDE})")
    p.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality of re-encoded images (default 90)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N",
                   help=f"samples per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="packing processes (default: one per core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order across shards (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from minwa.data import pack
    from minwa.errors import MinwaError
    from minwa.utils.words import plural

    if args.workers < 0:  # pack() takes any int; a negative count would silently mean one process
        raise MinwaError(f"--workers must be 0 (one per core) or positive, got {args.workers}")
    m = pack(args.src, args.out, max_side=args.max_side, quality=args.quality, shard_size=args.shard_size,
             workers=args.workers, seed=args.seed, split=args.split, progress=not args.quiet)
    rejected = m["rejected"]
    print(f"packed {plural(m['num_samples'], 'image')} ({plural(len(m['classes']), 'class')}) into "
          f"{plural(len(m['shards']), 'shard')} in "
          f"{args.out} in {m['pack_seconds']:.1f} s; {len(rejected)} rejected"
          + (" (listed in manifest.json):" if rejected else ""))
    for r in rejected[:10]:
        print(f"  rejected {r['path']}: {r['reason']}")
    if len(rejected) > 10:
        print(f"  ... and {len(rejected) - 10} more")
    empty = [c for c, n in zip(m["classes"], m.get("class_counts") or []) if n == 0]
    if empty:
        print(f"note: {len(empty)} class folder(s) hold no packed image: {', '.join(empty[:10])}"
              f"{' ...' if len(empty) > 10 else ''} (kept as classes, so labels match other packs of the tree)")
    return 1 if rejected else 0
