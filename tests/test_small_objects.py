"""`minwa make-dataset small-objects`: real Fashion-MNIST items pasted small on real photographs, on a tiny
set (60 images of 128 px) from two wallpaper folders so that each test takes seconds."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from minwa.cli import main
from minwa.data import open_dataset, pack
from minwa.errors import MinwaError
from minwa.synth.small_objects import OBJECT_SIDE, make_small_objects

PHOTOS = [Path("/usr/share/backgrounds/mate/nature"), Path("/usr/share/backgrounds/sway")]
TINY = dict(train=40, test=20, seed=3, short_side=128, progress=False, backgrounds=PHOTOS)


def _make(out: Path, fashion: Path, workers: int):
    if not all(p.is_dir() for p in PHOTOS):
        pytest.skip("wallpaper photographs not installed (apt-get install mate-backgrounds sway-backgrounds; "
                    "make test does it as root)")
    return make_small_objects(out, workers=workers, fashion=fashion, **TINY)


@pytest.fixture(scope="module")
def made(fashion_dir, tmp_path_factory):
    return _make(tmp_path_factory.mktemp("small") / "set", fashion_dir, workers=2)


def _boxes(made) -> list[dict]:
    with open(made.boxes, newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_with_one_or_two_workers(made, fashion_dir, tmp_path):
    again = _make(tmp_path / "again", fashion_dir, workers=1)
    a, b = _files(made.out), _files(again.out)
    assert len(a) == 60 + 2 and a == b
    other = make_small_objects(tmp_path / "seed4", workers=1, fashion=fashion_dir, **{**TINY, "seed": 4})
    assert _files(other.out)["train/Bag/train000008.jpg"] != a["train/Bag/train000008.jpg"]


def test_train_and_test_never_share_a_background(made):
    manifest = json.loads(made.manifest.read_text())
    train, test = set(manifest["sources"]["train"]), set(manifest["sources"]["test"])
    assert train and test and not train & test
    used = {s: {r["background"] for r in _boxes(made) if r["split"] == s} for s in ("train", "test")}
    assert used["train"] <= train and used["test"] <= test
    assert manifest["object_side_fraction"] == list(OBJECT_SIDE) and manifest["counts"] == {"train": 40, "test": 20}


def test_objects_span_8_to_20_percent_of_the_shorter_side_and_lie_in_the_central_square(made):
    for r in _boxes(made):
        w, h, x, y, side = (int(r[k]) for k in ("width", "height", "x", "y", "side"))
        assert OBJECT_SIDE[0] <= side / min(w, h) <= OBJECT_SIDE[1]
        s = min(w, h)  # inside the central square: the test's centre crop always holds the item
        assert (w - s) // 2 <= x and x + side <= (w - s) // 2 + s and (h - s) // 2 <= y and y + side <= (h - s) // 2 + s
        x0, y0, x1, y1 = (int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert x <= x0 < x1 <= x + side and y <= y0 < y1 <= y + side


def test_classes_balanced_and_files_are_jpegs_of_the_shorter_side(made):
    for split, n in made.counts.items():
        per_class = Counter(p.parent.name for p in (made.out / split).glob("*/*.jpg"))
        assert len(per_class) == 10 and set(per_class.values()) == {n // 10}
    aspects = set()
    for r in _boxes(made):
        with Image.open(made.out / r["path"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert min(im.size) == 128 and im.size == (int(r["width"]), int(r["height"]))
            aspects.add(round(max(im.size) / min(im.size), 2) * (1 if im.width >= im.height else -1))
    assert len(aspects) >= 4  # squares, landscapes and portraits of several ratios


def test_minwa_reads_and_packs_it(made, tmp_path):
    test = open_dataset(made.out, split="test")
    assert len(test) == 20 and "T-shirt-top" in test.classes and len(test.classes) == 10
    assert min(test.image(0).shape[:2]) == 128
    manifest = pack(made.train_dir, tmp_path / "shards", workers=1, progress=False)
    assert manifest["num_samples"] == 40


def test_refusals_are_one_sentence(made, fashion_dir, tmp_path, capsys):
    with pytest.raises(MinwaError, match="not empty; choose a new folder or pass --overwrite"):
        make_small_objects(made.out, **TINY)
    assert main(["make-dataset", "small-objects", str(tmp_path / "x"), "--fashion", str(tmp_path)]) == 2
    assert "Fashion-MNIST not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MinwaError, match="no background photographs found"):
        make_small_objects(tmp_path / "y", fashion=fashion_dir, **{**TINY, "backgrounds": [tmp_path / "empty"]})
    assert main(["make-dataset", "small-objects", str(tmp_path / "z"), "--object-side", "0.3", "0.2"]) == 2
    assert "the object side must be fractions 0 < LOW <= HIGH <= 1" in capsys.readouterr().err


def test_object_side_option_sets_the_item_size(fashion_dir, tmp_path):
    if not all(p.is_dir() for p in PHOTOS):
        pytest.skip("wallpaper photographs not installed (apt-get install mate-backgrounds sway-backgrounds)")
    big = make_small_objects(tmp_path / "big", fashion=fashion_dir, workers=1, object_side=(0.4, 0.5),
                             **{**TINY, "train": 10, "test": 10})
    sides = [int(r["side"]) / min(int(r["width"]), int(r["height"])) for r in _boxes(big)]
    assert len(sides) == 20 and all(0.4 <= s <= 0.5 for s in sides)
    assert json.loads(big.manifest.read_text())["object_side_fraction"] == [0.4, 0.5]
