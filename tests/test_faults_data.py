"""Exact under faults, the data stage (issue 14): shards damaged after packing, damaged indices, labels
changed in an index, shards re-packed under a running reader. Real data (photographs, Fashion-MNIST),
damaged byte by byte, through ``minwa train/eval/verify`` and the loader API."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import photo_folder, small_idx

from minwa.cli import main
from minwa.data import DataConfig, build_loader, open_dataset, pack, verify
from minwa.data import decode as dec
from minwa.data import order as ordering
from minwa.data.index import INDEX_DTYPES, index_bytes, parse_index
from minwa.data.jpeg_cache import JpegCache
from minwa.data.shards import member_key
from minwa.errors import MinwaError

TINY = ["--recipe", "fashion", "--epochs", "1", "--set", "data.val=", "--set", "data.val_fraction=0", "--set", "eval_every=0", "--set", "runtime.precision=fp32",
        "--set", "model.kwargs={\"widths\": [8, 16]}", "--set", "optim.ema=0"]  # fmt: skip
PHOTO = [*TINY, "--set", "data.scale=32", "--set", "data.batch_size=6", "--set", "augment.preset=none",
         "--set", "data.square=centre"]  # the cache and the stream hand out the same centre squares


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """18 real photographs (3 classes, 200-500 px JPEGs) packed into 4 shards of 5."""
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root / "src", per_class=6)
    pack(root / "src", root / "shards", shard_size=5, workers=1, progress=False)
    return root / "shards"


@pytest.fixture(scope="module")
def fashion(tmp_path_factory, fashion_dir) -> Path:
    """The first 600 real Fashion-MNIST training images, packed into 3 shards (PNG members)."""
    root = tmp_path_factory.mktemp("fm")
    small_idx(root / "idx", n=600, real=fashion_dir)
    pack(root / "idx", root / "shards", shard_size=256, workers=1, progress=False)
    return root / "shards"


@pytest.fixture(scope="module")
def fashion_ckpt(fashion, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fm_run") / "run"
    assert main(["train", "--quiet", "--data", str(fashion), "--out", str(out), *TINY, "--set", "data.batch_size=64"]) == 0
    return out


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def sample(folder: Path, i: int) -> tuple[Path, int, int, str]:
    """(tar, data offset, size, member key) of sample ``i`` of a packed folder, from its raw index."""
    m = json.loads((folder / "manifest.json").read_text())
    for s in m["shards"]:
        rows = np.load(folder / s["index"])
        if i < len(rows):
            return folder / s["name"], int(rows[i]["offset"]), int(rows[i]["size"]), member_key(int(rows[i]["key"]))
        i -= len(rows)
    raise IndexError(i)


def flip(path: Path, pos: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


def damage_marker(folder: Path, i: int) -> tuple[Path, str]:
    """Flip the byte that starts the JPEG's second marker (FF of APP0/DQT): no decoder recognises it."""
    tar, off, _, key = sample(folder, i)
    flip(tar, off + 2)
    return tar, key


def damage_entropy(folder: Path, i: int) -> tuple[Path, str]:
    """Flip one bit well inside the entropy-coded data: libjpeg-turbo decodes it without a word."""
    tar, off, size, key = sample(folder, i)
    flip(tar, off + int(size * 0.6), 0x10)
    return tar, key


def batches(loader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in b) for b in loader]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()  # a note or train's summary may come first; the error is one last line
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


# ------------------------------------------------------------------------- 1. damaged sample bytes
@pytest.mark.parametrize("cache", ["none", "memory"])
def test_a_flipped_marker_byte_stops_training_with_one_sentence(photos, tmp_path, capsys, cache):
    shards = copy(photos, tmp_path)
    tar, key = damage_marker(shards, 7)
    code = main(["train", "--quiet", "--data", str(shards), "--out", str(tmp_path / "run"), *PHOTO,
                 "--set", f"data.cache={cache}", "--set", "data.workers=2"])
    assert code == 2
    err = one_error_line(capsys)
    assert err == f"error: shard {tar} sample {key} is damaged (crc mismatch); run `minwa verify {shards} --deep`"


def test_a_flipped_entropy_byte_is_caught_by_the_sample_checksum(photos, tmp_path):
    shards = copy(photos, tmp_path)
    tar, off, size, _ = sample(shards, 3)
    before = dec.decode(tar.read_bytes()[off : off + size])
    tar, key = damage_entropy(shards, 3)
    after = dec.decode(tar.read_bytes()[off : off + size])  # decodes silently, to other pixels
    assert after.shape == before.shape and not np.array_equal(after, before)
    ds = open_dataset(shards)
    for cfg in (DataConfig(batch_size=6, scale=32, cache="none", workers=0),
                DataConfig(batch_size=6, scale=32, cache="none", workers=2),
                DataConfig(batch_size=6, scale=32, cache="memory", square="centre")):  # fmt: skip
        with pytest.raises(MinwaError, match=rf"^shard {tar} sample {key} is damaged \(crc mismatch\)"):
            batches(build_loader(cfg, ds, train=True))
    with pytest.raises(MinwaError, match="crc mismatch"):
        ds.image(3)


def test_eval_on_a_damaged_sample_is_one_sentence(photos, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(photos), "--out", str(run), *PHOTO, "--set", "data.workers=0"]) == 0
    shards = copy(photos, tmp_path)
    tar, key = damage_entropy(shards, 11)
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--data", str(shards)]) == 2
    assert f"shard {tar} sample {key} is damaged (crc mismatch)" in one_error_line(capsys)


def _expected(ds, cfg: DataConfig, bad: set[int], epoch: int) -> list[np.ndarray]:
    """The skip rule written out: a damaged sample's place goes to the next good one of its global batch."""
    order = ordering.epoch_order(len(ds), cfg.seed, epoch, True)
    out = []
    for b in range(ordering.num_batches(len(ds), cfg.batch_size, True)):
        gb = ordering.global_batch(order, b, cfg.batch_size)
        good = [int(i) for i in gb if int(i) not in bad]
        sub = [i if i not in bad else next(int(gb[q]) for q in [*range(p + 1, len(gb)), *range(p)] if int(gb[q]) not in bad)
               for p, i in enumerate(gb.tolist())]
        assert set(sub) <= set(good)
        out.append(np.asarray(sub))
    return out


def test_skip_replaces_a_damaged_sample_by_the_next_good_one_of_its_global_batch(photos, tmp_path):
    shards = copy(photos, tmp_path)
    _, key_a = damage_marker(shards, 2)
    _, key_b = damage_entropy(shards, 13)
    ds = open_dataset(shards)
    cfg = DataConfig(batch_size=6, scale=32, seed=3, on_bad_sample="skip", square="centre")
    runs = {}
    for name, c in {"workers=0": dataclasses.replace(cfg, cache="none", workers=0),
                    "workers=2": dataclasses.replace(cfg, cache="none", workers=2),
                    "cache": dataclasses.replace(cfg, cache="memory")}.items():  # fmt: skip
        loader = build_loader(c, ds, train=True)
        got = []
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            got.append(batches(loader))
        runs[name] = (got, loader.bad_samples())
    ref, reports = runs["cache"][0], {k: v[1] for k, v in runs.items()}
    for name, (got, _) in runs.items():  # bit-identical whatever the path or the worker count
        assert all(torch.equal(x, y) for e, f in zip(got, ref) for p, q in zip(e, f) for x, y in zip(p, q)), name
    clean = build_loader(dataclasses.replace(cfg, cache="memory", on_bad_sample="fail"), open_dataset(photos), train=True)
    for epoch, got in enumerate(ref):
        clean.set_epoch(epoch)
        want = batches(clean)
        for (images, labels, indices), sub, (w_images, _, w_indices) in zip(got, _expected(ds, cfg, {2, 13}, epoch), want):
            assert images.shape == (6, 3, 32, 32) and indices.tolist() == sub.tolist()
            assert labels.tolist() == ds.labels[sub].tolist()
            for j, i in enumerate(sub.tolist()):  # every image is its index's undamaged image
                assert torch.equal(images[j], w_images[w_indices.tolist().index(i)])
    for name, report in reports.items():
        assert [(r["index"], r["key"], r["reason"], r["skipped"]) for r in report] == \
            [(2, key_a, "crc mismatch", 2), (13, key_b, "crc mismatch", 2)], name  # once per epoch
        assert all(r["shard"].endswith(".tar") for r in report)
    # two ranks together hand out exactly the one rank's global batches
    parts = [batches(build_loader(dataclasses.replace(cfg, cache="none", workers=1), ds, train=True, rank=r, world_size=2))
             for r in range(2)]
    for (a_img, a_lab, a_idx), (b_img, b_lab, b_idx), (img, lab, idx) in zip(*parts, ref[0]):
        assert torch.equal(torch.cat([a_img, b_img]), img) and torch.equal(torch.cat([a_idx, b_idx]), idx)


def test_skip_trains_to_the_end(photos, tmp_path, capsys):
    shards = copy(photos, tmp_path)
    keys = sorted([damage_marker(shards, 5)[1], damage_entropy(shards, 9)[1]])
    for cache in ("none", "memory"):
        assert main(["train", "--quiet", "--data", str(shards), "--out", str(tmp_path / cache), *PHOTO,
                     "--set", f"data.cache={cache}", "--set", "data.on_bad_sample=skip"]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert "samples are damaged (data.on_bad_sample=skip" in err and "Traceback" not in err
        records = [json.loads(line) for line in (tmp_path / cache / "metrics.jsonl").read_text().splitlines()]
        bad = [r for r in records if r["kind"] == "bad_samples"]
        assert len(bad) == 1 and sorted(r["key"] for r in bad[0]["samples"]) == keys
        assert bad[0]["skipped"] == sum(r["skipped"] for r in bad[0]["samples"]) >= 2
    assert main(["train", "--quiet", "--data", str(shards), "--out", str(tmp_path / "x"), *PHOTO,
                 "--set", "data.on_bad_sample=drop"]) == 2
    assert "data.on_bad_sample must be fail or skip" in one_error_line(capsys)


def test_a_batch_with_only_damaged_samples_is_one_sentence(photos, tmp_path):
    shards = copy(photos, tmp_path)
    for i in range(len(open_dataset(shards))):
        damage_entropy(shards, i)
    for cache in ("none", "memory"):
        loader = build_loader(DataConfig(batch_size=6, scale=32, cache=cache, workers=0, on_bad_sample="skip", square="centre"),
                              open_dataset(shards), train=True)
        with pytest.raises(MinwaError, match=r"every sample of global batch 0 .* is damaged; run `minwa verify"):
            batches(loader)


def test_the_jpeg_device_cache_checks_samples_too(photos, tmp_path):
    """data.cache=jpeg reads every sample's bytes once, checked like the stream's (CPU decoder standing in
    for nvJPEG); skipped samples are left out of its bytes and replaced in batches by the loader's rule."""
    shards = copy(photos, tmp_path)
    tar, key = damage_entropy(shards, 4)
    ds = open_dataset(shards)
    stand_in = lambda datas, c, device: [torch.from_numpy(dec.decode(d.numpy().tobytes(), c)).permute(2, 0, 1) for d in datas]  # noqa: E731
    with pytest.raises(MinwaError, match=rf"^shard {tar} sample {key} is damaged"):
        JpegCache(ds, (32, 32), "cpu", decode=stand_in)
    found: list[dict] = []
    cache = JpegCache(ds, (32, 32), "cpu", decode=stand_in, on_bad=found)
    assert [(r["index"], r["key"]) for r in found] == [(4, key)] and not cache.is_jpeg[4]
    assert cache.batch(np.array([0, 1, 5])).shape == (3, 3, 32, 32)


def test_an_unexpected_worker_failure_is_one_sentence(photos, monkeypatch):
    """A failure in a worker process that is not a user's error still reaches the trainer as one sentence
    (the traceback is one ``data.workers=0`` run away)."""
    ds = open_dataset(photos)
    monkeypatch.setattr(type(ds), "image", lambda self, i, min_side=None: {}["no such thing"])
    with pytest.raises(MinwaError, match=r"^a data loader worker failed on batch 0 \(KeyError: 'no such thing'\); "):
        batches(build_loader(DataConfig(batch_size=6, scale=32, cache="none", workers=2), ds, train=False))


# ------------------------------------------------------------------------------- 2. damaged indices
def test_the_index_is_written_and_read_as_the_npy_file_numpy_writes(photos):
    """minwa writes and parses the .npy header itself; the bytes stay those of ``np.save`` (other tools read
    the indices with numpy), and both index versions parse to the rows written."""
    for version, dtype in INDEX_DTYPES.items():
        rows = np.zeros(7, dtype)
        rows["offset"], rows["label"] = np.arange(7) * 512, np.arange(7) % 3
        buf = io.BytesIO()
        np.save(buf, rows, allow_pickle=False)
        assert index_bytes(rows) == buf.getvalue()
        got, v = parse_index(index_bytes(rows), "x.idx")
        assert v == version and np.array_equal(got, rows)
    assert open_dataset(photos).index.dtype == INDEX_DTYPES[2]


INDEX_DAMAGE = ["closing brace", "shape digit", "descr", "magic", "header length", "truncated rows", "extra bytes"]


def damage_index(raw: bytes, what: str) -> bytes:
    brace = raw.index(b"}")
    return {
        "closing brace": lambda: raw[:brace] + bytes([raw[brace] ^ 1]) + raw[brace + 1 :],  # np.load: TokenError
        "shape digit": lambda: raw.replace(b"'shape': (", b"'shape': (9"),
        "descr": lambda: raw.replace(b"'<i8'", b"'>i8'", 1),
        "magic": lambda: b"\x93NUMPX" + raw[6:],
        "header length": lambda: raw[:8] + b"\xff\xff" + raw[10:],
        "truncated rows": lambda: raw[:-7],
        "extra bytes": lambda: raw + b"\0" * 3,
    }[what]()


@pytest.mark.parametrize("what", INDEX_DAMAGE)
def test_a_damaged_index_is_one_sentence_everywhere(photos, tmp_path, capsys, what):
    shards = copy(photos, tmp_path)
    idx = shards / "shard-00001.idx"
    idx.write_bytes(damage_index(idx.read_bytes(), what))
    problems = verify(shards)
    assert any(p.startswith(f"shard index {idx} is damaged") for p in problems), problems
    assert main(["verify", str(shards)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and f"shard index {idx} is damaged" in out.out
    assert main(["train", "--quiet", "--data", str(shards), "--out", str(tmp_path / "run"), *PHOTO]) == 2
    assert f"shard index {idx} is damaged" in one_error_line(capsys)


# ------------------------------------------------------------------------- 3. a label changed in an index
def test_a_changed_label_in_an_index_stops_train_and_eval(fashion, fashion_ckpt, tmp_path, capsys):
    shards = copy(fashion, tmp_path)
    idx = shards / "shard-00001.idx"
    rows = np.load(idx)
    rows["label"][17] = (rows["label"][17] + 3) % 10  # still one of the 10 classes
    idx.write_bytes(index_bytes(rows))
    want = f"shard index {idx} does not match its checksum in {shards / 'manifest.json'} (it changed after packing); run `minwa verify {shards}`"
    capsys.readouterr()
    assert main(["train", "--quiet", "--data", str(shards), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert one_error_line(capsys) == f"error: {want}"
    assert main(["eval", "--ckpt", str(fashion_ckpt), "--data", str(shards)]) == 2
    assert one_error_line(capsys) == f"error: {want}"
    assert any("checksum mismatch" in p for p in verify(shards))


# --------------------------------------------------------------- 4. shards re-packed under a reader
def test_repacking_shards_under_a_streaming_run_stops_it_with_one_sentence(photos, tmp_path):
    shards = copy(photos, tmp_path)
    src = photos.parent / "src"
    ds = open_dataset(shards)
    changed = rf"^the shards in {shards} changed while this run was reading them \(re-packed\?\)"
    # mid-epoch: the workers open shards they had not read yet
    loader = build_loader(DataConfig(batch_size=3, scale=32, cache="none", workers=2, prefetch=1), ds, train=False)
    it = iter(loader)
    next(it)
    pack(src, shards, shard_size=5, seed=1, workers=1, progress=False)  # the same files, other contents
    with pytest.raises(MinwaError, match=changed):
        list(it)
    # the next epoch of a loader that finished its epoch before the re-pack
    ds = open_dataset(shards)
    loader = build_loader(DataConfig(batch_size=6, scale=32, cache="none", workers=0), ds, train=True)
    batches(loader)
    pack(src, shards, shard_size=4, seed=2, workers=1, progress=False)
    loader.set_epoch(1)
    with pytest.raises(MinwaError, match=changed):
        batches(loader)


def test_a_shard_truncated_in_place_under_mapped_workers_is_one_sentence(photos, tmp_path):
    shards = copy(photos, tmp_path)
    ds = open_dataset(shards)
    for i in range(0, len(ds), 5):  # map every shard here: the forked workers inherit the maps
        ds.encoded(i)
    loader = build_loader(DataConfig(batch_size=3, scale=32, cache="none", workers=2, prefetch=1), ds, train=False)
    it = iter(loader)
    next(it)
    for tar in shards.glob("*.tar"):
        os.truncate(tar, 1024)  # in place, not a re-pack's rename: reading the maps beyond it is SIGBUS
    with pytest.raises(MinwaError, match=rf"^a data loader worker was killed \(SIGBUS\) reading {shards}: a shard file shrank"):
        list(it)


# ------------------------------------------------------------------------- old shards, verify
def _downgrade(folder: Path) -> None:
    """Turn a packed folder into what minwa wrote before per-sample checksums (index version 1)."""
    m = json.loads((folder / "manifest.json").read_text())
    m["version"] = 1
    for s in m["shards"]:
        rows = np.load(folder / s["index"])
        old = np.zeros(len(rows), INDEX_DTYPES[1])
        for name in old.dtype.names:
            old[name] = rows[name]
        raw = index_bytes(old)
        (folder / s["index"]).write_bytes(raw)
        s["index_sha256"] = hashlib.sha256(raw).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))


def test_shards_packed_before_checksums_still_load(photos, tmp_path):
    shards = copy(photos, tmp_path)
    _downgrade(shards)
    old, new = open_dataset(shards), open_dataset(photos)
    assert old.index.dtype == INDEX_DTYPES[1] and verify(shards) == []
    assert all(np.array_equal(old.image(i), new.image(i)) for i in range(len(old)))
    tar, key = damage_marker(shards, 6)  # without a checksum, a sample that does not decode is still named
    with pytest.raises(MinwaError, match=rf"^shard {tar} sample {key} is damaged \(not an image\); run `minwa verify"):
        batches(build_loader(DataConfig(batch_size=6, scale=32, cache="none", workers=2), open_dataset(shards), train=True))


def test_verify_names_each_damaged_sample(photos, tmp_path, capsys):
    shards = copy(photos, tmp_path)
    tar, key = damage_entropy(shards, 8)
    assert verify(shards) == [f"{tar.name}: checksum mismatch (the file changed after packing)",
                              f"{tar.name}: sample {key} is damaged (crc mismatch)"]
