"""Decoding, resizing and pack-time normalisation of images.

- ``decode(data, channels, min_side)``: JPEG through simplejpeg (libjpeg-turbo), downscaling in the DCT
  domain by 1/2, 1/4 or 1/8 while the shorter side stays >= ``min_side``; minwa's own PNGs through ``decode_png_fast``; everything else, and any JPEG simplejpeg
  refuses, through Pillow.
- ``resize_square_chw(img, size)``: shorter side to ``size``, centre ``size x size`` crop (``square_box``
  places the square elsewhere along the long side: the loader's random square), in one
  antialiased bilinear resize of the kept box only (torch's uint8 kernel), so no pixel outside the
  crop is computed; ``resize_chw(..., out=row)`` writes straight into a batch row (planar or
  channels-last). Pillow's resize (``resize_pil``, the reference it matches to within a grey level) is
  the fallback.
- ``prepare_for_pack(data, ...)``: the bytes that go into a shard. JPEGs that need no change keep their
  original bytes; EXIF-rotated, CMYK, oversized or non-JPEG inputs are re-encoded as RGB JPEG; anything
  undecodable raises ``Rejected`` with one of the fixed reasons in ``REASONS``.
- ``encode_png`` / ``decode_png_fast``: lossless storage of small 8-bit images (Fashion-MNIST). Written
  by hand because it is measurably faster where it matters: 33 us vs Pillow's 77 us per 28x28 encode
  (the demo packs 60,000) and ~5 us vs 31 us per decode (the cache decodes all of them); any PNG not in
  this simple layout goes to Pillow.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# The reasons an input is not packed (manifest "rejected" entries use exactly these words).
EMPTY = "empty file"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated image data"
CORRUPT = "corrupt image data"
TOO_LARGE = "image too large"  # + " (N megapixels)"
UNSUPPORTED_MODE = "unsupported image mode"  # + " X"
NEEDS_PLUGIN = "HEIC/HEIF image, which Pillow reads only with the pillow-heif plugin (pip install 'minwa[heic]')"
REASONS = (EMPTY, NOT_AN_IMAGE, TRUNCATED, CORRUPT, TOO_LARGE, UNSUPPORTED_MODE, NEEDS_PLUGIN)
# ISO-BMFF brands of HEIF images (phones' HEIC photos); AVIF Pillow reads by itself
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_heif_registered: list[bool] = []

MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # Pillow's own decompression-bomb limit (~179 MP)
_LIMIT_LOCK = threading.Lock()  # held while Pillow's process-wide limit is lifted (_pillow_limit_lifted)
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_EOI = b"\xff\xd9"


class Rejected(Exception):
    """An input that cannot be packed; ``str(e)`` is the reason recorded in the manifest."""


def sniff(data: bytes) -> str | None:
    """The container format from the first bytes (never from the file name)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_SIG:
        return "png"
    return None


# ---------------------------------------------------------------------------------------------- PNG
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(img: np.ndarray, level: int = 6) -> bytes:
    """Lossless 8-bit grayscale (HxW or HxWx1) or RGB (HxWx3) PNG, filter 0, one IDAT chunk."""
    img = np.asarray(img, dtype=np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color = {1: 0, 3: 2}[c]
    rows = np.zeros((h, 1 + w * c), np.uint8)
    rows[:, 1:] = img.reshape(h, w * c)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return _PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b"")


def decode_png_fast(data: bytes, channels: int) -> np.ndarray | None:
    """HxWxC for an 8-bit, non-interlaced, unfiltered gray/RGB PNG matching ``channels``; else None."""
    try:
        if data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
            return None
        w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        c = {0: 1, 2: 3}.get(color)
        if depth != 8 or interlace or c != channels:
            return None
        pos, idat = 33, []
        while pos + 8 <= len(data):
            (n,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                idat.append(data[pos + 8 : pos + 8 + n])
            elif kind == b"IEND":
                break
            pos += 12 + n
        rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
        if rows.size != h * (1 + w * c):
            return None
        rows = rows.reshape(h, 1 + w * c)
        if rows[:, 0].any():  # a row uses a PNG filter: let Pillow undo it
            return None
        return rows[:, 1:].reshape(h, w, c)
    except (struct.error, zlib.error, ValueError):
        return None


# ------------------------------------------------------------------------------------------ decoding
def is_heif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def _heif_plugin() -> bool:
    """Register pillow-heif's opener once, if it is installed (HEIC photos from phones)."""
    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_registered.append(True)
        except ImportError:
            _heif_registered.append(False)
    return _heif_registered[0]


def _open(data: bytes) -> Image.Image:
    """Pillow's image of ``data``; ``Rejected(NEEDS_PLUGIN)`` for a HEIF file Pillow cannot read here."""
    if is_heif(data) and not _heif_plugin():
        raise Rejected(NEEDS_PLUGIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Image.open(io.BytesIO(data))


def read_image(path, channels: int = 3, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> np.ndarray:
    """An image file a user points at (``predict``, ``augment-preview``) as HxWxC uint8, decoded exactly as
    ``pack`` decodes its sources (EXIF rotation applied) and refused for the same reasons (a JPEG is
    checked as the packer checks it, so a truncated one is not answered as if whole); one-sentence
    ``MinwaError`` when it cannot be. ``max_pixels``: larger images are refused (0 = no limit);
    ``min_side``: as ``ImageDataset.image`` (a JPEG may be decoded smaller, shorter side >= it)."""
    from minwa.errors import MinwaError

    p = Path(path)
    if not p.is_file():
        raise MinwaError(f"image not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MinwaError(f"cannot read image {p}: {e.strerror or e}") from None
    return read_image_bytes(data, channels, max_pixels, what=f"image {p}", min_side=min_side,
                            hint=lambda n: f"; raise it with --max-pixels {n}")


def read_image_bytes(data: bytes, channels: int = 3, max_pixels: int = MAX_PIXELS, *, what: str = "the image",
                     min_side: int | None = None, hint=lambda n: "") -> np.ndarray:
    """``read_image`` for bytes already in memory (``minwa serve``'s uploads): the same decoding and the
    same refusals, each one sentence about ``what``; ``hint(pixels)`` ends the too-large sentence."""
    from minwa.errors import MinwaError

    try:
        if not data:
            raise Rejected(EMPTY)
        with _pillow_limit_lifted(max_pixels):
            w, h = _open(data).size
            if max_pixels and w * h > max_pixels:
                raise MinwaError(f"{what} is too large: {w * h:,} pixels ({w}x{h}), over the limit of "
                                 f"{max_pixels:,}{hint(w * h)}")
            if sniff(data) == "jpeg":
                data = _check_jpeg(data)
            return decode_source(data, channels, min_side)
    except Image.DecompressionBombError:  # over Pillow's limit too: its size read with the limit lifted
        with _pillow_limit_lifted(0):
            w, h = _open(data).size
        raise MinwaError(f"{what} is too large: {w * h:,} pixels ({w}x{h}), over the limit of "
                         f"{max_pixels:,}{hint(w * h)}") from None
    except Rejected as e:
        raise MinwaError(f"cannot decode {what}: {e}") from None
    except UnidentifiedImageError:
        raise MinwaError(f"cannot decode {what}: {NOT_AN_IMAGE}") from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as e:
        raise MinwaError(f"cannot decode {what}: {_classify_failure(data, e)} ({e})") from None


@contextlib.contextmanager
def _pillow_limit_lifted(max_pixels: int):
    """Pillow's decompression-bomb check (a process-wide setting) off while ``read_image`` applies its own
    ``max_pixels``, when that is above Pillow's (0: none); restored afterwards. At or below Pillow's limit
    nothing is touched, and a lift holds ``_LIMIT_LOCK``, so decoding threads (``minwa serve``) never race
    on the setting (two overlapping lifts would leave it off for good)."""
    if max_pixels and max_pixels <= MAX_PIXELS:
        yield
        return
    with _LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def pil_to_array(img: Image.Image, channels: int) -> np.ndarray:
    """HxWxC uint8 from any Pillow mode: 16-bit scaled down (not clipped), alpha dropped, CMYK converted."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img)
        if mode.startswith("I"):
            arr = arr.astype(np.int64) >> 8 if arr.max(initial=0) > 255 else arr.astype(np.int64)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "palette images with transparency..." is not news
            try:
                img = img.convert(target)
            except ValueError:
                raise Rejected(f"{UNSUPPORTED_MODE} {mode}") from None
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _draft_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    w, h = size
    s = min_side / max(1, min(w, h))
    return max(1, math.ceil(w * s)), max(1, math.ceil(h * s))


def decode_pil(data: bytes, channels: int = 3, min_side: int | None = None) -> np.ndarray:
    """Any format Pillow reads, EXIF orientation applied; JPEGs drafted down when ``min_side`` allows."""
    img = _open(data)
    if min_side and img.format == "JPEG":
        img.draft(img.mode, _draft_size(img.size, min_side))
    img.load()
    img = ImageOps.exif_transpose(img) or img
    return pil_to_array(img, channels)


def dct_factor(h: int, w: int, min_side: int | None) -> int:
    """The largest of 8, 4, 2 (else 1) by which libjpeg-turbo may shrink an h x w JPEG while its shorter
    side stays >= ``min_side``. Only powers of two: the M/8 scales in between run a plain-C IDCT that is
    slower than a full SIMD decode (measured 694 vs 559 us for 500x375 at 5/8)."""
    if not min_side:
        return 1
    for k in (8, 4, 2):
        if min(h, w) // k >= min_side:
            return k
    return 1


def decode_jpeg(data: bytes, channels: int = 3, min_side: int | None = None) -> np.ndarray:
    """simplejpeg decode, shrunk in the DCT domain by ``dct_factor`` (shorter side stays >= ``min_side``).

    When the caller will shrink the result anyway (``min_side`` below the shorter side), chroma is
    upsampled the fast way (pixel replication instead of libjpeg's triangle filter): 7% less decode time
    (690 vs 741 us per 500x375 photo incl. resize), and the antialiased downscale that follows smooths
    chroma more than the filter would."""
    space = "GRAY" if channels == 1 else "RGB"
    if not min_side:
        arr = simplejpeg.decode_jpeg(data, colorspace=space, strict=False)
    else:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        k = dct_factor(h, w, min_side)
        arr = simplejpeg.decode_jpeg(data, colorspace=space, min_height=-(-h // k), min_width=-(-w // k),
                                     fastupsample=min(h, w) // k > min_side, strict=False)
    return arr if arr.ndim == 3 else arr[:, :, None]


def decode(data: bytes, channels: int = 3, min_side: int | None = None) -> np.ndarray:
    """Decode packed image bytes to HxWxC uint8 (C = ``channels``) as fast as the format allows.

    Meant for bytes that ``prepare_for_pack`` produced or kept (no EXIF rotation left to apply);
    ``decode_source`` is the one for arbitrary files.
    """
    kind = sniff(data)
    if kind == "jpeg":
        try:
            return decode_jpeg(data, channels, min_side)
        except ValueError:
            pass  # 12-bit, unusual colour spaces: Pillow below
    elif kind == "png":
        arr = decode_png_fast(data, channels)
        if arr is not None:
            return arr
    return decode_pil(data, channels, min_side)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a damaged EXIF block is not a damaged image
        return 1


def decode_source(data: bytes, channels: int = 3, min_side: int | None = None) -> np.ndarray:
    """What a source file decodes to (EXIF rotation applied): plain JPEGs exactly as the loader decodes
    their packed bytes, so a round trip through shards is bit-exact for them."""
    if sniff(data) == "jpeg":
        img = _open(data)
        if img.mode in ("RGB", "L") and _orientation(img) == 1:
            try:
                return decode_jpeg(data, channels, min_side)
            except ValueError:
                pass
    return decode_pil(data, channels, min_side)


# -------------------------------------------------------------------------------------------- resize
def resize_chw(img: np.ndarray, box: tuple[int, int, int, int], out_h: int, out_w: int,
               out: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | np.ndarray:
    """The integer region ``box`` = (left, top, right, bottom) of HxWxC ``img``, resized to a C x out_h x
    out_w uint8 tensor: antialiased bilinear, torch's uint8 kernel (about 4x faster than Pillow's resize,
    equal to Pillow's to within one grey level; bench/loader_breakdown.py measures both), straight
    from the decoder's memory without a copy. With ``out`` (a C x out_h x out_w uint8 tensor, planar or
    channels-last, e.g. a row of a shared batch) the kernel writes there directly: no 150 KB temporary.
    Channels-last is its native layout (the decoder's H x W x C) and the faster one to write (145 vs 194 us
    per image into a channels-last vs a planar row, docs/BENCHMARKS.md §3). Pillow's resize is the
    fallback where torch has no uint8 kernel.

    ``out`` may also be the row seen as the decoder's H x W x C (a numpy view, as the loader's batches hand
    it over): an image already at the size is then copied by numpy, without torch's per-call cost (1 vs
    28 us for a 16 x 16 image on the busy 2-core machine: docs/BENCHMARKS.md §16)."""
    x0, y0, x1, y1 = box
    if isinstance(out, np.ndarray):
        if (y1 - y0, x1 - x0) == (out_h, out_w):
            out[...] = img[y0:y1, x0:x1]
            return out
        out = torch.from_numpy(out).permute(2, 0, 1)
    if not img.flags.writeable:
        img = img.copy()
    view = torch.from_numpy(img[y0:y1, x0:x1]).permute(2, 0, 1)
    if view.shape[1:] == (out_h, out_w):
        res = view
    else:
        try:
            if out is not None and _dense_row(out):
                _resize_aa_out(view[None], (out_h, out_w), out[None])
                return out
            res = torch.nn.functional.interpolate(view[None], size=(out_h, out_w), mode="bilinear", antialias=True)[0]
        except (RuntimeError, NotImplementedError):  # a torch without the uint8 antialiased kernel
            res = torch.from_numpy(resize_pil(img, box, out_h, out_w).copy()).permute(2, 0, 1)
    if out is None:
        return res.contiguous()
    out.copy_(res)
    return out


def _dense_row(out: torch.Tensor) -> bool:
    """Whether the kernel can write ``out`` (C x H x W) in place: planar or channels-last memory."""
    row = out[None]
    return row.is_contiguous() or row.is_contiguous(memory_format=torch.channels_last)


def _resize_aa_out(x: torch.Tensor, size: tuple[int, int], out: torch.Tensor) -> None:
    """``interpolate(x, size, mode="bilinear", antialias=True)`` written into ``out`` (the same op)."""
    torch.ops.aten._upsample_bilinear2d_aa.out(x, list(size), False, None, None, out=out)


def resize_pil(img: np.ndarray, box: tuple[int, int, int, int], out_h: int, out_w: int) -> np.ndarray:
    """Pillow's antialiased bilinear resize of ``box`` of HxWxC ``img`` (the reference and fallback)."""
    return _back(_pil(np.ascontiguousarray(img)).resize((out_w, out_h), Image.BILINEAR, box=box))


def square_box(h: int, w: int, at: float | None = None) -> tuple[int, int, int, int]:
    """The largest square of an h x w image: in the centre, or with ``at`` in [0, 1) its offset along the
    long side is ``floor(at * (slack + 1))``, every whole-pixel position equally likely for a uniform ``at``."""
    m = min(h, w)
    if at is None:
        x0, y0 = (w - m) // 2, (h - m) // 2
    else:
        x0, y0 = int(at * (w - m + 1)), int(at * (h - m + 1))
    return (x0, y0, x0 + m, y0 + m)


def resize_square_chw(img: np.ndarray, size: int) -> torch.Tensor:
    """Shorter side to ``size``, then the centre ``size x size`` square (one resize of the kept box)."""
    return resize_chw(img, square_box(*img.shape[:2]), size, size)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """``resize_square_chw`` as an HxWxC array."""
    return resize_square_chw(img, size).permute(1, 2, 0).numpy()


def resize_box(img: np.ndarray, box, out_h: int, out_w: int) -> np.ndarray:
    """``resize_chw`` (box rounded to whole pixels) as an HxWxC array."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return resize_chw(img, (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), out_h, out_w).permute(1, 2, 0).numpy()


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def _back(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


# ------------------------------------------------------------------------------------------- packing
# What decoding damaged or unusual bytes raises (UnidentifiedImageError is an OSError)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, zlib.error, Image.DecompressionBombError, Rejected)


def failure_reason(data: bytes, err: Exception) -> str:
    """One of ``REASONS`` for an exception in ``DECODE_ERRORS`` raised while decoding ``data``."""
    if isinstance(err, Rejected):
        return str(err)
    if isinstance(err, UnidentifiedImageError):
        return NOT_AN_IMAGE
    if isinstance(err, Image.DecompressionBombError):
        return TOO_LARGE
    return _classify_failure(data, err)


def _classify_failure(data: bytes, err: Exception) -> str:
    text = str(err).lower()
    if "truncat" in text or "premature end" in text:
        return TRUNCATED
    if sniff(data) == "jpeg" and not data.rstrip(b"\x00").endswith(_JPEG_EOI):
        return TRUNCATED
    return CORRUPT


def _check_jpeg(data: bytes) -> bytes:
    """``data`` if simplejpeg decodes it without complaint, else repaired (missing end marker added)."""
    try:
        simplejpeg.decode_jpeg(data, min_factor=8, strict=True)
        return data
    except ValueError as e:
        if not data.endswith(_JPEG_EOI):
            try:
                simplejpeg.decode_jpeg(data + _JPEG_EOI, min_factor=8, strict=True)
                return data + _JPEG_EOI
            except ValueError:
                pass
        raise Rejected(_classify_failure(data, e)) from None


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    img = np.ascontiguousarray(img)
    if img.shape[2] == 1:
        return simplejpeg.encode_jpeg(img, quality=quality, colorspace="GRAY")
    return simplejpeg.encode_jpeg(img, quality=quality, colorspace="RGB", colorsubsampling="420")


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    w, h = img.size
    if not max_side or min(w, h) <= max_side:
        return img
    s = max_side / min(w, h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return img.resize(size, Image.LANCZOS, reducing_gap=3.0)


def prepare_for_pack(data: bytes, *, max_side: int, quality: int, channels: int = 3) -> tuple[bytes, str, int, int]:
    """(bytes to store, extension, height, width) for one input file, or ``Rejected(reason)``.

    Kept as is: a JPEG in RGB or grayscale, without EXIF rotation, whose shorter side is at most
    ``max_side`` (0 = no limit) and which libjpeg-turbo decodes cleanly (a missing end marker is repaired).
    Everything else that Pillow can decode is re-encoded as an RGB JPEG at ``quality`` with the EXIF
    rotation applied, the shorter side reduced to ``max_side`` and alpha dropped.
    """
    if not data:
        raise Rejected(EMPTY)
    try:
        img = _open(data)
    except UnidentifiedImageError:
        raise Rejected(NOT_AN_IMAGE) from None
    except Image.DecompressionBombError:
        raise Rejected(f"{TOO_LARGE} (over {MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise Rejected(_classify_failure(data, e)) from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise Rejected(f"{TOO_LARGE} ({w * h / 1e6:.0f} megapixels)")
    plain = img.format == "JPEG" and img.mode in ("RGB", "L") and _orientation(img) == 1
    if plain and (not max_side or min(w, h) <= max_side):
        return _check_jpeg(data), "jpg", h, w
    if img.format == "JPEG":
        data = _check_jpeg(data)  # a truncated or corrupt JPEG is rejected, not re-encoded with grey
        img = _open(data)
        if max_side and min(w, h) > 2 * max_side:
            img.draft(img.mode, _draft_size(img.size, max_side))  # decode at 1/2..1/8 in the DCT domain
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except Image.DecompressionBombError:
        raise Rejected(f"{TOO_LARGE} ({w * h / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as e:
        raise Rejected(_classify_failure(data, e)) from None
    arr = pil_to_array(img, channels)
    if max_side and min(arr.shape[:2]) > max_side:
        arr = _back(_shrink(_pil(arr), max_side))
    return encode_jpeg(arr, quality), "jpg", arr.shape[0], arr.shape[1]
