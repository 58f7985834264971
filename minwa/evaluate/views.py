"""Test-time views batched: every image at every test scale through :mod:`minwa.evaluate.preprocess`.

Images arrive as uint8 H×W×C arrays of any sizes (photographs: nearly every one its own size). Each is
resized per test scale by the one preprocessing path (:func:`minwa.evaluate.preprocess.resize`: its
centre square to S×S, or the whole image for dense testing), and every equally shaped result is stacked
into one batch, so the network runs once per test scale (centre crops: all images) or once per resized
size (dense: images of one aspect ratio), never once per original size. The batches stay uint8; the
caller applies :func:`minwa.evaluate.preprocess.crop_normalise` on the device.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from minwa.evaluate import preprocess as P


def scaled_batches(images, scales, whole: bool, device):
    """Yield ``(scale, indices, uint8 NCHW on device)`` per test scale and resized size.

    ``images``: a list of uint8 H×W×C (or H×W) arrays, or one N×H×W×C array; ``whole``: dense testing
    (the whole image, shorter side S) rather than the S×S centre square."""
    buckets = defaultdict(lambda: ([], []))
    for i, im in enumerate(images):
        for s in scales:
            y = P.resize(im, s, whole=whole)
            indices, parts = buckets[(s, *y.shape)]
            indices.append(i)
            parts.append(y)
    for (s, *_), (indices, parts) in buckets.items():
        yield s, indices, torch.stack(parts).to(device, non_blocking=True)
