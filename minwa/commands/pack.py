"""`minwa pack SRC OUT [--part K/N]`, `minwa pack --merge OUT`: any source into WebDataset-layout shards +
index + manifest (minwa.data.pack), on one machine or in N parts (minwa.data.parts, minwa.data.merge)."""

HELP = "pack images (ImageFolder, .lst, Fashion-MNIST IDX) into verifiable shards"
DESCRIPTION = """Pack SRC (an ImageFolder tree, an MXNet .lst file, a Fashion-MNIST IDX folder or other shards)
into OUT: tar shards readable by tar/webdataset/DALI, a byte-offset index per shard and manifest.json.
Inputs that cannot be decoded are listed in the manifest's "rejected" with the reason; the exit status is
0 when every input was packed and 1 when some were rejected. Running the same command again after an
interruption finishes the job. On many machines: run `minwa pack SRC OUT --part K/N` for K = 0..N-1 (any
scheduler; --part auto under torchrun), then `minwa pack --merge OUT`: the same shards, byte for byte, as
one machine's pack (docs/data.md, "Packing on many machines")."""


def add_arguments(p):
    from minwa.data.packing import DEFAULT_MAX_SIDE, DEFAULT_SHARD_SIZE

    p.add_argument("src", metavar="SRC", nargs="?", help="ImageFolder root, .lst file, IDX folder or shard folder")
    p.add_argument("out", metavar="OUT", nargs="?", help="output folder (created; must be new, empty or an earlier pack)")
    p.add_argument("--split", help="train | test for IDX folders (default train); a sub-folder for split trees")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"re-encode images whose shorter side exceeds N to that side (0 = never; default {DEFAULT_MAX_SIDE})")
    p.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality of re-encoded images (default 90)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N",
                   help=f"samples per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="packing processes (default: one per core this process may use, shared with the other "
                        "parts torchrun started on the machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order across shards (default 0)")
    p.add_argument("--part", metavar="K/N",
                   help="pack only part K of N (0..N-1) and write OUT/part-K-of-N.json; 'auto': RANK/WORLD_SIZE (torchrun)")
    p.add_argument("--merge", metavar="OUT", help="join the parts packed into OUT into its manifest.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from minwa.errors import MinwaError

    if args.workers < 0:  # pack() takes any int; a negative count would silently mean one process
        raise MinwaError(f"--workers must be 0 (one per core) or positive, got {args.workers}")
    if args.merge is not None:
        if args.src or args.out or args.part:
            raise MinwaError("--merge OUT takes no SRC, OUT or --part: run `minwa pack --merge OUT` once every part has finished")
        return _merge(args)
    if not (args.src and args.out):
        raise MinwaError("pack needs SRC and OUT (`minwa pack SRC OUT`), or --merge OUT")
    return _pack(args)


def _pack(args) -> int:
    import os

    from minwa.data import pack
    from minwa.data.parts import Part, cores_per_process
    from minwa.utils.words import plural

    part = Part.parse(args.part, os.environ) if args.part is not None else None
    workers = args.workers or (cores_per_process(os.environ) if part else 0)
    m = pack(args.src, args.out, max_side=args.max_side, quality=args.quality, shard_size=args.shard_size,
             workers=workers, seed=args.seed, split=args.split, progress=not args.quiet, part=part)
    if not part:
        return _summary(m, args.out, "packed")
    rejected = sum(len(r["rejected"]) for r in m["shards"])
    print(f"packed {part.describe()}: {plural(sum(r['num_samples'] for r in m['shards']), 'image')} into "
          f"{len(m['shards'])} of {plural(m['num_shards'], 'shard')} in {args.out} in {m['pack_seconds']:.1f} s; "
          f"{rejected} rejected{' (listed by the merge)' if rejected else ''}. Once all {part.n} parts have "
          f"finished (their files in one folder): minwa pack --merge {args.out}")
    return 0


def _merge(args) -> int:
    from minwa.data.merge import merge

    m = merge(args.merge)
    return _summary(m, args.merge, f"merged {m['parts']} parts:")


def _summary(m: dict, out, done: str) -> int:
    """Print what a pack holds; exit status 1 when inputs were rejected."""
    from minwa.utils.words import plural

    rejected = m["rejected"]
    print(f"{done} {plural(m['num_samples'], 'image')} ({plural(len(m['classes']), 'class')}) into "
          f"{plural(len(m['shards']), 'shard')} in {out} in {m['pack_seconds']:.1f} s; {len(rejected)} rejected"
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
