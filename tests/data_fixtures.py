"""Inputs for the data-stage tests (tests/test_data_*.py): real photographs, odd files, small IDX sets."""

from __future__ import annotations

import gzip
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from minwa.data import decode as dec


def photo(name: str = "coffee") -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()[:, :, :3]


def jpeg_bytes(img: np.ndarray, quality: int = 90, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(img, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img, mode) if mode else Image.fromarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, split: str = "train", gz: bool = True) -> Path:
    """IDX files as the Fashion-MNIST distribution has them (gzip by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = {"train": "train", "test": "t10k"}[split]
    n, h, w = images.shape
    img = struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + images.astype(np.uint8).tobytes()
    lab = struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.astype(np.uint8).tobytes()
    for what, raw, dims in (("images", img, 3), ("labels", lab, 1)):
        name = f"{prefix}-{what}-idx{dims}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return folder


def small_idx(folder: Path, n: int = 600, seed: int = 0, real: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An IDX folder of ``n`` 28x28 images: the first real Fashion-MNIST ones when ``real`` is given."""
    if real is not None:
        from minwa.data.idx import load_idx_split

        images, labels = load_idx_split(real, "train")
        images, labels = images[:n].copy(), labels[:n].copy()
    else:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, n)
        images = (rng.random((n, 28, 28)) * 64 + labels[:, None, None] * 19).astype(np.uint8)
    write_idx(folder, images, labels)
    return images, labels


def exif_rotated_jpeg(img: np.ndarray, orientation: int = 6) -> bytes:
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


# name -> expected reason (None = packed). Class folders "alpha" and "beta ü"; one file at the root.
ODD_EXPECTED = {
    "alpha/cmyk photo.jpg": None,
    "alpha/gray.jpg": None,
    "alpha/png_named.JPEG": None,
    "alpha/rgba.png": None,
    "alpha/sixteen.png": None,
    "alpha/exif_rotated.jpg": None,
    "alpha/huge.jpg": None,
    "alpha/big.png": None,
    "alpha/tiny.png": None,
    "beta ü/ünïcødé 名前.jpg": None,
    "beta ü/no_eoi.jpg": None,
    "beta ü/plain.jpg": None,
    "beta ü/empty.jpg": dec.EMPTY,
    "beta ü/random.jpg": dec.NOT_AN_IMAGE,
    "beta ü/truncated.jpg": dec.TRUNCATED,
    "beta ü/corrupt.jpg": dec.CORRUPT,
    "beta ü/notes.txt": dec.NOT_AN_IMAGE,
    "README.txt": "not inside a class folder",
}


def odd_folder(root: Path) -> dict[str, str | None]:
    """An ImageFolder of real-world odd inputs; returns ``ODD_EXPECTED`` (relative path -> reason)."""
    coffee, chelsea = photo("coffee"), photo("chelsea")
    good = jpeg_bytes(coffee)
    rng = np.random.default_rng(0)
    corrupt = bytearray(good)
    p = int(len(corrupt) * 0.3)
    corrupt[p : p + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    rgba = np.dstack([chelsea, np.full(chelsea.shape[:2], 128, np.uint8)])
    ramp16 = (np.arange(64 * 96, dtype=np.uint32).reshape(64, 96) * 10).astype(np.uint16)
    files = {
        "alpha/cmyk photo.jpg": _pil_bytes(Image.fromarray(chelsea).convert("CMYK"), "JPEG", quality=90),
        "alpha/gray.jpg": jpeg_bytes(coffee[:, :, 1]),
        "alpha/png_named.JPEG": png_bytes(chelsea),
        "alpha/rgba.png": png_bytes(rgba),
        "alpha/sixteen.png": _pil_bytes(Image.fromarray(ramp16), "PNG"),
        "alpha/exif_rotated.jpg": exif_rotated_jpeg(chelsea, 6),
        "alpha/huge.jpg": _pil_bytes(Image.new("RGB", (8660, 5774), (40, 90, 160)), "JPEG", quality=80),
        "alpha/big.png": _pil_bytes(Image.new("L", (3000, 2000), 77), "PNG"),
        "alpha/tiny.png": png_bytes(np.array([[[200, 10, 30]]], np.uint8)),
        "beta ü/ünïcødé 名前.jpg": jpeg_bytes(chelsea),
        "beta ü/no_eoi.jpg": good[:-2],
        "beta ü/plain.jpg": good,
        "beta ü/empty.jpg": b"",
        "beta ü/random.jpg": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "beta ü/truncated.jpg": good[: len(good) // 2],
        "beta ü/corrupt.jpg": bytes(corrupt),
        "beta ü/notes.txt": "not a picture, just words\n".encode(),
        "README.txt": b"about these images\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return dict(ODD_EXPECTED)


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """A small ImageFolder of real photographs (3 classes, random crops, ~200-400 px, q90 JPEGs)."""
    rng = np.random.default_rng(seed)
    for name in ("astronaut", "coffee", "chelsea"):
        img = photo(name)
        h, w = img.shape[:2]
        for k in range(per_class):
            ch, cw = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{k:03d}.jpg").write_bytes(jpeg_bytes(np.ascontiguousarray(img[y : y + ch, x : x + cw])))
    return root


def kill_pack_after(call: str, out: Path, shards: int, cwd: Path) -> None:
    """Run ``call`` (Python code that packs into ``out``) in a subprocess, PNG encoding slowed down per image,
    and SIGKILL it once ``shards`` shards are complete (their ``.json`` records written)."""
    script = textwrap.dedent("""
        import sys, time, minwa.data.decode as dec
        real = dec.encode_png
        dec.encode_png = lambda img, level=6: (time.sleep(0.003), real(img, level))[1]
    """) + call
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd)
    try:
        deadline = time.time() + 60
        while len(list(out.glob("shard-*.json"))) < shards:
            assert proc.poll() is None, "the pack finished before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
