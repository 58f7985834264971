"""ImageNet-1k's classes, shipped as package data (``imagenet1k.txt``, from timm, Apache-2.0: see its header).

Every ImageNet-1k classifier (torchvision's, timm's) orders its 1,000 outputs by sorted WordNet id, so a
1,000-way state dict gets these names. The class names are the WordNet ids (``n01440764``), as timm's hub
configs name them and as ImageNet's own folders are named, so minwa matches them to an ImageNet folder by
name; the readable lemmas (``tench, Tinca tinca``) go beside them as ``class_descriptions``.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).with_name("imagenet1k.txt")


def imagenet1k() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(WordNet ids, lemmas), 1,000 each, in the classifiers' order."""
    rows = [line.rstrip("\n").split("\t", 1) for line in DATA.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    return tuple(r[0] for r in rows), tuple(r[1] for r in rows)
