"""Background photographs for synthetic data: Debian's wallpaper packages and scikit-image's samples.

Pictures that are one picture at several resolutions (plasma's ``contents/images/WxH``, mate's
``_WxH`` names) count once, at their largest; light/dark variants of one wallpaper are one *group*, and
groups, not crops, are what a split divides, so no test background was ever a train background.
"""

from __future__ import annotations

import importlib.util
import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from minwa.data.decode import decode_source

ROOTS = (Path("/usr/share/backgrounds"), Path("/usr/share/wallpapers"))
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# scikit-image's bundled colour photographs (motorcycle_right is motorcycle_left's other eye)
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg", "ihc.png", "retina.jpg")
MIN_SIDE = 256  # smaller files are icons and screenshots, not photographs


@dataclass(frozen=True)
class Picture:
    path: Path
    group: str  # "collection/name": variants of one wallpaper share it
    width: int
    height: int


def _skimage_data() -> Path | None:
    spec = importlib.util.find_spec("skimage")  # located, not imported: scikit-image is optional
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _key(path: Path, root: Path) -> tuple[str, str]:
    """(group, picture) of a wallpaper file: the picture drops the resolution from the name."""
    rel = path.relative_to(root)
    if root.name == "wallpapers":  # plasma: NAME/contents/images[_dark]/WxH.ext
        return f"plasma/{rel.parts[0]}", f"plasma/{rel.parts[0]}/{path.parent.name}"
    collection = "/".join(rel.parts[:-1]) or root.name
    stem = re.sub(r"_\d+x\d+.*$", "", path.stem)
    if collection == "sway":
        return "sway", f"sway/{stem}"  # colour variants of one artwork
    if collection == "gnome":
        return f"gnome/{stem.rsplit('-', 1)[0]}", f"gnome/{stem}"  # NAME-l / NAME-d
    return f"{collection}/{stem}", f"{collection}/{stem}"


def find_pictures(roots=ROOTS, skimage: bool = True) -> list[Picture]:
    """Every background picture installed, one file per picture (its largest), in a fixed order."""
    best: dict[str, Picture] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in SUFFIXES or "screenshot" in path.name or not path.is_file():
                continue
            group, pic = _key(path, root)
            _offer(best, pic, group, path)
    data = _skimage_data() if skimage else None
    for name in SKIMAGE_PHOTOS if data else ():
        if (data / name).is_file():
            _offer(best, f"skimage/{name}", f"skimage/{Path(name).stem}", data / name)
    return [best[k] for k in sorted(best)]


def _offer(best: dict, pic: str, group: str, path: Path) -> None:
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return  # not an image Pillow reads: not a background
    if min(w, h) >= MIN_SIDE and (pic not in best or w * h > best[pic].width * best[pic].height):
        best[pic] = Picture(path, group, w, h)


def split_pictures(pictures: list[Picture], seed: int, test_fraction: float = 0.25):
    """(train, test) pictures: within each collection, a seeded shuffle of its groups gives about
    ``test_fraction`` of them (at least one, where it has two) to test."""
    by_collection: dict[str, list[str]] = {}
    for g in sorted({p.group for p in pictures}):
        by_collection.setdefault(g.split("/")[0], []).append(g)
    rng = random.Random(seed)
    test_groups = set()
    for groups in by_collection.values():
        rng.shuffle(groups)
        if len(groups) >= 2:
            test_groups.update(groups[:max(1, round(len(groups) * test_fraction))])
    return ([p for p in pictures if p.group not in test_groups], [p for p in pictures if p.group in test_groups])


def open_picture(path: Path, min_side: int) -> Image.Image:
    """The picture as RGB, its shorter side brought down to ``min_side`` (JPEGs first in the DCT domain):
    every crop then resizes from at most that many pixels (a 5120 x 2880 source cost 3x more per image)."""
    img = Image.fromarray(decode_source(Path(path).read_bytes(), 3, min_side))
    w, h = img.size
    if min(w, h) > 1.25 * min_side:
        f = min_side / min(w, h)
        img = img.resize((round(w * f), round(h * f)), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img
