"""Small real configurations of the registered models, shared by the model tests."""

from __future__ import annotations

from minwa.models import create_model

# The big models at the same depth and layer kinds, narrow and on small inputs (full size: the meta device).
SMALL = {
    "deepimage16": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "deepimage19": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "deepimage-scaling": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "alexnet": dict(fc=(16, 16), img_size=67),
    "alexnet-torchvision": dict(fc=(16, 16), img_size=67),
    "inception-bn": dict(width=0.125, img_size=32),
    "resnet18": dict(img_size=32),
    "resnet50": dict(img_size=32),
}


def small_in_chans(name: str) -> int:
    """The big models take colour images, the CPU-sized ones grayscale."""
    return 3 if name in SMALL else 1


def small_model(name: str, num_classes: int = 7, **kwargs):
    """``name`` at its small configuration (the caller seeds torch first when weights matter)."""
    return create_model(name, num_classes, small_in_chans(name), **SMALL.get(name, {}), **kwargs)
