"""The loader: order per (seed, epoch), rank partitions, worker-count independence, cache == stream,
exact mid-epoch resume, sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from data_fixtures import photo_folder, small_idx

from minwa.data import DataConfig, build_loader, epoch_permutation, open_dataset, pack
from minwa.data import decode as dec
from minwa.data.order import num_batches, rank_batch, worker_batches
from minwa.errors import MinwaError


@pytest.fixture(scope="module")
def idx_ds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    small_idx(folder, n=1000, seed=3)
    return open_dataset(folder)


@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root / "src", per_class=8)
    pack(root / "src", root / "shards", shard_size=7, workers=1, progress=False)
    return open_dataset(root / "shards")


def _collect(loader):
    return [(b.images.clone(), b.labels.clone(), b.indices.clone()) for b in loader]


def _same(a, b):
    return len(a) == len(b) and all(all(torch.equal(x, y) for x, y in zip(p, q)) for p, q in zip(a, b))


def test_epoch_permutation():
    p = epoch_permutation(1000, seed=0, epoch=0)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(1000))
    assert np.array_equal(p, epoch_permutation(1000, 0, 0))
    assert not np.array_equal(p, epoch_permutation(1000, 0, 1))
    assert not np.array_equal(p, epoch_permutation(1000, 1, 0))
    # workers share out the batches exactly once
    parts = [list(worker_batches(3, 20, w, 4)) for w in range(4)]
    assert sorted(sum(parts, [])) == list(range(3, 20))


@pytest.mark.parametrize("train", [True, False])
def test_ranks_are_disjoint_covering_slices_of_the_same_global_batches(idx_ds, train):
    cfg = DataConfig(batch_size=96, seed=5)
    single = _collect(build_loader(cfg, idx_ds, train=train, epoch=2))
    for world in (2, 4):
        ranks = [_collect(build_loader(cfg, idx_ds, train=train, rank=r, world_size=world, epoch=2)) for r in range(world)]
        assert all(len(r) == len(single) for r in ranks)
        for b, (images, labels, indices) in enumerate(single):
            parts = [r[b][2] for r in ranks]
            assert torch.equal(torch.cat(parts), indices)  # contiguous slices in rank order
            assert len(set(torch.cat(parts).tolist())) == len(indices)  # disjoint
            assert torch.equal(torch.cat([r[b][0] for r in ranks]), images)
            assert torch.equal(torch.cat([r[b][1] for r in ranks]), labels)
    seen = torch.cat([x[2] for x in single])
    if train:  # drop_last: every sample at most once, the remainder dropped
        assert len(single) == 1000 // 96 and len(set(seen.tolist())) == 96 * (1000 // 96)
        assert torch.equal(seen, torch.from_numpy(epoch_permutation(1000, 5, 2)[: 96 * (1000 // 96)]))
    else:  # eval: dataset order, nothing dropped
        assert len(single) == 11 and torch.equal(seen, torch.arange(1000)) and len(single[-1][2]) == 1000 - 960


def test_cache_batches_are_the_dataset_images(idx_ds, monkeypatch):
    monkeypatch.setattr(dec, "decode", lambda *a, **k: pytest.fail("an IDX source must not be decoded"))
    loader = build_loader(DataConfig(batch_size=64), idx_ds, train=True)
    assert loader.mode == "cache" and len(loader) == 15 and loader.image_size == (28, 28)
    for b in loader:
        assert b.images.dtype == torch.uint8 and b.images.shape == (64, 1, 28, 28)
        assert b.labels.dtype == torch.int64 and b.indices.dtype == torch.int64
        idx = b.indices.numpy()
        assert np.array_equal(b.images.permute(0, 2, 3, 1).numpy(), idx_ds.pixels()[idx])
        assert np.array_equal(b.labels.numpy(), idx_ds.labels[idx])


def test_scaled_cache_matches_the_per_image_resize(idx_ds):
    loader = build_loader(DataConfig(batch_size=50, scale=40), idx_ds, train=False)
    b = next(iter(loader))
    assert b.images.shape == (50, 1, 40, 40)
    for j in (0, 17, 49):
        assert np.array_equal(b.images[j].permute(1, 2, 0).numpy(), dec.resize_square(idx_ds.image(j), 40))


@pytest.mark.parametrize("train", [True, False])
def test_stream_and_cache_give_identical_batches_for_any_worker_count(photo_shards, train):
    cfg = DataConfig(batch_size=10, scale=64, seed=1, cache="memory", square="centre")
    cached = build_loader(cfg, photo_shards, train=train)
    assert cached.mode == "cache"
    reference = _collect(cached)
    assert reference[0][0].shape == (10, 3, 64, 64) and len(reference) == (2 if train else 3)
    for workers in (0, 1, 2):
        streamed = build_loader(dataclasses.replace(cfg, cache="none", workers=workers), photo_shards, train=train)
        assert streamed.mode == "stream"
        assert _same(_collect(streamed), reference), f"workers={workers}"


def test_the_training_square_moves_along_the_long_side_per_sample_and_epoch(photo_shards):
    """Training sees the whole photograph over the epochs (the paper crops from the whole rescaled image):
    each sample's S x S square sits at a position drawn from (seed, epoch, index), the same for any worker
    count and rank; validation always takes the centre, as ``resize_square_chw`` does."""
    cfg = DataConfig(batch_size=10, scale=64, seed=1, workers=0)
    loader = build_loader(cfg, photo_shards, train=True)
    assert loader.mode == "stream" and loader.reader.random_square  # auto: a moving square is cut from the image
    epochs = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        epochs.append(_collect(loader))
        for workers in (1, 2):
            other = build_loader(dataclasses.replace(cfg, workers=workers), photo_shards, train=True, epoch=epoch)
            assert _same(_collect(other), epochs[-1]), f"workers={workers}"
        ranks = [_collect(build_loader(cfg, photo_shards, train=True, rank=r, world_size=2, epoch=epoch)) for r in (0, 1)]
        assert all(torch.equal(torch.cat([ranks[0][b][0], ranks[1][b][0]]), epochs[-1][b][0]) for b in range(2))
    offsets = {}
    for epoch, batches in enumerate(epochs):
        loader.reader.epoch = epoch
        for images, _, indices in batches:
            for img, i in zip(images, indices.tolist()):
                full = photo_shards.image(i, min_side=64)
                box = dec.square_box(*full.shape[:2], loader.reader.square_at(i))
                assert torch.equal(img, dec.resize_chw(full, box, 64, 64))
                offsets.setdefault(i, []).append(box[:2])
    moved = [i for i, o in offsets.items() if len(o) == 2 and o[0] != o[1]]
    assert len(moved) >= len(offsets) // 2  # most squares sit elsewhere in the next epoch
    centre = build_loader(cfg, photo_shards, train=False)
    assert not centre.reader.random_square
    b = next(iter(centre))
    assert torch.equal(b.images[3], dec.resize_square_chw(photo_shards.image(int(b.indices[3]), min_side=64), 64))
    centred = build_loader(dataclasses.replace(cfg, square="centre", cache="memory"), photo_shards, train=True)
    assert centred.mode == "cache" and not centred.reader.random_square
    with pytest.raises(MinwaError, match="data.square=centre"):
        build_loader(dataclasses.replace(cfg, cache="memory"), photo_shards, train=True)


def test_square_box_positions():
    assert dec.square_box(100, 160) == (30, 0, 130, 100)  # the centre, as before
    assert dec.square_box(100, 160, 0.0) == (0, 0, 100, 100)
    assert dec.square_box(100, 160, 0.9999) == (60, 0, 160, 100)  # the last whole-pixel position is reachable
    assert dec.square_box(160, 100, 0.5) == (0, 30, 100, 130)  # portrait: along the height


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_exact_mid_epoch_resume(photo_shards, idx_ds, cache):
    ds = idx_ds if cache == "memory" else photo_shards
    cfg = DataConfig(batch_size=4 if cache == "none" else 64, scale=0 if cache == "memory" else 48,
                     cache=cache, workers=2, seed=9)
    full = build_loader(cfg, ds, train=True, epoch=3)
    everything = _collect(full)
    first = build_loader(cfg, ds, train=True, epoch=3)
    head = []
    for b in first:
        head.append((b.images.clone(), b.labels.clone(), b.indices.clone()))
        if len(head) == 2:
            state = first.state_dict()
            break
    assert state["position"] == 2 and state["epoch"] == 3
    resumed = build_loader(cfg, ds, train=True)  # a fresh process would start here
    resumed.load_state_dict(state)
    rest = _collect(resumed)
    assert _same(head + rest, everything)
    # on another world size the same state resumes this rank's slices of the same global batches
    r1 = build_loader(cfg, ds, train=True, rank=1, world_size=2)
    r1.load_state_dict(state)
    assert torch.equal(next(iter(r1)).indices, everything[2][2][len(everything[2][2]) // 2 :])
    with pytest.raises(MinwaError, match="saved loader position"):
        build_loader(dataclasses.replace(cfg, batch_size=8), ds, train=True).load_state_dict(state)


def test_epochs_and_reiteration(idx_ds):
    loader = build_loader(DataConfig(batch_size=100), idx_ds, train=True)
    e0 = _collect(loader)
    assert _same(_collect(loader), e0)  # iterating again repeats the epoch
    it = iter(loader)
    next(it)
    next(it)
    loader.set_epoch(0)  # e.g. after estimating statistics on a few batches: back to the first batch
    assert _same(_collect(loader), e0)
    loader.set_epoch(1)
    e1 = _collect(loader)
    assert not torch.equal(e0[0][2], e1[0][2])
    assert sorted(torch.cat([x[2] for x in e1]).tolist()) == sorted(torch.cat([x[2] for x in e0]).tolist())


def test_random_resized_crop(photo_shards):
    cfg = DataConfig(batch_size=8, crop=32, random_resized_crop=True, cache="auto", workers=0, seed=2)
    loader = build_loader(cfg, photo_shards, train=True)
    assert loader.mode == "stream" and loader.image_size == (32, 32)
    a = _collect(loader)
    assert a[0][0].shape == (8, 3, 32, 32)
    assert _same(_collect(build_loader(dataclasses.replace(cfg, workers=2), photo_shards, train=True)), a)
    loader.set_epoch(1)
    b = _collect(loader)
    assert not torch.equal(a[0][0], b[0][0])
    evaluation = build_loader(dataclasses.replace(cfg, scale=40), photo_shards, train=False)
    assert next(iter(evaluation)).images.shape == (8, 3, 40, 40)  # eval: S x S, no random box
    with pytest.raises(MinwaError, match="random_resized_crop"):
        build_loader(dataclasses.replace(cfg, cache="device"), photo_shards, train=True)


def test_size_rules_and_bad_settings(photo_shards, idx_ds, tmp_path):
    with pytest.raises(MinwaError, match="differ in size"):
        build_loader(DataConfig(), photo_shards, train=True)
    with pytest.raises(MinwaError, match="data.cache"):
        build_loader(DataConfig(cache="gpu"), idx_ds, train=True)
    with pytest.raises(MinwaError, match="rank 2"):
        build_loader(DataConfig(), idx_ds, train=True, rank=2, world_size=2)
    # a tiny cache budget sends auto to the streaming path, with the same batches
    small = build_loader(DataConfig(batch_size=100, cache_gb=1e-6), idx_ds, train=True)
    assert small.mode == "stream"
    assert _same(_collect(small), _collect(build_loader(DataConfig(batch_size=100), idx_ds, train=True)))
    assert num_batches(10, 4, True) == 2 and num_batches(10, 4, False) == 3
    assert rank_batch(np.arange(10), 2, 4, 1, 2).tolist() == [9]


def test_fashion_shards_cache_equals_idx_cache(tmp_path, idx_ds):
    pack(idx_ds, tmp_path / "s", shard_size=300, workers=2, progress=False)
    shards = open_dataset(tmp_path / "s", split="train")
    a = build_loader(DataConfig(batch_size=128), shards, train=False)
    assert a.mode == "cache"
    for b in a:
        src = shards.index["source"][b.indices.numpy()]
        assert np.array_equal(b.images[:, 0].numpy(), idx_ds.pixels()[src][:, :, :, 0])
    with pytest.raises(MinwaError, match="'train' split, not 'test'"):
        open_dataset(tmp_path / "s", split="test")


def test_a_broken_file_met_by_a_worker_is_one_sentence(tmp_path):
    photo_folder(tmp_path, per_class=1)
    (tmp_path / "coffee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a photo")
    ds = open_dataset(tmp_path)
    loader = build_loader(DataConfig(batch_size=4, scale=32, cache="none", workers=2), ds, train=False)
    with pytest.raises(MinwaError) as e:
        _collect(loader)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"cannot decode {tmp_path / 'coffee' / 'broken.jpg'}")


def test_more_ranks_than_samples_in_the_last_batch(photo_shards):
    cfg = DataConfig(batch_size=5, scale=16, cache="none", workers=1)  # 24 images: last eval batch has 4
    parts = [_collect(build_loader(cfg, photo_shards, train=False, rank=r, world_size=5)) for r in range(5)]
    last = [p[-1][2].tolist() for p in parts]
    assert sorted(sum(last, [])) == [20, 21, 22, 23] and [] in last
    assert all(p[-1][0].shape[1:] == (3, 16, 16) for p in parts)


def test_batches_kept_by_the_consumer_are_never_overwritten(photo_shards):
    cfg = DataConfig(batch_size=2, scale=24, seed=4, workers=2, prefetch=2, square="centre")
    reference = _collect(build_loader(dataclasses.replace(cfg, cache="memory"), photo_shards, train=True))
    kept = list(build_loader(dataclasses.replace(cfg, cache="none"), photo_shards, train=True))  # holds all 12
    assert len(kept) == 12 and _same([tuple(b) for b in kept], reference)


def test_torch_resize_matches_pillow_and_pillow_is_the_fallback(monkeypatch):
    from skimage import data as photos

    for img in (photos.chelsea(), photos.astronaut()[40:420, :300], photos.coffee()):
        for box, (oh, ow) in ((dec.square_box(*img.shape[:2]), (224, 224)), ((13, 7, 250, 201), (96, 120))):
            ref = dec.resize_pil(img, box, oh, ow).astype(int)
            row = torch.full((2, 3, oh, ow), 7, dtype=torch.uint8)
            target = row[1]
            assert dec.resize_chw(img, box, oh, ow, target) is target  # written in place, its neighbour kept
            assert (row[0] == 7).all()
            for got in (row[1], dec.resize_chw(img, box, oh, ow)):
                diff = np.abs(got.permute(1, 2, 0).numpy().astype(int) - ref)
                assert diff.mean() < 0.5  # rounding of the intermediate pass; at the box's edges Pillow
                assert diff[2:-2, 2:-2].max() <= 2  # also reads the pixels just outside it, torch clamps
    img = photos.chelsea()

    def no_uint8_kernel(*a, **k):
        raise RuntimeError('"upsample_bilinear2d_aa" not implemented for \'Byte\'')

    monkeypatch.setattr(dec, "_resize_aa_out", no_uint8_kernel)
    monkeypatch.setattr(torch.nn.functional, "interpolate", no_uint8_kernel)
    out = torch.empty((3, 224, 224), dtype=torch.uint8)
    dec.resize_chw(img, dec.square_box(*img.shape[:2]), 224, 224, out)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), dec.resize_pil(img, dec.square_box(*img.shape[:2]), 224, 224))


def test_reused_batch_memory_never_overwrites_a_batch_kept_from_an_earlier_epoch(photo_shards):
    cfg = DataConfig(batch_size=2, scale=24, seed=4, workers=2, prefetch=2, cache="none", square="centre")
    reference = _collect(build_loader(dataclasses.replace(cfg, cache="memory"), photo_shards, train=True))
    loader = build_loader(cfg, photo_shards, train=True)
    it = iter(loader)
    kept = next(it)  # handed over without a copy: its slot must not go back to the pool
    for _ in it:
        pass
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        assert len(_collect(loader)) == 12
    assert _same([tuple(kept)], reference[:1])


def _planar_reference(loader, indices):
    """What the loader handed over before batches were channels-last: each image resized into a row of a
    plain NCHW tensor."""
    out = torch.empty((len(indices), *loader.reader.out_shape), dtype=torch.uint8)
    assert out.is_contiguous() and not out.is_contiguous(memory_format=torch.channels_last)
    loader.reader.epoch = loader.epoch
    for j, i in enumerate(indices.tolist()):
        loader.reader.read(i, out[j])
    return out


@pytest.mark.parametrize("cache, workers, rrc", [("memory", 2, False), ("none", 0, False), ("none", 2, False),
                                                 ("none", 0, True), ("none", 2, True)])
def test_colour_batches_are_channels_last_with_the_same_pixels_as_planar_rows(photo_shards, cache, workers, rrc):
    cfg = DataConfig(batch_size=10, scale=64, crop=48, seed=3, cache=cache, workers=workers, random_resized_crop=rrc,
                     square="centre")
    loader = build_loader(cfg, photo_shards, train=True, epoch=1)
    kept = list(loader)  # batches the consumer holds on to: some are lent slots, the rest copies
    assert len(kept) == 2
    for b in kept:
        x = b.images
        assert x.shape == (10, 3, *((48, 48) if rrc else (64, 64))) and x.dtype == torch.uint8
        assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        assert torch.equal(x, _planar_reference(loader, b.indices))
    if not rrc:  # the planar per-image resize (no out= row) gives the same pixels too
        i = int(kept[1].indices[3])
        assert torch.equal(kept[1].images[3], dec.resize_square_chw(photo_shards.image(i, min_side=64), 64))


def test_gray_batches_stay_planar(idx_ds):
    for cfg in (DataConfig(batch_size=50), DataConfig(batch_size=50, scale=40),
                DataConfig(batch_size=50, cache="none", workers=2), DataConfig(batch_size=50, cache="none", workers=0)):
        b = next(iter(build_loader(cfg, idx_ds, train=True)))
        n, c, h, w = b.images.shape
        assert c == 1 and b.images.stride() == (h * w, h * w, w, 1)


def test_resize_writes_a_channels_last_row_in_place_and_a_colour_idx_cache_is_channels_last():
    from skimage import data as photos

    from minwa.data.loader import decode_all

    img = photos.coffee()
    box = dec.square_box(*img.shape[:2])
    planar = dec.resize_chw(img, box, 96, 96)
    rows = torch.full((2, 96, 96, 3), 7, dtype=torch.uint8).permute(0, 3, 1, 2)
    target = rows[1]
    assert dec.resize_chw(img, box, 96, 96, target) is target  # written in place, its neighbour kept
    assert torch.equal(rows[1], planar) and (rows[0] == 7).all()
    assert rows.is_contiguous(memory_format=torch.channels_last)

    class ColourIdx:  # an array source of colour images (no decoding)
        def pixels(self):
            return np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)

    cache = decode_all(ColourIdx(), (8, 8), workers=0)
    assert cache.is_contiguous(memory_format=torch.channels_last)
    assert np.array_equal(cache.permute(0, 2, 3, 1).numpy(), ColourIdx().pixels())


def _cpu_nvjpeg_stand_in(datas, channels, device):
    """What ``nvjpeg_decoder`` returns (C x H x W uint8 per JPEG byte tensor), done by simplejpeg."""
    return [torch.from_numpy(dec.decode(d.numpy().tobytes(), channels)).permute(2, 0, 1).to(device) for d in datas]


def test_jpeg_cache_crops_and_resizes_like_the_stream(photo_shards, idx_ds, tmp_path):
    """The JPEG device cache's own work (byte slices, grouping by size, centre box, float resize), with a
    CPU decoder standing in for nvJPEG: within a grey level or two of the stream's resize of the same
    full-size decode. PNG samples (1-channel shards) take the CPU decode and equal the pixels exactly."""
    from minwa.data.jpeg_cache import JpegCache

    cache = JpegCache(photo_shards, (64, 64), "cpu", decode=_cpu_nvjpeg_stand_in)
    assert cache.is_jpeg.all() and cache.nbytes == int(photo_shards.index["size"].sum())
    perm = np.random.default_rng(0).permutation(len(photo_shards))
    idx = np.concatenate([perm, perm[:5]])  # repeated samples: groups of equal size resized together
    # the stream's geometry on full-size decodes (nvJPEG has no DCT-domain downscaling)
    want = torch.stack([dec.resize_square_chw(dec.decode(photo_shards.encoded(i)), 64) for i in idx])
    got = cache.batch(idx)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    diff = (got.float() - want.float()).abs()
    assert float(diff.mean()) < 0.5 and float(diff.max()) <= 2, (float(diff.mean()), float(diff.max()))

    pack(idx_ds, tmp_path / "png", shard_size=500, workers=1, progress=False)
    grey = open_dataset(tmp_path / "png", split="train")
    grey_cache = JpegCache(grey, (28, 28), "cpu", decode=_cpu_nvjpeg_stand_in)
    assert not grey_cache.is_jpeg.any()
    sel = np.arange(0, 1000, 7)
    assert torch.equal(grey_cache.batch(sel), torch.from_numpy(idx_ds.pixels()[grey.index["source"][sel]]).permute(0, 3, 1, 2))

    with pytest.raises(MinwaError, match="CUDA device"):
        build_loader(DataConfig(scale=64, cache="jpeg", square="centre"), photo_shards, train=True)
    with pytest.raises(MinwaError, match="packed shards"):
        JpegCache(idx_ds, (28, 28), "cpu", decode=_cpu_nvjpeg_stand_in)
