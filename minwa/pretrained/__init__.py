"""Pretrained weights from torchvision and timm into minwa's models (issue #17; docs/pretrained.md).

``import_weights(path, arch=None, fc="keep")`` reads a state dict (``minwa.pretrained.source``: never
unpickles objects), finds its layout in the mapping tables (``minwa.pretrained.tables``), loads it
(``minwa.pretrained.convert``: every tensor accounted for, the first mismatch named) and returns the model
with the sidecar fields a minwa checkpoint records; ``minwa.pretrained.init`` lets ``train --init`` take
such a file directly.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "Imported": "minwa.pretrained.convert",
    "import_state": "minwa.pretrained.convert",
    "import_weights": "minwa.pretrained.convert",
    "load_init": "minwa.pretrained.init",
    "read_init_meta": "minwa.pretrained.init",
})
