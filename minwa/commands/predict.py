"""`minwa predict`: top-k classes of image files, through the eval path (scales, flips, ensembles)."""

import argparse
import json
from pathlib import Path

from minwa.errors import MinwaError

HELP = "classify image files: top-k class names with probabilities (ensembles, scales, flips)"


def add_max_pixels(p):
    """``--max-pixels N``: the image-size limit of ``read_image`` (predict and augment-preview)."""
    from minwa.data.decode import MAX_PIXELS

    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help=f"refuse larger images (default {MAX_PIXELS:,}, Pillow's bomb limit; 0 = no limit)")


def scale_list(text: str) -> list[int]:
    """``--scales 224,256`` -> [224, 256]; anything else is a one-line usage error."""
    try:
        scales = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be whole numbers separated by commas, got '{text}'") from None
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError(f"scales must be positive, got '{text}'")
    return scales


def add_arguments(p):
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--ckpt", action="append", required=True, metavar="PATH", help="checkpoint; repeat for an ensemble")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--scales", type=scale_list, default=[], metavar="S1,S2,...", help="test scales (default: each model's own)")
    p.add_argument("--flip", action="store_true", help="also the mirrored image (softmax averaged)")
    p.add_argument("--dense", action="store_true", help="dense testing on the whole image")
    p.add_argument("--device", default="auto", help="= runtime.device: auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="= runtime.precision (auto: bf16 where the device has bf16 units, else fp16 on GPUs, fp32)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.add_argument("--hierarchy", action="store_true",
                   help="WordNet-id classes: also the most specific WordNet synset holding --threshold of the "
                        "probability (\"dog 96%%\" when the breed is uncertain)")
    p.add_argument("--threshold", type=float, default=0.9, metavar="P",
                   help="with --hierarchy: the probability the answer must hold (default 0.9)")
    p.add_argument("--wordnet", default="", metavar="DIR",
                   help="folder holding WordNet's data.noun (default /usr/share/wordnet: Debian's wordnet-base)")
    add_max_pixels(p)


def expand_folders(paths) -> list[str]:
    """A folder given to predict means every file in it (recursively, hidden ones skipped, sorted), each
    decoded as pack decodes; a folder holding no file is one sentence."""
    out = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(str(path))
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise MinwaError(f"{path} is a folder with no images in it")
        out.extend(map(str, files))
    return out


def run(args) -> int:
    from minwa.evaluate import predict  # torch: only when a command runs, not for `minwa --help`
    from minwa.models.checkpoint import describe_checkpoint

    if args.topk < 1:
        raise MinwaError("--topk must be at least 1")
    if not 0 < args.threshold <= 1:
        raise MinwaError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.max_pixels < 0:
        raise MinwaError(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    images = expand_folders(args.images)
    if not args.json:  # stdout stays one JSON document with --json; stderr is kept for errors
        for ckpt in args.ckpt:
            print(f"checkpoint {describe_checkpoint(ckpt)}")
    results = predict(args.ckpt, images, args.topk, scales=args.scales, flip=args.flip, dense=args.dense,
                      device=args.device, precision=args.precision, max_pixels=args.max_pixels,
                      hierarchy=args.threshold if args.hierarchy else 0.0, wordnet=args.wordnet)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  {t['name']}")
        if "hierarchy" in r:
            print(f"  {hierarchy_line(r['hierarchy'])}")
    return 0


def hierarchy_line(h: dict) -> str:
    """``hierarchy: n02084071 dog 96% (n02099601 golden retriever 41%, ...)`` — the answer and what it holds."""
    beneath = ", ".join(f"{b['name']} {b['probability']:.0%}" for b in h["beneath"])
    return (f"hierarchy ({h['threshold']:.0%}): {h['name']} {h['probability']:.0%}"
            + (f" ({beneath})" if beneath else ""))
