#!/usr/bin/env python3
"""Where the loader's per-image CPU time goes: decode, resize (planar vs channels-last row, vs Pillow).

One thread, `time.process_time`, over the JPEGs of a folder (e.g. the corpus that `minwa bench loader
--set make_corpus=N --set work=DIR` makes in DIR/corpus), the same calls the loader makes: decode to HxWxC, then the
centre square resized to SIZE x SIZE. Median of ``--repeats`` passes; prints one JSON object (µs per image).

    python bench/loader_breakdown.py /tmp/bl3/corpus --images 256
"""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from minwa.benchmarks.cputime import per_item_us
from minwa.data.decode import decode, decode_pil, resize_chw, resize_pil, square_box


def per_image_us(fn, items, repeats: int) -> float:
    return per_item_us(fn, items, repeats, pick=statistics.median)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="folder searched recursively for *.jpg / *.jpeg")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    files = sorted(f for f in Path(a.folder).rglob("*") if f.suffix.lower() in (".jpg", ".jpeg"))[: a.images]
    if not files:
        raise SystemExit(f"error: no JPEG files under {a.folder}")
    blobs = [f.read_bytes() for f in files]
    images = [decode(b, 3) for b in blobs]
    s = a.size
    planar = torch.empty(3, s, s, dtype=torch.uint8)
    packed = torch.empty(1, s, s, 3, dtype=torch.uint8).permute(0, 3, 1, 2)[0]  # a channels-last batch row
    box = lambda im: square_box(*im.shape[:2])  # noqa: E731
    result = {
        "images": len(files), "size": s, "mean_megapixels": round(float(np.mean([i.shape[0] * i.shape[1] for i in images])) / 1e6, 3),
        "decode_minwa_us": per_image_us(lambda b: decode(b, 3), blobs, a.repeats),
        "decode_pillow_us": per_image_us(lambda b: decode_pil(b, 3), blobs, a.repeats),
        "resize_into_planar_row_us": per_image_us(lambda im: resize_chw(im, box(im), s, s, out=planar), images, a.repeats),
        "resize_into_channels_last_row_us": per_image_us(lambda im: resize_chw(im, box(im), s, s, out=packed), images, a.repeats),
        "resize_pillow_us": per_image_us(lambda im: resize_pil(im, box(im), s, s), images, a.repeats),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
