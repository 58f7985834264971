"""The Deep Image engine on a real photograph: Table 1 counts, exactness of identity / flip / cast,
vignette and lens geometry, determinism, and agreement of the fused CPU kernel with the PyTorch path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from minwa.augment import (AugmentConfig, Augmenter, compute_pca_lighting, identity_params, load_pca,
                           preset_config, save_pca, table1_counts)
from minwa.augment import cpu_kernel, geometry
from minwa.augment.config import FILLS
from minwa.augment.preview import resize_short_side

skdata = pytest.importorskip("skimage.data")
BACKENDS = ["torch"] + (["numba"] if cpu_kernel.available() else [])


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """The astronaut photograph at 320x320, uint8 1x3xHxW."""
    return torch.from_numpy(resize_short_side(skdata.astronaut(), 320).copy()).permute(2, 0, 1)[None].contiguous()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Back to 0..255 grey levels (the augmenters below use mean 0, std 1: output = x / 255)."""
    return x * 255.0


def test_table1_counts_match_the_paper():
    assert table1_counts(AugmentConfig(preset="deepimage"), 512, 224) == {
        "color_casting": 68_920, "vignetting": 1_960, "lens_distortion": 260, "rotation": 20,
        "flipping": 2, "cropping": 82_944,
    }
    assert table1_counts(AugmentConfig(preset="none"), 512, 224) == {"cropping": 82_944}
    assert table1_counts(AugmentConfig(preset="fashion"), 28, 28) == {"flipping": 2, "cropping": 25}
    assert table1_counts(AugmentConfig(preset="deepimage", cast_range=10, rotation=5), 256, 224)["color_casting"] == 21**3 - 1


def test_table1_parameter_spaces_are_what_the_sampler_draws(photo):
    """Over many draws the sampler hits exactly the counted values: 20 rotations, 65 degrees x 4 kinds..."""
    aug = Augmenter(preset_config("deepimage", p_rotation=1.0, p_lens=1.0, p_vignette=1.0), 224)
    idx = torch.arange(20_000)
    p = aug.params(photo.expand(len(idx), -1, -1, -1), idx, 0, 0)
    degrees = torch.round(torch.rad2deg(p.angle)).to(torch.int64)
    assert set(degrees.tolist()) == set(range(-10, 0)) | set(range(1, 11))
    kinds = torch.stack([p.radial > 0, p.radial < 0, p.stretch_x > 1, p.stretch_y > 1], 1)
    assert bool((kinds.sum(1) == 1).all())  # exactly one kind each
    assert len(set(p.radial[p.radial > 0].tolist())) == 65 and len(set(p.stretch_x[p.stretch_x > 1].tolist())) == 65
    assert len(set(zip(p.vig_strength.tolist(), p.vig_radius.tolist()))) == 1_960
    cast = p.offset
    assert bool((cast == cast.round()).all()) and int(cast.abs().max()) == 20
    assert 0.45 < float((cast != 0).float().mean()) < 0.52  # each channel altered with probability 1/2 (x 40/41)
    assert int(p.oy.min()) == 0 and int(p.oy.max()) == 320 - 224 - 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_parameters_give_exactly_the_crop(photo, backend):
    aug = Augmenter(preset_config("deepimage"), 224, backend=backend)
    x = photo.expand(3, -1, -1, -1).contiguous()
    p = identity_params(3, (320, 320), 224)
    p.oy = torch.tensor([0, 17, 95])
    p.ox = torch.tensor([95, 3, 40])
    y = aug.apply(x, p)
    for n in range(3):
        oy, ox = int(p.oy[n]), int(p.ox[n])
        crop = x[n, :, oy : oy + 224, ox : ox + 224].float()
        assert torch.equal(_grey(y[n]).round(), crop)
        assert float((_grey(y[n]) - crop).abs().max()) < 1e-3


def test_identity_warp_through_grid_sample_is_the_crop(photo):
    """The general path (grid_sample) with identity parameters reproduces the crop to float rounding."""
    x = photo.expand(2, -1, -1, -1).contiguous()
    p = identity_params(2, (320, 320), 224)
    p.oy = torch.tensor([5, 90])
    for fill in FILLS:
        y = geometry.warp(x, p, 224, fill)
        for n in range(2):
            oy, ox = int(p.oy[n]), int(p.ox[n])
            crop = x[n, :, oy : oy + 224, ox : ox + 224].float()
            assert float((y[n] - crop).abs().max()) < 0.01, fill


@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_is_exact(photo, backend):
    aug = Augmenter(preset_config("deepimage"), 224, backend=backend)
    p = identity_params(1, (320, 320), 224)
    p.flip[:] = True
    assert torch.equal(aug.apply(photo, p), aug.eval(photo).flip(-1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_colour_cast_changes_each_altered_channel_by_its_integer(photo, backend):
    aug = Augmenter(AugmentConfig(color_cast=True), 224, backend=backend)
    p = identity_params(1, (320, 320), 224)
    p.offset = torch.tensor([[13.0, 0.0, -7.0]])
    y, base = _grey(aug.apply(photo, p)), _grey(aug.eval(photo))
    assert torch.equal(y[:, 1], base[:, 1])  # G left alone
    for c, shift in ((0, 13.0), (2, -7.0)):
        d = y[0, c] - base[0, c]
        free = (base[0, c] - shift >= 0) & (base[0, c] + shift <= 255) & (base[0, c] + shift >= 0)
        assert float((d[free] - shift).abs().max()) < 1e-3
        assert bool(((y[0, c] >= -1e-3) & (y[0, c] <= 255 + 1e-3)).all())  # clamped, never outside 0..255


@pytest.mark.parametrize("backend", BACKENDS)
def test_vignette_darkens_monotonically_with_radius_and_leaves_the_centre(backend):
    grey = torch.full((1, 3, 224, 224), 200, dtype=torch.uint8)
    aug = Augmenter(AugmentConfig(vignette=True), 224, backend=backend)
    p = identity_params(1, (224, 224), 224)
    p.vig_strength = torch.tensor([0.45])
    p.vig_radius = torch.tensor([0.3])
    y = _grey(aug.apply(grey, p))[0, 0]
    c = 112
    assert float((y[c - 20 : c + 20, c - 20 : c + 20] - 200).abs().max()) < 1e-3  # inside the radius: untouched
    diag = torch.stack([y[c + k, c + k] for k in range(112)])  # centre to corner
    assert bool((diag[1:] <= diag[:-1] + 1e-4).all())
    assert float(diag[-1]) < 200 * (1 - 0.4) and float(diag[-1]) >= 200 * (1 - 0.45) - 1e-3
    row = y[c, c:]
    assert bool((row[1:] <= row[:-1] + 1e-4).all())


def _line_rows(img: torch.Tensor) -> torch.Tensor:
    """Row (sub-pixel, intensity-weighted) of a bright horizontal line in each column of the upper half."""
    top = img[0, 0, :112]
    w = top / top.sum(0, keepdim=True).clamp(min=1e-6)
    return (w * torch.arange(112.0)[:, None]).sum(0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lens_distortion_keeps_the_centre_and_bends_lines_the_right_way(photo, backend):
    cfg = AugmentConfig(lens=True, fill="zeros")
    aug = Augmenter(cfg, 224, backend=backend)
    p = identity_params(2, (320, 320), 224)
    p.radial = torch.tensor([0.2, -0.2])  # barrel, pincushion
    # the centre stays put on a real photograph
    y = _grey(aug.apply(photo.expand(2, -1, -1, -1).contiguous(), p))
    base = _grey(aug.eval(photo))[0]
    for n in range(2):
        assert float((y[n, :, 110:114, 110:114] - base[:, 110:114, 110:114]).abs().max()) < 2.0
    # a straight horizontal line 60 px above the centre: barrel bows it outward (its ends come toward the
    # centre), pincushion bows it inward (its ends move away from the centre)
    lines = torch.zeros(2, 3, 224, 224, dtype=torch.uint8)
    lines[:, :, 52, :] = 255
    q = identity_params(2, (224, 224), 224)
    q.radial = p.radial
    out = _grey(aug.apply(lines, q))
    rows_barrel, rows_pin = _line_rows(out[0:1]), _line_rows(out[1:2])
    mid, ends = slice(100, 124), torch.cat([torch.arange(30, 50), torch.arange(174, 194)])
    assert float(rows_barrel[ends].mean()) > float(rows_barrel[mid].mean()) + 2  # ends lower = nearer the centre
    assert float(rows_pin[ends].mean()) < float(rows_pin[mid].mean()) - 2
    assert abs(float(rows_barrel[mid].mean()) - 52) < 8 and abs(float(rows_pin[mid].mean()) - 52) < 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_key_same_output_across_batch_sizes_and_orders(photo, backend):
    aug = Augmenter(preset_config("deepimage", pca_lighting=0.1, erase=0.3), 224, backend=backend)
    x = photo.expand(12, -1, -1, -1).contiguous()
    idx = torch.tensor([7, 3, 1000, 42, 5, 6, 99, 123456789012, 8, 9, 10, 11])
    whole = aug(x, idx, epoch=2, seed=5)
    parts = torch.cat([aug(x[i : i + 5], idx[i : i + 5], 2, 5) for i in range(0, 12, 5)])
    assert torch.equal(whole, parts)
    perm = torch.tensor([11, 0, 5, 3, 2, 1, 4, 7, 6, 10, 9, 8])
    assert torch.equal(aug(x[perm], idx[perm], 2, 5), whole[perm])
    assert not torch.equal(aug(x, idx, 3, 5), whole)


@pytest.mark.skipif(not cpu_kernel.available(), reason="numba not installed")
@pytest.mark.parametrize("fill", FILLS)
def test_fused_cpu_kernel_agrees_with_the_pytorch_path(photo, fill):
    """Also where the warp reaches past the image's edge (scale = crop: every corner is filled) and on
    channels-last memory (the packed kernel)."""
    cfg = preset_config("deepimage", fill=fill, translate=40, pca_lighting=0.1, p_rotation=0.8, p_lens=0.8)
    small = torch.from_numpy(resize_short_side(skdata.astronaut(), 224).copy()).permute(2, 0, 1)[None]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for image, translate in ((photo, 40), (small.contiguous(), 0)):
        x = torch.cat([image, image.flip(-1), image.flip(-2)]).repeat(4, 1, 1, 1)
        idx = torch.arange(len(x)) * 7
        for layout in (torch.contiguous_format, torch.channels_last):
            xx = x.contiguous(memory_format=layout)
            c = dataclasses.replace(cfg, translate=translate)
            a = Augmenter(c, 224, mean, std, backend="numba")(xx, idx, 1, 3)
            b = Augmenter(c, 224, mean, std, backend="torch")(xx, idx, 1, 3)
            assert float((a - b).abs().max()) < 2e-3, layout  # normalised units: < 0.2 grey levels


@pytest.mark.parametrize("backend", BACKENDS)
def test_grey_images_and_surround_fill(backend):
    """1-channel data run the whole preset (the cast is a brightness shift); surround and reflect take the
    real pixels around the crop (they differ only past the image's edge), border repeats the crop's edge."""
    rs = np.random.default_rng(0)
    grey = torch.from_numpy(rs.integers(0, 256, (4, 1, 40, 40), dtype=np.uint8))
    y = Augmenter(preset_config("deepimage"), 28, 0.5, 0.25, backend=backend)(grey, torch.arange(4), 0, 0)
    assert y.shape == (4, 1, 28, 28) and torch.isfinite(y).all()
    photo = torch.from_numpy(resize_short_side(skdata.coffee(), 320).copy()).permute(2, 0, 1)[None].contiguous()
    p = identity_params(1, (320, 320), 224)
    p.angle = torch.tensor([0.17])
    sur = Augmenter(AugmentConfig(rotation=10, fill="surround"), 224, backend=backend).apply(photo, p)
    ref = Augmenter(AugmentConfig(rotation=10, fill="reflect"), 224, backend=backend).apply(photo, p)
    zer = Augmenter(AugmentConfig(rotation=10, fill="zeros"), 224, backend=backend).apply(photo, p)
    bor = Augmenter(AugmentConfig(rotation=10, fill="border"), 224, backend=backend).apply(photo, p)
    assert float(zer[0, :, :4, :4].abs().max()) == 0.0  # an empty corner
    assert float((sur - ref).abs().max()) < 1e-4  # the centre crop's rotated corners lie inside the image
    assert float((sur[0, :, :4, :4] - bor[0, :, :4, :4]).abs().max()) > 0.05  # filled from elsewhere
    assert float((sur[0, :, 100:124, 100:124] - bor[0, :, 100:124, 100:124]).abs().max()) < 1e-4


def test_pca_lighting_from_the_data(tmp_path, photo):
    imgs = torch.cat([photo, torch.from_numpy(resize_short_side(skdata.coffee(), 320).copy()).permute(2, 0, 1)[None]])
    vals, vecs = compute_pca_lighting(imgs)
    assert vals.shape == (3,) and bool((vals[:-1] >= vals[1:]).all()) and float(vals[0]) > 0
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(3), atol=1e-5, rtol=0)
    assert bool((vecs[:, 0] > 0).all())  # the first component is brightness: all channels together
    save_pca(tmp_path, vals, vecs)
    v2, e2 = load_pca(tmp_path)
    torch.testing.assert_close((v2, e2), (vals, vecs))
    cfg = AugmentConfig(pca_lighting=0.1, pca_file=str(tmp_path / "pca_lighting.json"))
    aug = Augmenter(cfg, 224)
    p = aug.params(photo, torch.tensor([3]), 0, 0)
    shift = p.offset[0]
    assert 0 < float(shift.abs().max()) < 255 * 0.5
    # the shift lies in the span of the components, scaled by their eigenvalues (0..1 scale -> grey levels)
    alpha = (vecs.T @ (shift / 255.0)) / (0.1 * vals)
    torch.testing.assert_close(vecs @ (alpha * 0.1 * vals) * 255.0, shift, atol=1e-3, rtol=1e-4)


def test_erase_blanks_one_box(photo):
    aug = Augmenter(AugmentConfig(erase=1.0), 224)
    y = aug(photo.expand(4, -1, -1, -1).contiguous(), torch.arange(4), 0, 0)
    p = aug.params(photo.expand(4, -1, -1, -1), torch.arange(4), 0, 0)
    for n in range(4):
        y0, x0, y1, x1 = p.erase[n].tolist()
        assert y1 > y0 and x1 > x0 and float(y[n, :, y0:y1, x0:x1].abs().max()) == 0.0
    assert dataclasses.asdict(AugmentConfig())["erase"] == 0.0


def test_a_transforms_draws_do_not_depend_on_the_others(photo):
    """Switching transforms on or off leaves every other transform's draws for a sample unchanged."""
    idx = torch.arange(64)
    x = photo.expand(64, -1, -1, -1)
    full = Augmenter(preset_config("deepimage"), 224).params(x, idx, 4, 9)
    flip_only = Augmenter(AugmentConfig(flip=True), 224).params(x, idx, 4, 9)
    no_lens = Augmenter(preset_config("deepimage", lens=False), 224).params(x, idx, 4, 9)
    assert torch.equal(full.flip, flip_only.flip) and torch.equal(full.oy, flip_only.oy)
    assert torch.equal(full.angle, no_lens.angle) and torch.equal(full.offset, no_lens.offset)
    assert torch.equal(full.vig_strength, no_lens.vig_strength) and not torch.equal(full.radial, no_lens.radial)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_input_gives_the_same_output(photo, backend):
    """A channels-last batch (decoders' H x W x C memory seen through permute) is read in place and
    augments exactly as the planar batch does, to float rounding; crops and flips stay exact."""
    cfg = preset_config("deepimage", pca_lighting=0.1, p_rotation=0.7, p_lens=0.7)
    x = torch.cat([photo, photo.flip(-1), photo.flip(-2)]).repeat(3, 1, 1, 1)
    hwc = x.permute(0, 2, 3, 1).contiguous()
    nhwc = hwc.permute(0, 3, 1, 2)
    assert not nhwc.is_contiguous() and nhwc.data_ptr() == hwc.data_ptr()
    aug = Augmenter(cfg, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), backend=backend)
    idx = torch.arange(len(x)) * 5
    planar, packed = aug(x, idx, 3, 1), aug(nhwc, idx, 3, 1)
    assert float((planar - packed).abs().max()) < 5e-4  # normalised units: < 0.03 grey levels
    p = identity_params(2, (320, 320), 224)
    p.oy, p.ox, p.flip = torch.tensor([3, 95]), torch.tensor([80, 0]), torch.tensor([True, False])
    crop = Augmenter(preset_config("deepimage"), 224, backend=backend)
    y = crop.apply(nhwc[:2], p)
    assert torch.equal(y, crop.apply(x[:2], p))
    assert torch.equal(_grey(y[0]).round(), x[0, :, 3:227, 80:304].flip(-1).float())


def test_reuse_output_returns_one_tensor_and_fresh_outputs_by_default(photo):
    x = photo.expand(4, -1, -1, -1).contiguous()
    idx = torch.arange(4)
    fresh = Augmenter(preset_config("deepimage"), 224)
    a, b = fresh(x, idx, 0, 0), fresh(x, idx, 1, 0)
    assert a.data_ptr() != b.data_ptr() and not torch.equal(a, b)
    reuse = Augmenter(preset_config("deepimage"), 224, reuse_output=True)
    c = reuse(x, idx, 0, 0)
    assert torch.equal(c, a)
    d = reuse(x, idx, 1, 0)
    assert d.data_ptr() == c.data_ptr() and torch.equal(d, b)  # the same tensor, overwritten
    assert reuse(x[:3], idx[:3], 1, 0).shape[0] == 3 and reuse(x, idx, 1, 0).data_ptr() == c.data_ptr()


@pytest.mark.skipif(not cpu_kernel.available(), reason="numba not installed")
def test_large_fresh_outputs_are_ordinary_writable_tensors():
    t = cpu_kernel.fresh_output((3, 3, 700, 700))  # 17 MB: the huge-page path where the OS has one
    assert t.shape == (3, 3, 700, 700) and t.dtype == torch.float32 and t.is_contiguous()
    t.fill_(2.5)
    assert float(t.sum()) == 2.5 * t.numel() and t.data_ptr() % 64 == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_warps_reading_the_last_bytes_of_a_channels_last_batch(photo, backend):
    """A warp that reads the batch's last pixels gives the reference values (the CPU kernel loads 8-byte
    words, which must stay inside the buffer there): border fill clamps a rotated, barrel-distorted
    corner onto the window's corner, whose bilinear neighbours are the last image's last row and column."""
    x = torch.cat([photo, photo.flip(-1)])
    nhwc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    p = identity_params(2, (320, 320), 224)
    p.oy = p.ox = torch.tensor([95, 95])  # the window's last row and column + 1 are the image's last
    p.angle, p.radial = torch.tensor([0.17, -0.17]), torch.tensor([0.25, 0.25])
    aug = Augmenter(preset_config("deepimage", fill="border"), 224, backend=backend)
    ref = Augmenter(preset_config("deepimage", fill="border"), 224, backend="torch").apply(x, p)
    y = aug.apply(nhwc, p)
    assert float((y - ref).abs().max()) < 1e-4  # mean 0, std 1: < 0.03 grey levels
    corner = x[1, :, 318, 318].float() / 255.0  # the window's corner, where that output corner is clamped
    torch.testing.assert_close(y[1, :, 223, 223], corner, atol=1e-4, rtol=0)


@pytest.mark.skipif(not cpu_kernel.available(), reason="numba not installed")
def test_large_fresh_outputs_recycle_only_memory_nothing_references():
    shape = (3, 3, 700, 700)
    a = cpu_kernel.fresh_output(shape)
    b = cpu_kernel.fresh_output(shape)
    first = a.data_ptr()
    assert first != b.data_ptr()
    view, arr = a[1], b.numpy()
    del a, b
    c = cpu_kernel.fresh_output(shape)  # a view and an array still hold the two earlier outputs
    assert c.data_ptr() not in (first, arr.ctypes.data)
    del view
    d = cpu_kernel.fresh_output(shape)
    assert d.data_ptr() == first  # dropped: its already-mapped memory is handed out again
    assert cpu_kernel.fresh_output(shape).data_ptr() not in (first, arr.ctypes.data, c.data_ptr())
