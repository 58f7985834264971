"""Data sources: the real Fashion-MNIST IDX files, damaged IDX files, ImageFolder / .lst / split trees."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from data_fixtures import jpeg_bytes, photo, photo_folder, png_bytes, small_idx, write_idx

from minwa.data import IdxDataset, ImageFolderDataset, ListDataset, open_dataset
from minwa.data.idx import FASHION_MNIST_CLASSES
from minwa.errors import MinwaError


def test_real_fashion_mnist_idx(fashion_dir):
    train, test = open_dataset(fashion_dir), open_dataset(fashion_dir, split="test")
    assert isinstance(train, IdxDataset) and train.split == "train" and test.split == "test"
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.classes == FASHION_MNIST_CLASSES == test.classes
    assert train.classes[9] == "Ankle boot" and train.classes[0] == "T-shirt/top"
    assert train.channels == 1 and train.image_size() == (28, 28)
    assert train.labels.dtype == np.int64
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    img = train.image(0)
    assert img.shape == (28, 28, 1) and img.dtype == np.uint8
    assert train.labels[0] == 9 and test.labels[0] == 9  # both files start with an ankle boot
    assert 0 < img.mean() < 255 and img.max() == 255
    # the file path itself opens its split too
    direct = open_dataset(next(fashion_dir.glob("t10k-images-idx3-ubyte*")))
    assert direct.split == "test" and np.array_equal(direct.labels, test.labels)


def test_plain_and_gzip_idx_read_the_same(tmp_path):
    images, labels = small_idx(tmp_path / "gz", n=50)
    write_idx(tmp_path / "plain", images, labels, gz=False)
    a, b = open_dataset(tmp_path / "gz"), open_dataset(tmp_path / "plain")
    assert np.array_equal(a.pixels(), b.pixels()) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.pixels()[:, :, :, 0], images)
    with pytest.raises(MinwaError, match="no t10k-images"):
        open_dataset(tmp_path / "gz", split="test")
    with pytest.raises(MinwaError, match="'train' or 'test'"):
        open_dataset(tmp_path / "gz", split="validation")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "cannot decompress"),  # a cut gzip stream
        (lambda raw: gzip.compress(b"\x12\x34\x56\x78" + gzip.decompress(raw)[4:]), "does not start with an IDX header"),
        (lambda raw: gzip.compress(gzip.decompress(raw)[:-100]), "header says"),
        (lambda raw: b"", "does not start with an IDX header"),
    ],
    ids=["cut-gzip", "bad-magic", "short-data", "empty"],
)
def test_corrupt_idx_is_one_sentence(tmp_path, damage, message):
    small_idx(tmp_path, n=40)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(MinwaError, match=message) as e:
        open_dataset(tmp_path)
    text = str(e.value)
    assert "\n" not in text and "corrupt" in text and str(f) in text


def test_labels_that_do_not_match_the_images(tmp_path):
    images, labels = small_idx(tmp_path / "a", n=40)
    write_idx(tmp_path / "b", images[:30], labels[:30])
    (tmp_path / "a" / "train-labels-idx1-ubyte.gz").write_bytes((tmp_path / "b" / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(MinwaError, match="does not match"):
        open_dataset(tmp_path / "a")


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(MinwaError, match="data not found"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "x.bin").write_bytes(b"123")
    with pytest.raises(MinwaError, match="not a data source"):
        open_dataset(tmp_path / "x.bin")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(jpeg_bytes(photo()[:20, :20].copy()))
    with pytest.raises(MinwaError, match="not a data source"):
        open_dataset(tmp_path / "flat")


def test_imagefolder_and_lst_list_the_same_images(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=2)
    ds = open_dataset(root)
    assert isinstance(ds, ImageFolderDataset)
    assert ds.classes == ["astronaut", "chelsea", "coffee"] and ds.channels == 3
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    lines = [f"{i}\t{float(y):.6f}\t{f.relative_to(root)}" for i, (f, y) in enumerate(zip(ds.files, ds.labels))]
    (root / "all.lst").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(ds.classes) + "\n")
    lst = open_dataset(root / "all.lst")
    assert isinstance(lst, ListDataset) and lst.classes == ds.classes
    assert np.array_equal(lst.labels, ds.labels)
    for i in range(len(ds)):
        assert np.array_equal(lst.image(i), ds.image(i))
    small = ds.image(0, min_side=64)  # DCT-domain downscale keeps the shorter side >= 64
    assert min(small.shape[:2]) >= 64 and min(small.shape[:2]) < min(ds.image(0).shape[:2])
    from minwa.data import pack

    m = pack(root / "all.lst", tmp_path / "from_lst", workers=1, progress=False)
    assert m["num_samples"] == 6 and m["classes"] == ds.classes and m["source"]["kind"] == "lst"
    (root / "bad.lst").write_text("0\tcat\tx.jpg\n")
    with pytest.raises(MinwaError, match="line 1"):
        open_dataset(root / "bad.lst")


def test_split_tree_picks_the_split(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        photo_folder(tmp_path / split, per_class=n)
    assert len(open_dataset(tmp_path)) == 6  # train by default
    assert len(open_dataset(tmp_path, split="val")) == 3
    with pytest.raises(MinwaError, match="no 'test' folder"):
        open_dataset(tmp_path, split="test")


def test_source_decoding_of_odd_files(tmp_path):
    from data_fixtures import exif_rotated_jpeg
    from PIL import Image

    chelsea = photo("chelsea")  # 300 x 451
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "rot.jpg").write_bytes(exif_rotated_jpeg(chelsea, 6))
    ramp = (np.arange(40 * 50, dtype=np.uint32).reshape(40, 50) * 30).astype(np.uint16)
    import io

    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    (tmp_path / "c" / "s16.png").write_bytes(buf.getvalue())
    (tmp_path / "c" / "ga.png").write_bytes(png_bytes(np.dstack([chelsea[:, :, 0], chelsea[:, :, 0]]), "LA"))
    ds = open_dataset(tmp_path)
    names = [f.name for f in ds.files]
    ga, rot, s16 = (ds.image(names.index(n)) for n in ("ga.png", "rot.jpg", "s16.png"))
    assert rot.shape == (451, 300, 3)  # orientation 6: rotated a quarter turn
    assert s16.shape == (40, 50, 3) and np.array_equal(s16[:, :, 0], (ramp >> 8).astype(np.uint8))
    assert ga.shape == (300, 451, 3) and np.array_equal(ga[:, :, 1], chelsea[:, :, 0])
