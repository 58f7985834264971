"""The one test-time preprocessing: how an image becomes a network input everywhere but the train path.

Validation during training, ``minwa eval``, ``minwa predict`` (and so the service) run these steps, and
an exported model's metadata (:func:`spec`) describes them so another runtime can repeat them:

1. decode; JPEGs are shrunk in the DCT domain by 1/2, 1/4 or 1/8 while the shorter side stays >= the
   largest test scale S (``ImageDataset.image(i, min_side=S)``, ``read_image(path, min_side=S)``);
2. :func:`resize`: the centre square of the image (its shorter side, whole pixels) resized to S x S by
   antialiased bilinear interpolation in uint8 (``minwa.data.decode.resize_chw``, the loader's own
   resize, so validation batches are these squares) — dense testing keeps the whole image, shorter
   side S;
3. :func:`match_channels` to the model (grey -> RGB by repetition, RGB -> grey by ITU-R 601-2 luma,
   rounded to uint8);
4. :func:`crop_normalise`: the centre C x C crop at ((S-C)//2, (S-C)//2), then float32
   ``x * (1/(255 std)) + (-mean/std)`` (the train path's own arithmetic, ``photometric.normalise_factors``).

Until issue #15 eval and predict resized the whole image in float and cropped it (up to 72 grey levels
from validation's input at the crop's edges) and predict decoded JPEGs at full size.
"""

from __future__ import annotations

import numpy as np
import torch

from minwa.augment.photometric import normalise_factors
from minwa.data import decode as dec
from minwa.errors import MinwaError

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, Pillow's "L" conversion


def read(path, scale: int, max_pixels: int = dec.MAX_PIXELS) -> np.ndarray:
    """Step 1 for an image file: RGB (as a folder of files is decoded), shorter side >= ``scale``."""
    return dec.read_image(path, 3, max_pixels, min_side=scale)


def read_bytes(data: bytes, scale: int, max_pixels: int = dec.MAX_PIXELS, what: str = "the image") -> np.ndarray:
    """Step 1 for an image already in memory (``minwa serve``'s uploads): decoded exactly as :func:`read`."""
    return dec.read_image_bytes(data, 3, max_pixels, what=what, min_side=scale)


def resized_size(h: int, w: int, scale: int) -> tuple[int, int]:
    """(H, W) with the shorter side equal to ``scale``, aspect ratio kept (dense testing's whole image)."""
    if h <= w:
        return scale, max(scale, round(w * scale / h))
    return max(scale, round(h * scale / w)), scale


def resize(img: np.ndarray, scale: int, whole: bool = False) -> torch.Tensor:
    """uint8 C x S x S: the centre square of H x W x C (or H x W) ``img`` resized to ``scale`` — the loader's
    evaluation square; ``whole``: the whole image with its shorter side at ``scale`` (dense testing)."""
    if img.ndim == 2:
        img = img[:, :, None]
    h, w = img.shape[:2]
    if whole:
        return dec.resize_chw(img, (0, 0, w, h), *resized_size(h, w, scale))
    return dec.resize_chw(img, dec.square_box(h, w), scale, scale)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """NCHW with the model's channel count: grey -> RGB by repetition, RGB -> grey by luma (uint8 in:
    rounded back to uint8)."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and channels == 1:
        y = x.float()
        w = torch.tensor(_LUMA, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)
        y = (y * w).sum(1, keepdim=True)
        return y.round().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y
    raise MinwaError(f"images have {c} channels but the model takes {channels}")


def centre_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """The centre ``crop`` x ``crop`` window of NCHW ``x`` (a view)."""
    h, w = x.shape[-2:]
    if h < crop or w < crop:
        raise MinwaError(f"test scale {min(h, w)} is smaller than the model's {crop}x{crop} crop "
                         f"(use a scale >= {crop}, or --dense)")
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """float32 ``(x/255 - mean)/std`` of NCHW ``x`` (uint8 or float in 0..255), computed as the train path
    computes it."""
    scale, shift = normalise_factors(mean, std, x.shape[1], x.device)
    return torch.addcmul(shift, x.to(torch.float32).contiguous(), scale)


def crop_normalise(x: torch.Tensor, crop: int | None, mean, std, channels: int | None = None) -> torch.Tensor:
    """Steps 3-4 on a uint8 NCHW batch of :func:`resize` outputs (``crop`` None: no crop, dense)."""
    if channels is not None:
        x = match_channels(x, channels)
    if crop is not None:
        x = centre_crop(x, crop)
    return normalise(x, mean, std)


def network_input(images, scale: int, crop: int | None, mean, std, channels: int) -> torch.Tensor:
    """All four steps for decoded images of one resized size (centre crops: any images): float32 NCHW."""
    x = torch.stack([resize(im, scale, whole=crop is None) for im in images])
    return crop_normalise(x, crop, mean, std, channels)


def spec(scale: int, crop: int, mean, std, channels: int) -> dict:
    """The recipe above as data, for an exported model's metadata (``docs/export.md``)."""
    def per_channel(v):
        v = [float(t) for t in np.atleast_1d(np.asarray(v, dtype=np.float64))]
        return v * channels if len(v) == 1 else v

    return {"scale": int(scale), "crop": int(crop), "mean": per_channel(mean), "std": per_channel(std),
            "channels": int(channels), "colour_order": "RGB" if channels == 3 else "L",
            "input_layout": "NCHW float32", "value_range": "x/255 in 0..1, then (x - mean) / std",
            "resize": "centre square of the image (side = shorter side, whole pixels), resized to scale x scale, "
                      "antialiased bilinear (Pillow BILINEAR with box=square), rounded to uint8",
            "crop_at": "((scale - crop) // 2, (scale - crop) // 2)",
            "jpeg_decode": "DCT-domain downscale by 1/2, 1/4 or 1/8 while the shorter side stays >= scale "
                           "(Pillow: Image.draft)"}
