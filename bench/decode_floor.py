"""Where a 500x375 JPEG's decode time goes, and what each way of decoding less would save.

Issue 3 asks the loader for 3x the PIL DataLoader; minwa's per-image cost is decode + resize, so this
measures (one thread, ``time.process_time``, best of ``--passes`` passes over ``--images`` photos of the
corpus) the variants that could make the decode cheaper:

- simplejpeg as minwa calls it (full size, fast chroma upsampling), with libjpeg's accurate IDCT and with
  its fast integer IDCT (``fastdct``), and how far ``fastdct`` moves the pixels after the 224 resize;
- simplejpeg at 1/8 and at 5/8 of the size (DCT-domain scaling: is the IDCT what costs?);
- with a C compiler and libjpeg-turbo's headers (``gcc``, ``jpeglib.h``), a 60-line libjpeg program
  built on the fly: entropy decoding alone (``jpeg_read_coefficients``), a full RGB decode, and a decode
  of only the centre square (``jpeg_crop_scanline`` + ``jpeg_skip_scanlines``, stopping after its last
  row): what region decoding would save;
- the resize that follows (torch's uint8 antialiased kernel, centre square to 224x224), and the same
  for one plane (what a planar Y/CbCr resampler built on torch would pay per plane).

Run: ``python bench/decode_floor.py CORPUS_FOLDER [--images 256] [--json]`` (CORPUS_FOLDER: the
``make_corpus`` folder of ``minwa bench loader``, e.g. runs/bench-loader/corpus).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import simplejpeg
import torch

from minwa.benchmarks.cputime import per_item_us
from minwa.data import decode as dec

C_SOURCE = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
struct err { struct jpeg_error_mgr pub; jmp_buf jb; };
static void on_error(j_common_ptr c) { longjmp(((struct err *)c->err)->jb, 1); }
static void quiet(j_common_ptr c) { (void)c; }
#define OPEN(d, e, data, n) \
  d.err = jpeg_std_error(&e.pub); e.pub.error_exit = on_error; e.pub.output_message = quiet; \
  if (setjmp(e.jb)) { jpeg_destroy_decompress(&d); return -1; } \
  jpeg_create_decompress(&d); jpeg_mem_src(&d, data, n); jpeg_read_header(&d, TRUE);

int entropy_only(const uint8_t *data, unsigned long n) {
  struct jpeg_decompress_struct d; struct err e; OPEN(d, e, data, n)
  jpeg_read_coefficients(&d);
  jpeg_destroy_decompress(&d); return 0;
}
/* rows [y0, y1) and columns [x0, x1) as RGB into out (row stride 3 * (x1 - x0)); fancy: libjpeg's
   triangle chroma upsampling. The whole image is the region (0, 0, w, h). */
int region_rgb(const uint8_t *data, unsigned long n, int x0, int y0, int x1, int y1, uint8_t *out,
               uint8_t *row, int fancy) {
  struct jpeg_decompress_struct d; struct err e; OPEN(d, e, data, n)
  d.out_color_space = JCS_RGB; d.do_fancy_upsampling = fancy; d.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&d);
  JDIMENSION xoff = x0, w = x1 - x0;
  if (x0 > 0 || x1 < (int)d.output_width) jpeg_crop_scanline(&d, &xoff, &w);
  if (y0 > 0) jpeg_skip_scanlines(&d, y0);
  for (int y = y0; y < y1; y++) {
    JSAMPROW r = row;
    jpeg_read_scanlines(&d, &r, 1);
    memcpy(out + (size_t)(y - y0) * 3 * (x1 - x0), row + 3 * (x0 - (int)xoff), 3 * (x1 - x0));
  }
  jpeg_abort_decompress(&d); jpeg_destroy_decompress(&d); return 0;
}
"""


def build_c(tmp: Path):
    """The C helpers above as a ctypes library, or None without gcc or libjpeg's headers."""
    if shutil.which("gcc") is None:
        return None
    src, lib = tmp / "floor.c", tmp / "floor.so"
    src.write_text(C_SOURCE)
    r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ljpeg"], capture_output=True)
    return ctypes.CDLL(str(lib)) if r.returncode == 0 else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    files = sorted(Path(a.corpus).rglob("*.jpg"))[: a.images]
    items = []
    for f in files:
        data = f.read_bytes()
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        items.append((data, h, w, dec.square_box(h, w)))
    out = torch.empty((1, 224, 224, 3), dtype=torch.uint8).permute(0, 3, 1, 2)[0]
    r = {"images": len(items), "mean_kb": round(float(np.mean([len(i[0]) for i in items])) / 1e3, 1)}
    r["simplejpeg_fast_upsample_us"] = per_item_us(lambda i: simplejpeg.decode_jpeg(i[0], fastupsample=True), items, a.passes)
    r["simplejpeg_fastdct_us"] = per_item_us(lambda i: simplejpeg.decode_jpeg(i[0], fastupsample=True, fastdct=True), items, a.passes)
    r["simplejpeg_eighth_us"] = per_item_us(lambda i: simplejpeg.decode_jpeg(i[0], min_factor=8), items, a.passes)
    r["simplejpeg_five_eighths_us"] = per_item_us(
        lambda i: simplejpeg.decode_jpeg(i[0], fastupsample=True, min_height=-(-i[1] * 5 // 8), min_width=-(-i[2] * 5 // 8)),
        items, a.passes)  # fmt: skip
    decoded = [simplejpeg.decode_jpeg(i[0], fastupsample=True) for i in items[:64]]
    r["resize_centre_square_to_224_us"] = per_item_us(lambda im: dec.resize_chw(im, dec.square_box(*im.shape[:2]), 224, 224, out),
                                                  decoded, a.passes)
    planes = [torch.from_numpy(np.ascontiguousarray(im[:, :, 0]))[None, None] for im in decoded]
    r["resize_one_plane_to_224_us"] = per_item_us(lambda y: dec.resize_chw(y[0].permute(1, 2, 0).numpy(), dec.square_box(*y.shape[-2:]), 224, 224),
                                              planes, a.passes)  # a Y plane alone: torch has no fast 1-channel path
    # fastdct's effect on what the network sees: the 224x224 result, accurate vs fast IDCT
    diffs = []
    for data, h, w, box in items[:64]:
        ref = dec.resize_chw(simplejpeg.decode_jpeg(data, fastupsample=True), box, 224, 224).float()
        fast = dec.resize_chw(simplejpeg.decode_jpeg(data, fastupsample=True, fastdct=True), box, 224, 224).float()
        diffs.append(((fast - ref).mean().item(), (fast - ref).abs().mean().item()))
    r["fastdct_mean_shift_grey_levels"] = round(float(np.mean([d[0] for d in diffs])), 3)
    r["fastdct_mean_abs_grey_levels"] = round(float(np.mean([d[1] for d in diffs])), 3)
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_c(Path(tmp))
        if lib is not None:
            big = np.empty(64 << 20, np.uint8)
            row = np.empty(3 << 16, np.uint8)
            ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)  # noqa: E731

            def region(i, box):
                x0, y0, x1, y1 = box
                assert lib.region_rgb(i[0], ctypes.c_ulong(len(i[0])), x0, y0, x1, y1, ptr(big), ptr(row), 0) == 0

            r["libjpeg_entropy_only_us"] = per_item_us(lambda i: lib.entropy_only(i[0], ctypes.c_ulong(len(i[0]))), items, a.passes)
            r["libjpeg_full_rgb_us"] = per_item_us(lambda i: region(i, (0, 0, i[2], i[1])), items, a.passes)
            r["libjpeg_centre_square_rgb_us"] = per_item_us(lambda i: region(i, i[3]), items, a.passes)
            r["libjpeg_version_note"] = "the system libjpeg-turbo that gcc linked (simplejpeg bundles its own)"
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k:36s} {v}")


if __name__ == "__main__":
    main()
