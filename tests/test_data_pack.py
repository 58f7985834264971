"""Packing: round trips, odd inputs and their exact rejection reasons, resumable interrupted packs,
verify catching damage, unsafe tar member names, and shards read by the webdataset package."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import kill_pack_after, odd_folder, photo, photo_folder, small_idx

from minwa.data import ShardDataset, open_dataset, pack, verify
from minwa.data import decode as dec
from minwa.data.shards import TarShardWriter, read_manifest
from minwa.errors import MinwaError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fashion_small(tmp_path_factory, request):
    """600 real Fashion-MNIST training images as an IDX folder (synthetic 28x28 ones where absent)."""
    from conftest import FASHION, fashion_available

    folder = tmp_path_factory.mktemp("fm")
    images, labels = small_idx(folder, n=600, real=FASHION if fashion_available() else None)
    return folder, images, labels


@pytest.fixture(scope="module")
def fashion_shards(tmp_path_factory, fashion_small):
    out = tmp_path_factory.mktemp("fm_shards") / "shards"
    manifest = pack(fashion_small[0], out, shard_size=256, workers=2, progress=False)
    return out, manifest


def test_fashion_round_trip_is_lossless(fashion_small, fashion_shards):
    _, images, labels = fashion_small
    out, m = fashion_shards
    assert m["num_samples"] == 600 and m["rejected"] == [] and m["channels"] == 1
    assert [s["num_samples"] for s in m["shards"]] == [256, 256, 88]
    assert m["image_size"] == [28, 28] and sum(m["class_counts"]) == 600
    assert m["settings"] == {"max_side": 512, "quality": 90, "shard_size": 256, "seed": 0}
    ds = open_dataset(out)
    assert isinstance(ds, ShardDataset) and ds.classes == m["classes"] and ds.channels == 1
    src = ds.index["source"]
    assert sorted(src.tolist()) == list(range(600))  # every input exactly once
    assert src.tolist() != list(range(600))  # and shuffled across shards
    for i in range(len(ds)):
        assert np.array_equal(ds.image(i)[:, :, 0], images[src[i]])
    assert np.array_equal(ds.labels, labels[src])
    assert verify(out) == []
    with tarfile.open(out / "shard-00000.tar") as tf:
        names = tf.getnames()
    assert names[:2] == [f"{ds.index['key'][0]:09d}.png", f"{ds.index['key'][0]:09d}.cls"]


def test_shards_are_identical_for_any_worker_count(tmp_path, fashion_small, fashion_shards):
    m1 = pack(fashion_small[0], tmp_path / "w1", shard_size=256, workers=1, progress=False)
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in fashion_shards[1]["shards"]]
    m2 = pack(fashion_small[0], tmp_path / "s7", shard_size=256, workers=1, seed=7, progress=False)
    assert [s["sha256"] for s in m2["shards"]] != [s["sha256"] for s in m1["shards"]]


def test_odd_inputs_packed_or_rejected_with_exact_reasons(tmp_path):
    expected = odd_folder(tmp_path / "odd")
    m = pack(tmp_path / "odd", tmp_path / "out", max_side=512, shard_size=5, workers=2, progress=False)
    root = tmp_path / "odd"
    got = {str(Path(r["path"]).relative_to(root)): r["reason"] for r in m["rejected"]}
    assert got == {k: v for k, v in expected.items() if v is not None}
    packed = [k for k, v in expected.items() if v is None]
    assert m["num_samples"] == len(packed) and m["source"]["num_inputs"] == len(expected)
    assert verify(tmp_path / "out", deep=True) == []

    src, ds = open_dataset(root), open_dataset(tmp_path / "out")
    rel = [str(f.relative_to(root)) for f in src.files]
    by_name = {rel[s]: i for i, s in enumerate(ds.index["source"].tolist())}
    assert set(by_name) == set(packed)

    def stored(name):
        return ds.encoded(by_name[name])

    # kept byte for byte: plain JPEGs (the one without an end marker gets it added), grayscale too
    original = {k: (root / k).read_bytes() for k in packed}
    for name in ("beta ü/plain.jpg", "beta ü/ünïcødé 名前.jpg", "alpha/gray.jpg"):
        assert stored(name) == original[name]
    assert stored("beta ü/no_eoi.jpg") == original["beta ü/no_eoi.jpg"] + b"\xff\xd9"
    # re-encoded as JPEG: CMYK, PNG named .JPEG, RGBA, 16-bit, EXIF-rotated, oversized
    for name in ("alpha/cmyk photo.jpg", "alpha/png_named.JPEG", "alpha/rgba.png", "alpha/sixteen.png",
                 "alpha/exif_rotated.jpg", "alpha/huge.jpg", "alpha/big.png", "alpha/tiny.png"):
        assert dec.sniff(stored(name)) == "jpeg", name
    # every packed image decodes to what its source decodes to (exactly when kept, closely when re-encoded)
    for name in packed:
        a, b = ds.image(by_name[name]), src.image(rel.index(name))
        assert a.shape[2] == 3 and b.shape[2] == 3
        if min(b.shape[:2]) > 512:  # shrunk to the cap: compare at the packed size
            assert min(a.shape[:2]) == 512 and abs(a.shape[1] / a.shape[0] - b.shape[1] / b.shape[0]) < 0.01
            b = dec.resize_box(b, (0, 0, b.shape[1], b.shape[0]), a.shape[0], a.shape[1])
        assert a.shape == b.shape, name
        diff = np.abs(a.astype(int) - b.astype(int)).mean()
        assert diff == 0 if stored(name) == original[name] else diff < 4, (name, diff)
    assert ds.image(by_name["alpha/exif_rotated.jpg"]).shape == (451, 300, 3)
    assert ds.image(by_name["alpha/huge.jpg"]).shape == (512, 768, 3)
    assert ds.image(by_name["alpha/tiny.png"]).shape == (1, 1, 3)
    assert tuple(ds.image(by_name["alpha/tiny.png"])[0, 0]) == pytest.approx((200, 10, 30), abs=12)
    assert ds.classes == ["alpha", "beta ü"]


def test_pack_cli_summary_and_exit_status(tmp_path):
    from minwa.commands import pack as pack_cmd

    photo_folder(tmp_path / "good", per_class=1)
    odd = tmp_path / "odd"
    (odd / "c").mkdir(parents=True)
    (odd / "c" / "empty.jpg").write_bytes(b"")
    (odd / "c" / "ok.jpg").write_bytes(next((tmp_path / "good").rglob("*.jpg")).read_bytes())
    parser = __import__("argparse").ArgumentParser()
    pack_cmd.add_arguments(parser)
    assert pack_cmd.run(parser.parse_args([str(tmp_path / "good"), str(tmp_path / "o1"), "--quiet"])) == 0
    assert pack_cmd.run(parser.parse_args([str(odd), str(tmp_path / "o2"), "--quiet"])) == 1
    with pytest.raises(MinwaError, match="data not found"):
        pack_cmd.run(parser.parse_args([str(tmp_path / "nowhere"), str(tmp_path / "o3"), "--quiet"]))


def _kill_mid_pack(src: Path, out: Path) -> None:
    """Start a pack in a subprocess (slowed down per image), SIGKILL it after a few shards."""
    call = f"from minwa.data import pack; pack({str(src)!r}, {str(out)!r}, shard_size=40, workers=1, progress=False)"
    kill_pack_after(call, out, 3, ROOT)


def test_interrupted_pack_is_refused_then_finished_by_a_rerun(tmp_path, fashion_small):
    out = tmp_path / "out"
    _kill_mid_pack(fashion_small[0], out)
    assert not (out / "manifest.json").exists()
    done = sorted(out.glob("shard-*.json"))
    assert 3 <= len(done) < 15
    assert "pack did not finish" in verify(out)[0]
    with pytest.raises(MinwaError, match="did not finish"):
        open_dataset(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar") if p.with_suffix(".json").exists()}
    m = pack(fashion_small[0], out, shard_size=40, workers=2, progress=False)
    assert verify(out) == [] and m["num_samples"] == 600 and len(m["shards"]) == 15
    kept = {p: out.joinpath(p).stat().st_mtime_ns for p in before}
    assert kept == before  # finished shards were kept, not rewritten
    assert not list(out.glob(".*.tmp"))
    fresh = pack(fashion_small[0], tmp_path / "fresh", shard_size=40, workers=1, progress=False)
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in fresh["shards"]]


def _rewrite_manifest_checksums(out: Path):
    m = json.loads((out / "manifest.json").read_text())
    for s in m["shards"]:
        s["bytes"] = (out / s["name"]).stat().st_size
        s["sha256"] = hashlib.sha256((out / s["name"]).read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(m))


def test_verify_catches_damage(tmp_path, fashion_small):
    from minwa.commands import verify as verify_cmd

    out = tmp_path / "out"
    pack(fashion_small[0], out, shard_size=256, workers=1, progress=False)
    tar = out / "shard-00001.tar"
    data = bytearray(tar.read_bytes())
    data[5000] ^= 0xFF
    tar.write_bytes(bytes(data))
    assert verify(out) == ["shard-00001.tar: checksum mismatch (the file changed after packing)"]
    args = type("A", (), {"folder": str(out), "deep": False})
    assert verify_cmd.run(args) == 1
    tar.write_bytes(bytes(data[:-4096]))
    assert verify(out)[0].startswith("shard-00001.tar: ") and "the manifest says" in verify(out)[0]
    (out / "shard-00002.idx").write_bytes(b"junk")
    assert any(p.startswith("shard index") or p.startswith("shard-00002.idx") for p in verify(out))
    (out / "shard-00000.tar").unlink()
    assert "shard-00000.tar: missing" in verify(out)
    # a label changed in the index (with the index checksum updated) no longer matches the .cls member
    out2 = tmp_path / "out2"
    pack(fashion_small[0], out2, shard_size=256, workers=1, progress=False)
    idx = np.load(out2 / "shard-00000.idx")
    idx["label"][0] = (idx["label"][0] + 1) % 10
    from minwa.data.index import index_bytes

    (out2 / "shard-00000.idx").write_bytes(index_bytes(idx))
    m = json.loads((out2 / "manifest.json").read_text())
    m["shards"][0]["index_sha256"] = hashlib.sha256((out2 / "shard-00000.idx").read_bytes()).hexdigest()
    (out2 / "manifest.json").write_text(json.dumps(m))
    problems = verify(out2)
    assert len(problems) == 1 and "does not match the index" in problems[0]


def test_unsafe_member_names_are_never_written_or_read(tmp_path, fashion_small):
    out = tmp_path / "deep" / "out"
    pack(fashion_small[0], out, shard_size=600, workers=1, progress=False)
    with pytest.raises(ValueError, match="unsafe"):
        TarShardWriter(io.BytesIO())._member("../evil.jpg", b"x")
    # a hostile tar in place of the shard (checksums updated so that only the names give it away)
    tar = out / "shard-00000.tar"
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as tf:
        for name in ("../evil.jpg", "/tmp/abs_evil.jpg", "sub/dir.jpg", "a/../../up.cls"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"bad"))
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    _rewrite_manifest_checksums(out)
    problems = verify(out)
    for name in ("../evil.jpg", "/tmp/abs_evil.jpg", "sub/dir.jpg", "a/../../up.cls"):
        assert f"shard-00000.tar: unsafe member name {name!r} (would leave the folder)" in problems
    assert "shard-00000.tar: member 'link.jpg' is not a regular file" in problems
    ds = open_dataset(out)  # reading goes through the index only: nothing is extracted anywhere
    with pytest.raises(Exception):
        ds.image(0)
    assert not (tmp_path / "deep" / "evil.jpg").exists() and not Path("/tmp/abs_evil.jpg").exists()
    assert not (tmp_path / "up.cls").exists()
    # a manifest naming files outside the folder is refused
    m = json.loads((out / "manifest.json").read_text())
    m["shards"][0]["name"] = "../shard-00000.tar"
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MinwaError, match="outside its folder"):
        read_manifest(out)


def test_webdataset_reads_the_shards(tmp_path, fashion_small, fashion_shards):
    wds = pytest.importorskip("webdataset")
    out, _ = fashion_shards
    ds = open_dataset(out)
    url = str(out / "shard-00000.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False, empty_check=False).decode("l8").to_tuple("__key__", "png", "cls"))
    assert len(samples) == 256
    for j, (key, img, cls) in enumerate(samples):
        assert key == f"{ds.index['key'][j]:09d}" and cls == ds.labels[j]
        assert np.array_equal(img, ds.image(j)[:, :, 0])
    # photos: JPEG members decoded by webdataset (Pillow) match minwa's decode closely
    photo_folder(tmp_path / "p", per_class=2)
    pack(tmp_path / "p", tmp_path / "ps", workers=1, progress=False)
    pds = open_dataset(tmp_path / "ps")
    got = list(wds.WebDataset(str(tmp_path / "ps" / "shard-00000.tar"), shardshuffle=False,
                              empty_check=False).decode("rgb8").to_tuple("jpg", "cls"))
    assert len(got) == len(pds) == 6
    for j, (img, cls) in enumerate(got):
        assert cls == pds.labels[j] and img.shape == pds.image(j).shape
        assert np.abs(img.astype(int) - pds.image(j).astype(int)).mean() < 1.0


def test_pack_refuses_a_foreign_output_folder(tmp_path, fashion_small):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(MinwaError, match="already holds other files"):
        pack(fashion_small[0], tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_phone_heic_photos_are_packed_with_the_plugin_and_named_without(tmp_path, monkeypatch):
    """HEIC (what phones save) goes through pillow-heif when installed; without it, the reason says what to
    install. Other odd formats a photo folder holds (WebP, animated GIF, BMP, 16-bit TIFF, AVIF where Pillow
    has it) are packed."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    cat = photo("chelsea")
    src = tmp_path / "src"
    for cls in ("phone", "other"):
        (src / cls).mkdir(parents=True)
    heif = pillow_heif.from_bytes(mode="RGB", size=(cat.shape[1], cat.shape[0]), data=cat.tobytes())
    heif.save(src / "phone" / "IMG_0001.HEIC", quality=90)
    Image.fromarray(cat).save(src / "other" / "a.webp", quality=90)
    Image.fromarray(cat).save(src / "other" / "b.gif", save_all=True, append_images=[Image.fromarray(cat[::-1])])
    Image.fromarray(cat).save(src / "other" / "c.bmp")
    Image.fromarray(cat[:, :, 0].astype(np.uint16) * 257).save(src / "other" / "d.tif")
    n = 5
    from PIL import features

    if features.check("avif"):
        Image.fromarray(cat).save(src / "other" / "e.avif", quality=90)
        n += 1
    m = pack(src, tmp_path / "with", workers=1, progress=False)
    assert m["rejected"] == [] and m["num_samples"] == n
    ds = open_dataset(tmp_path / "with")
    heic = next(i for i in range(len(ds)) if ds.labels[i] == ds.classes.index("phone"))
    assert np.abs(ds.image(heic).astype(float) - cat).mean() < 4  # a q90 HEIC, then a q90 JPEG
    assert np.abs(dec.read_image(src / "phone" / "IMG_0001.HEIC").astype(float) - cat).mean() < 3

    monkeypatch.setattr(dec, "_heif_registered", [False])  # as if pillow-heif were not installed
    m = pack(src, tmp_path / "without", workers=1, progress=False)
    assert [r["reason"] for r in m["rejected"]] == [dec.NEEDS_PLUGIN] and m["num_samples"] == n - 1
    with pytest.raises(MinwaError, match="pillow-heif"):
        dec.read_image(src / "phone" / "IMG_0001.HEIC")


def test_pack_command_names_empty_class_folders_and_exits_1_on_rejects(tmp_path, capsys):
    from PIL import Image

    from minwa.cli import main

    for cls in ("cats", "dogs", "empty/sub"):
        (tmp_path / "src" / cls).mkdir(parents=True)
    Image.fromarray(photo("chelsea")).save(tmp_path / "src" / "cats" / "a.jpg")
    Image.fromarray(photo("coffee")).save(tmp_path / "src" / "dogs" / "b.png")
    assert main(["pack", "--quiet", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "packed 2 images (3 classes)" in out and "hold no packed image: empty" in out
    (tmp_path / "src" / "dogs" / "notes.txt").write_text("not a photo")
    assert main(["pack", "--quiet", str(tmp_path / "src"), str(tmp_path / "out2")]) == 1
    assert "1 rejected" in capsys.readouterr().out
