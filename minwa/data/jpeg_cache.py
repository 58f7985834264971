"""The JPEG device cache (Deep Image §3.1): the packed JPEG bytes held once in host memory, decoded on
the GPU per batch by nvJPEG, resized there: no CPU decode at all.

For data sets whose decoded pixels do not fit the accelerator but whose JPEG bytes fit host memory
(ImageNet at 500x375 q90 is ~48 KB an image against ~150 KB of 224x224 pixels). nvJPEG is reached through
``torchvision.io.decode_jpeg(list, device="cuda")``, its batched decoder; torchvision is optional and
imported only here. The resize is the CPU path's geometry (shorter side to S, centre S x S, one
antialiased bilinear resize of the kept box) in float on the device, rounded to uint8, so a batch equals
the CPU loader's to within a few grey levels (nvJPEG's IDCT and chroma upsampling differ from
libjpeg-turbo's in the last bits). Images of equal size are resized together, one call per size.
Samples that are not JPEGs (PNG for 1-channel data) are decoded on the CPU and uploaded.

Streams: torchvision allocates the decoded images on the caller's current stream and writes them from a
private one that does not wait for the caller's (pytorch/vision PR 9606): memory just freed by the
previous training step, still being read by its queued kernels, could be overwritten. So decoding runs
under a stream of its own (its allocations come from that stream's pool, which the training stream never
frees into); the consumer's stream then waits for it and marks the images as used there. The bytes are
not page-locked: pinned allocations are rounded up to a power of two (up to twice the memory), and
nvJPEG reads them from the host either way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import torch

from minwa.data import decode as dec
from minwa.data.integrity import BadSample
from minwa.data.workers import image_format
from minwa.errors import MinwaError

Decoder = Callable[[list[torch.Tensor], int, torch.device], list[torch.Tensor]]


def nvjpeg_decoder() -> Decoder:
    """torchvision's batched nvJPEG decode as ``decode(byte_tensors, channels, device) -> [C x H x W]``."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise MinwaError(f"data.cache=jpeg decodes with nvJPEG through torchvision, which does not import here ({e}); "
                         "use data.cache=device or none") from None

    def decode(datas: list[torch.Tensor], channels: int, device: torch.device) -> list[torch.Tensor]:
        mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        return decode_jpeg(datas, mode=mode, device=device)

    return decode


class JpegCache:
    """Every sample's stored bytes in one uint8 tensor; ``batch(idx)`` decodes and resizes on ``device``.

    ``decode`` defaults to nvJPEG (``nvjpeg_decoder``); tests pass a CPU decoder to check the rest.
    Every sample's bytes are checked once, as they are copied in (``ShardDataset.encoded``: CRC-32): a
    damaged one raises its ``BadSample``, or with a list ``on_bad`` its record goes there and its bytes are
    not copied (the loader never asks for it: ``minwa.data.order.substitute``). Indices without
    checksums (version 1) leave damage to nvJPEG, which fails the whole batch with one sentence.
    """

    def __init__(self, dataset, size: tuple[int, int], device, decode: Decoder | None = None,
                 on_bad: list | None = None):
        if not hasattr(dataset, "encoded"):
            raise MinwaError(f"data.cache=jpeg reads packed shards; {dataset.path} is not one (run 'minwa pack' first)")
        if size[0] != size[1]:
            raise MinwaError(f"data.cache=jpeg needs a square output (data.scale); got {size[1]}x{size[0]}")
        self.ds, self.size, self.device = dataset, size[0], torch.device(device)
        self.decode = decode or nvjpeg_decoder()
        sizes = np.asarray(dataset.index["size"], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.blob = torch.empty(int(self.offsets[-1]), dtype=torch.uint8)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        view = self.blob.numpy()
        self.is_jpeg = np.zeros(len(dataset), dtype=bool)
        for i in range(len(dataset)):
            data = self._checked(i, on_bad)
            if data is not None:
                view[self.offsets[i] : self.offsets[i + 1]] = np.frombuffer(data, dtype=np.uint8)
                self.is_jpeg[i] = dec.sniff(data) == "jpeg"
        self.nbytes = self.blob.numel()

    def _checked(self, i: int, on_bad: list | None) -> bytes | None:
        try:
            return self.ds.encoded(i)
        except BadSample as e:
            if on_bad is None:
                raise
            on_bad.append(e.report(i))
            return None

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """Samples ``idx`` as an N x C x S x S uint8 batch on the device (channels-last for colour)."""
        c, s = self.ds.channels, self.size
        out = torch.empty((len(idx), c, s, s), dtype=torch.uint8, device=self.device, memory_format=image_format(c))
        jpeg = [j for j, i in enumerate(idx.tolist()) if self.is_jpeg[i]]
        if jpeg:
            datas = [self.blob[self.offsets[idx[j]] : self.offsets[idx[j] + 1]] for j in jpeg]
            images = self._decode(datas, c)
            groups: dict[tuple[int, int], list[int]] = defaultdict(list)
            for k, img in enumerate(images):
                groups[tuple(img.shape[-2:])].append(k)
            for (h, w), ks in groups.items():
                x0, y0, x1, y1 = dec.square_box(h, w)
                stack = torch.stack([images[k][:, y0:y1, x0:x1] for k in ks])
                out[[jpeg[k] for k in ks]] = _resize_uint8(stack, s)
        for j, i in enumerate(idx.tolist()):
            if not self.is_jpeg[i]:
                out[j] = dec.resize_square_chw(self.ds.image(i, min_side=s), s).to(self.device)
        return out

    def _decode(self, datas: list[torch.Tensor], channels: int) -> list[torch.Tensor]:
        try:
            if self.stream is None:
                return self.decode(datas, channels, self.device)
            main = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self.stream):
                images = self.decode(datas, channels, self.device)
            main.wait_stream(self.stream)
            for img in images:
                img.record_stream(main)
            return images
        except RuntimeError as e:
            raise MinwaError(f"the GPU could not decode a batch of {self.ds.path}: {e}") from None


def _resize_uint8(x: torch.Tensor, s: int) -> torch.Tensor:
    """N x C x H x W uint8 -> N x C x s x s uint8: antialiased bilinear in float, rounded (any device)."""
    if x.shape[-2:] == (s, s):
        return x
    y = torch.nn.functional.interpolate(x.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)
