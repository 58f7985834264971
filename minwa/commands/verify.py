"""`minwa verify OUT`: re-check a packed folder's checksums, indices and member names (minwa.data.verify)."""

HELP = "check packed shards: checksums, indices, safe member names"


def add_arguments(p):
    p.add_argument("folder", metavar="OUT", help="a folder written by 'minwa pack'")
    p.add_argument("--deep", action="store_true", help="also decode every image")


def run(args) -> int:
    from minwa.data import verify
    from minwa.data.shards import read_manifest

    problems = verify(args.folder, deep=args.deep)
    for line in problems:
        print(line)
    if problems:
        return 1
    m = read_manifest(args.folder)
    print(f"OK: {m['num_samples']:,} samples in {len(m['shards'])} shards, checksums and indices match")
    return 0
