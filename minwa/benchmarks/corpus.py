"""An ImageNet-like JPEG corpus made from real photographs (scikit-image's sample data).

Each file is a random crop (40-100% of the area) of one of scikit-image's colour photographs, resized to
500x375 (or 375x500, one in five), randomly mirrored, saved as a q90 baseline JPEG with 4:2:0 chroma:
about ImageNet's typical size and encoding, so decoding costs what it costs on ImageNet. The class of
an image is the photograph it was cut from. scikit-image is a dev/bench dependency only; it is imported
here, never by the ``minwa`` package's library code.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_bytes

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SIZE = (500, 375)  # width, height


def load_photos() -> dict[str, np.ndarray]:
    try:
        import skimage.data  # scikit-image: a dev dependency, for the photographs only
    except ImportError:
        raise MinwaError("making the benchmark corpus needs scikit-image (pip install 'minwa[dev]')") from None
    return {name: getattr(skimage.data, name)()[:, :, :3] for name in PHOTOS}


def corpus_image(photo: np.ndarray, rng: np.random.Generator, quality: int = 90) -> bytes:
    """One 500x375 (or 375x500) q90 JPEG cut from ``photo``."""
    from PIL import Image

    h, w = photo.shape[:2]
    portrait = rng.random() < 0.2
    aspect = (SIZE[1] / SIZE[0]) if not portrait else (SIZE[0] / SIZE[1])  # height / width
    area = rng.uniform(0.4, 1.0) * h * w
    cw = int(min(w, np.sqrt(area / aspect)))
    ch = int(min(h, cw * aspect))
    cw = int(ch / aspect)
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    img = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw])
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = img.resize(SIZE[::-1] if portrait else SIZE, Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def make_corpus(out, n: int, seed: int = 0, quality: int = 90) -> Path:
    """Write ``n`` JPEGs as an ImageFolder tree ``out/<photo>/<i>.jpg`` (skipped when already complete)."""
    out = Path(out)
    marker = out / f".corpus-{n}-{seed}-{quality}"
    if marker.exists():
        return out
    photos = load_photos()
    names = list(photos)
    rng = np.random.default_rng(seed)
    for i in range(n):
        name = names[i % len(names)]
        atomic_write_bytes(out / name / f"{i:07d}.jpg", corpus_image(photos[name], rng, quality))
    marker.write_text("complete\n")
    return out
