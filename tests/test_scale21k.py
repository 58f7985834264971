"""ImageNet-21k's size on one machine: the synthetic pack is a real pack (``make-dataset
imagenet21k-synthetic``), ``bench scale21k`` measures it end to end, and what grew worse than the data
(two copies of every index while opening, a copy of every epoch's permutation) stays fixed."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc

import numpy as np
import pytest
import simplejpeg

from minwa.benchmarks.scale21k import evict
from minwa.cli import main
from minwa.data import DataConfig, ShardDataset, build_loader, verify
from minwa.data import shards as shards_module
from minwa.data.index import INDEX_DTYPES, index_bytes
from minwa.data.order import epoch_permutation, num_batches, rank_batch, rank_epoch
from minwa.errors import MinwaError
from minwa.synth import imagenet21k
from minwa.synth.imagenet21k import TILE, class_names, make_imagenet21k
from minwa.wordnet.database import WordNet, WordNetMissing


@pytest.fixture(scope="module")
def pack21k(tmp_path_factory):
    """3,000 samples in 50 classes, twelve shards of 250."""
    out = tmp_path_factory.mktemp("s21k") / "pack"
    make_imagenet21k(out, samples=3000, classes=50, shard_size=250, seed=3, workers=1, progress=False)
    return out


def test_synthetic_pack_is_a_real_pack(pack21k):
    """verify (deep) passes, ShardDataset opens it, labels are the seed's, the loader decodes tiny JPEGs."""
    assert verify(pack21k, deep=True) == []
    ds = ShardDataset(pack21k)
    m = json.loads((pack21k / "manifest.json").read_text())
    assert len(ds) == m["num_samples"] == 3000 and len(ds.tars) == 12 and ds.image_size() == (TILE, TILE)
    want = np.concatenate([np.random.default_rng([3, k]).integers(0, 50, 250) for k in range(12)])
    assert np.array_equal(ds.labels, want) and sum(m["class_counts"]) == 3000
    loader = build_loader(DataConfig(cache="none", workers=0, batch_size=64), ds, train=False)
    batch = next(iter(loader))
    assert tuple(batch.images.shape) == (64, 3, TILE, TILE)
    assert np.array_equal(batch.labels.numpy(), want[:64])
    first = simplejpeg.decode_jpeg(ds.encoded(0), colorspace="RGB")
    assert np.array_equal(batch.images[0].permute(1, 2, 0).numpy(), first)


def test_synthetic_pack_does_not_depend_on_workers(pack21k, tmp_path):
    make_imagenet21k(tmp_path / "b", samples=3000, classes=50, shard_size=250, seed=3, workers=2, progress=False)
    sha = lambda p: [s["sha256"] for s in json.loads((p / "manifest.json").read_text())["shards"]]  # noqa: E731
    assert sha(tmp_path / "b") == sha(pack21k)


def test_classes_are_wordnet_nouns_where_installed():
    try:
        wordnet = WordNet()
    except WordNetMissing:
        pytest.skip("WordNet (wordnet-base) not installed")
    names = class_names(100)
    assert len(set(names)) == 100 and all(wordnet.synset(w) is not None for w in names)


def test_refuses_a_folder_that_is_not_empty(pack21k):
    with pytest.raises(MinwaError, match="not empty"):
        make_imagenet21k(pack21k, samples=10, classes=2, progress=False)


def test_opening_holds_one_copy_of_the_indices(pack21k, monkeypatch):
    """Every index was read whole and then concatenated: a peak of twice the indices (1.5 GB at 14.2 million
    samples). Now each is copied into one array as it is read: the peak exceeds what is kept by the files
    in flight (one per reading thread: 2 here, 16 by default, 4 MB at 14.2 million), not by all of them."""
    monkeypatch.setattr(shards_module, "OPEN_THREADS", 2)
    tracemalloc.start()
    try:
        ds = ShardDataset(pack21k)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ds.index.nbytes <= kept and peak - kept < ds.index.nbytes / 2, (peak, kept)


def test_epoch_permutation_is_not_copied():
    n = 1_000_000
    tracemalloc.start()
    try:
        order = epoch_permutation(n, 0, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert order.dtype == np.int64 and peak < 1.2 * 8 * n, peak


def test_rank_epoch_is_every_batch_of_rank_batch():
    """The partition of an epoch into ranks, done as one view per rank (the 1,024-rank goal), gives each
    rank exactly what the loader's batch-by-batch slices give it, also when ranks' parts differ in size."""
    order = epoch_permutation(1_003, 5, 2)
    for batch, world in [(40, 4), (37, 5), (12, 1), (10, 3)]:
        for r in range(world):
            part = rank_epoch(order, batch, r, world)
            assert np.shares_memory(part, order)
            want = [rank_batch(order, b, batch, r, world) for b in range(num_batches(len(order), batch, True))]
            assert part.tolist() == [w.tolist() for w in want]
        # the ranks together hold every sample of the full batches once
        whole = np.concatenate([rank_epoch(order, batch, r, world) for r in range(world)], axis=1)
        assert sorted(whole.ravel().tolist()) == sorted(order[: len(whole) * batch].tolist())


def test_indices_of_two_versions_are_one_sentence(pack21k, tmp_path):
    """A pack whose shards mix index versions (an index replaced by an older one) is refused in words."""
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(pack21k, folder)
    old = ShardDataset(folder).index[250:500]
    raw = index_bytes(old[list(INDEX_DTYPES[1].names)].astype(INDEX_DTYPES[1]))
    (folder / "shard-00001.idx").write_bytes(raw)
    m = json.loads((folder / "manifest.json").read_text())
    m["shards"][1]["index_sha256"] = hashlib.sha256(raw).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MinwaError, match="another index version"):
        ShardDataset(folder)
    m["shards"][1]["num_samples"] = -5
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MinwaError, match="impossible number of samples"):
        ShardDataset(folder)


def test_bench_scale21k_quick_writes_every_figure(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["bench", "scale21k", "--quick", "--json", "--set", f"work={work}", "--set", "samples=4000",
                 "--set", "loader_samples=2000", "--set", "batch_size=128"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r == json.loads((work / "results.json").read_text())
    assert r["open"]["samples"] == 4000 and r["open"]["seconds"] > 0 and r["open"]["peak_rss_mb"] > 0
    assert r["order"]["permutation_s"] > 0 and r["order"]["global_batch"] == 1024 * 32
    lo = r["loader"]
    assert lo["samples"] >= 2000 and lo["samples_per_s"] > 0 and lo["startup_s"] > 0 and lo["cpu_us_per_sample"] > 0
    assert len(lo["worker_memory"]) == 2 and all(w["pss_mb"] > 0 for w in lo["worker_memory"])
    assert r["decode"]["decode_224_us"] > 0 and len(r["goals"]) == 4
    assert all(isinstance(g["pass"], bool) for g in r["goals"])


def test_packing_does_not_keep_every_shards_class_counts(tmp_path, monkeypatch):
    """A shard's record counts its samples per class over every class, and a pack kept every record whole
    until the manifest: shards x classes (0.8 GB of the packing process for ImageNet-21k). Now the counts
    are added up as the records arrive (``packing.ShardRecords``, which ``pack`` uses too)."""
    jpegs = imagenet21k.tiny_jpegs(0)  # the photographs decoded before the measurement
    monkeypatch.setattr(imagenet21k, "tiny_jpegs", lambda seed: jpegs)

    def peak(classes: int) -> int:
        tracemalloc.start()
        try:
            make_imagenet21k(tmp_path / str(classes), samples=1600, classes=classes, shard_size=20, workers=1,
                             progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    grown = peak(10_000) - peak(50)
    # every record kept: 80 shards x 10,000 classes x 8 bytes = 6.4 MB more (the rest: names, manifest JSON)
    assert grown < 5e6, grown
    m = json.loads((tmp_path / "10000" / "manifest.json").read_text())
    assert sum(m["class_counts"]) == 1600 and len(m["class_counts"]) == 10_000


def _read_bytes() -> int:
    return int(next(line.split()[1] for line in open("/proc/self/io") if line.startswith("read_bytes")))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="Linux's per-process I/O counters")
def test_a_sample_read_from_disk_reads_its_page_not_megabytes_around_it(pack21k):
    """A shard's pages are mapped for random reads: a page fault used to read read_ahead_kb around it (8 MB on
    the project's machine), so on a pack larger than memory each 512-byte sample read megabytes from disk."""
    ds = ShardDataset(pack21k)
    evict(pack21k, "tar")
    before = _read_bytes()
    for k in range(len(ds.tars)):
        ds.encoded(k * 250 + 100)  # one sample from the middle of every shard
    got = _read_bytes() - before
    if got == 0:
        pytest.skip("the pack is on a filesystem without block I/O (tmpfs)")
    assert got <= len(ds.tars) * 16 * 1024, got  # a page each (and a little), not the 512 KB shards whole
    flags = [line for line in open("/proc/self/smaps") if line.startswith("VmFlags")]
    assert any(" rr " in f + " " for f in flags)
