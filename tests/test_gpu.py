"""What only a GPU can show: the augmentation engine agrees between CPU and CUDA, and the device caches
(decoded pixels, and JPEG bytes decoded by nvJPEG) hand out what the CPU loader hands out.

Skipped where CUDA is absent (CI, the 2-core machine); docs/dev/gpu-runbook.md runs this file on a lent GPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from minwa.augment import Augmenter, preset_config
from minwa.augment.config import FILLS
from minwa.augment.preview import resize_short_side

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Three real photographs at 320x320, uint8 3x3xHxW, each also flipped: 6 images."""
    imgs = [resize_short_side(f(), 320)[:320, :320] for f in (skdata.astronaut, skdata.coffee, skdata.chelsea)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return torch.cat([x, x.flip(-1)])


def test_augmentation_parameters_are_the_same_on_cpu_and_cuda(photos):
    aug = Augmenter(preset_config("deepimage", pca_lighting=0.1, erase=0.3), 224)
    idx = torch.arange(len(photos)) * 11 + 5
    a = aug.params(photos, idx, 3, 7)
    b = aug.params(photos.cuda(), idx, 3, 7)
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, torch.Tensor):
            assert vb.device.type == "cuda"
            # integers exactly; floats to a few ulp (CUDA's cos/sin/log differ from the CPU's in the last bits)
            torch.testing.assert_close(vb.cpu(), va, rtol=1e-5, atol=1e-5, msg=f.name)


@pytest.mark.parametrize("fill", FILLS)
def test_augmentation_on_cuda_agrees_with_the_cpu(photos, fill):
    """Same (seed, epoch, index) on both devices: the same images within float tolerance."""
    cfg = preset_config("deepimage", fill=fill, translate=40 if fill != "surround" else 0, pca_lighting=0.1,
                        p_rotation=0.8, p_lens=0.8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = photos.repeat(3, 1, 1, 1)
    idx = torch.arange(len(x)) * 7
    cpu = Augmenter(cfg, 224, mean, std)(x, idx, 1, 3)
    gpu = Augmenter(cfg, 224, mean, std)(x.cuda(), idx.cuda(), 1, 3)
    assert gpu.device.type == "cuda"
    assert float((gpu.cpu() - cpu).abs().max()) < 2e-3  # normalised units: < 0.2 grey levels
    cl = x.contiguous(memory_format=torch.channels_last).cuda()
    torch.testing.assert_close(Augmenter(cfg, 224, mean, std)(cl, idx.cuda(), 1, 3), gpu, rtol=0, atol=1e-5)


def test_pixel_device_cache_hands_out_the_cpu_batches(tmp_path):
    from conftest import FASHION, fashion_available
    from data_fixtures import small_idx

    from minwa.data import DataConfig, build_loader, open_dataset

    small_idx(tmp_path, n=6000, real=FASHION if fashion_available() else None)
    ds = open_dataset(tmp_path)
    cfg = DataConfig(batch_size=512, seed=3)
    cpu = build_loader(dataclasses.replace(cfg, cache="memory"), ds, train=True, epoch=1)
    dev = build_loader(dataclasses.replace(cfg, cache="device"), ds, train=True, device="cuda", epoch=1)
    assert dev.mode == "cache" and dev.cache.device.type == "cuda"
    for n, (a, b) in enumerate(zip(cpu, dev)):
        assert b.images.device.type == "cuda"
        assert torch.equal(b.images.cpu(), a.images) and torch.equal(b.labels.cpu(), a.labels)
        if n == 5:
            break


def test_jpeg_device_cache_decodes_on_the_gpu_like_the_cpu_loader(tmp_path):
    """JPEG bytes held once, decoded by nvJPEG per batch: within a few grey levels of the CPU path
    (nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's in the last bits)."""
    pytest.importorskip("torchvision")
    from minwa.benchmarks.corpus import make_corpus
    from minwa.data import DataConfig, build_loader, open_dataset, pack

    pack(make_corpus(tmp_path / "corpus", 96), tmp_path / "shards", progress=False)
    ds = open_dataset(tmp_path / "shards")
    cfg = DataConfig(scale=224, batch_size=32, workers=0, seed=1, square="centre")  # the cache holds centre squares
    cpu = build_loader(dataclasses.replace(cfg, cache="none"), ds, train=True)
    dev = build_loader(dataclasses.replace(cfg, cache="jpeg"), ds, train=True, device="cuda")
    assert dev.mode == "jpeg"
    for a, b in zip(cpu, dev):
        assert b.images.device.type == "cuda" and b.images.shape == a.images.shape
        assert torch.equal(b.indices.cpu(), a.indices) and torch.equal(b.labels.cpu(), a.labels)
        diff = (b.images.cpu().float() - a.images.float()).abs()
        assert float(diff.mean()) < 2.0 and float(diff.quantile(0.99)) < 12
