"""`minwa augment-preview` on a real photograph (Debian's LadyBird wallpaper, 2560x1600): the grid's
layout, the original at its own aspect ratio, the run's own augmentation (--config / --ckpt / --set),
one-sentence errors, and the lens-distortion fill that once mirrored the ladybird (issue #16)."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minwa.augment import AugmentConfig, Augmenter, cpu_kernel, identity_params
from minwa.augment.preview import preview_grid, resize_short_side, run_augmentation
from minwa.cli import main
from minwa.commands import augment_preview
from minwa.errors import MinwaError
from minwa.models.checkpoint import save_checkpoint

LADYBIRD = Path("/usr/share/backgrounds/mate/nature/LadyBird.jpg")
BACKENDS = ["torch"] + (["numba"] if cpu_kernel.available() else [])
GAP, LABEL = 6, 22
pytestmark = pytest.mark.skipif(not LADYBIRD.is_file(), reason="mate-backgrounds not installed")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The ladybird at 640x400 (uint8 HxWx3): a real photograph, wider than tall."""
    return np.asarray(Image.open(LADYBIRD).convert("RGB").resize((640, 400), Image.BICUBIC))


@pytest.fixture()
def jpeg(tmp_path, photo) -> Path:
    path = tmp_path / "ladybird.jpg"
    Image.fromarray(photo).save(path, quality=92)
    return path


def _run(argv):
    p = argparse.ArgumentParser()
    augment_preview.add_arguments(p)
    return augment_preview.run(p.parse_args(argv))


def _tile(sheet: np.ndarray, row: int, col: int, cell: int) -> np.ndarray:
    """Tile ``col`` of ``row`` (square tiles of ``cell`` px; the original row's first tile is wider)."""
    y = GAP + row * (LABEL + cell + GAP) + LABEL
    x = GAP + col * (cell + GAP)
    return sheet[y : y + cell, x : x + cell].astype(np.float32)


def _combined(sheet: Image.Image, samples: int, cell: int) -> list[np.ndarray]:
    arr = np.asarray(sheet.convert("RGB"))
    return [_tile(arr, 8, col, cell) for col in range(samples)]


def test_preview_grid_png(tmp_path, jpeg):
    out = tmp_path / "grid.png"
    assert _run([str(jpeg), "--out", str(out), "--scale", "160", "--crop", "128", "--samples", "3"]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(np.float32)
    rows = 9  # original + 7 transforms + all combined
    assert sheet.shape[0] == rows * (LABEL + 128 + GAP) + GAP
    assert sheet.shape[1] >= GAP + 3 * (128 + GAP)  # the tiles, or the longest title where that is wider
    assert sheet.std() > 30  # a photograph, not a blank page
    centre_x = GAP + 205 + GAP  # the centre crop follows the 205 px wide original (640x400 at 128 px tall)
    centre = sheet[GAP + LABEL : GAP + LABEL + 128, centre_x : centre_x + 128]
    for row in range(1, rows):  # every transform row changes the picture, and its examples differ
        assert np.abs(_tile(sheet, row, 0, 128) - centre).mean() > 0.5 or \
            np.abs(_tile(sheet, row, 1, 128) - centre).mean() > 0.5, row
        assert np.abs(_tile(sheet, row, 0, 128) - _tile(sheet, row, 2, 128)).mean() > 0.2, row


@pytest.mark.parametrize("portrait", [False, True])
def test_the_original_keeps_its_aspect_ratio(photo, portrait):
    """The first tile is the whole picture at its own shape (not a square), 128 px tall."""
    image = np.ascontiguousarray(photo.transpose(1, 0, 2)) if portrait else photo
    sheet = np.asarray(preview_grid(image, 160, 128, samples=2)).astype(np.float32)
    width = round(image.shape[1] * 128 / image.shape[0])  # 205 (landscape) or 80 (portrait)
    tile = sheet[GAP + LABEL : GAP + LABEL + 128, GAP : GAP + width]
    expected = np.asarray(Image.fromarray(image).resize((width, 128), Image.BICUBIC)).astype(np.float32)
    inside = np.ones((128, width), bool)  # away from the outlines of the square and the crop
    for side in (128, 128 * 128 / 160):
        lo, hi = (width - side) / 2, (width + side) / 2
        ylo, yhi = (128 - side) / 2, (128 + side) / 2
        for x in (lo, hi):
            inside[:, max(0, int(x) - 3) : int(x) + 4] = False
        for y in (ylo, yhi):
            inside[max(0, int(y) - 3) : int(y) + 4, :] = False
    assert np.abs(tile - expected)[inside].mean() < 3  # the picture itself, at its own aspect ratio
    beside = sheet[GAP + LABEL : GAP + LABEL + 128, GAP + width : GAP + width + GAP]
    assert (beside == 255).all()  # the gap after it: the tile is exactly that wide


@pytest.mark.parametrize("backend", BACKENDS)
def test_lens_distortion_shows_the_real_surround_not_a_mirrored_copy(photo, backend):
    """Issue #16: barrel distortion reaches past the crop; the default fill (reflect) mirrored about the
    crop's edge and showed a second, mirrored ladybird. Beyond the crop the picture goes on: a marker
    just inside the crop's right edge must appear once, and one just outside it must appear."""
    scaled = resize_short_side(photo, 320).copy()  # the crop is 48..271
    scaled[150:170, 256:264] = (255, 0, 255)  # magenta, 8 px inside the crop's right edge
    scaled[150:170, 280:288] = (0, 255, 255)  # cyan, 8 px outside it (inside the scaled image)
    x = torch.from_numpy(scaled).permute(2, 0, 1)[None].contiguous()
    p = identity_params(1, (320, 320), 224)
    p.radial = torch.tensor([0.25])  # the strongest barrel distortion of the Deep Image ranges
    assert AugmentConfig().fill == "reflect"
    y = Augmenter(AugmentConfig(lens=True), 224, backend=backend).apply(x, p)[0]
    row = (y[:, 112] * 255).round().to(torch.int64)  # the output row through the markers' middle

    def runs(colour):
        hit = ((row - torch.tensor(colour)[:, None]).abs().sum(0) < 60).to(torch.int8)
        return int((hit[1:] - hit[:-1] == 1).sum() + hit[0])

    assert runs((255, 0, 255)) == 1  # once, not mirrored
    assert runs((0, 255, 255)) == 1  # the real pixels beyond the crop


def _flip_only_config(tmp_path) -> Path:
    """A run's config.toml (as train saves it): flip only, trained at scale 160 / crop 128."""
    path = tmp_path / "config.toml"
    path.write_text('recipe = "photos"\n[data]\nscale = 160\ncrop = 128\n'
                    '[augment]\npreset = "none"\nflip = true\nrandom_crop = false\n')
    return path


def test_the_run_config_draws_the_last_row(tmp_path, photo):
    """--config: the combined row is the run's augmentation (flip only: each tile is the centre crop or
    its mirror, unlike deepimage), at the run's scale / crop; --set wins over the file."""
    config = _flip_only_config(tmp_path)
    source = run_augmentation(str(config))
    assert (source.name, source.scale, source.crop) == ("run config", 160, 128)
    deep = tmp_path / "deep.toml"
    deep.write_text('[augment]\npreset = "deepimage"\n')
    assert run_augmentation(str(deep)).name == "run config: deepimage"
    run_tiles = _combined(preview_grid(photo, 160, 128, samples=4, source=source), 4, 128)
    default_tiles = _combined(preview_grid(photo, 160, 128, samples=4), 4, 128)
    for t in run_tiles:
        assert np.array_equal(t, run_tiles[0]) or np.array_equal(t, run_tiles[0][:, ::-1])
    assert any(not np.array_equal(t, run_tiles[0]) for t in run_tiles)  # both flips drawn
    assert all(min(np.abs(d - t).mean() for t in (run_tiles[0], run_tiles[0][:, ::-1])) > 2 for d in default_tiles)

    no_flip = run_augmentation(str(config), overrides=["augment.flip=false"])
    assert no_flip.name == "run config, flip=false" and not no_flip.augment.flip
    tiles = _combined(preview_grid(photo, 160, 128, samples=4, source=no_flip), 4, 128)
    assert all(np.array_equal(t, tiles[0]) for t in tiles)  # nothing left to vary


def test_the_checkpoint_records_the_config_and_the_cli_uses_it(tmp_path, jpeg, capsys):
    """--ckpt reads the config its sidecar records (and its scale / crop); the CLI titles the last row."""
    config = _flip_only_config(tmp_path)
    recorded = tomllib.loads(config.read_text())
    save_checkpoint(tmp_path / "run" / "final", {"w": torch.zeros(1)},
                    {"model": "tiny", "num_classes": 2, "scale": 160, "crop": 128, "config": recorded})
    source = run_augmentation(ckpt=str(tmp_path / "run"))
    assert dataclasses.asdict(source) == dataclasses.asdict(run_augmentation(str(config)))
    out = tmp_path / "grid.png"
    assert main(["augment-preview", str(jpeg), "--ckpt", str(tmp_path / "run"), "--out", str(out),
                 "--samples", "2"]) == 0
    assert "last row: run config, scale 160, crop 128" in capsys.readouterr().out
    assert Image.open(out).height == 9 * (LABEL + 128 + GAP) + GAP
    save_checkpoint(tmp_path / "tiny" / "final", {"w": torch.zeros(1)},  # a Fashion-MNIST run: 28 px tiles
                    {"model": "tiny", "num_classes": 2, "scale": 28, "crop": 28, "config": recorded})
    assert main(["augment-preview", str(jpeg), "--ckpt", str(tmp_path / "tiny"), "--out", str(out)]) == 0
    tiny = Image.open(out)
    assert tiny.height == 9 * (LABEL + 28 + GAP) + GAP and tiny.width > 300  # titles are not cut to the tiles
    assert main(["augment-preview", str(jpeg), "--set", "augment.preset=alexnet", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "last row: alexnet" in printed and "pca_lighting = 0.1" in printed


@pytest.mark.parametrize("argv, sentence", [
    (["--config", "{tmp}/missing.toml"], "config file not found: {tmp}/missing.toml"),
    (["--config", "{tmp}/noaug.toml"], "config file {tmp}/noaug.toml has no [augment] section to preview"),
    (["--ckpt", "{tmp}/nothing"], "checkpoint not found: {tmp}/nothing.safetensors (with its nothing.json)"),
    (["--config", "{tmp}/noaug.toml", "--ckpt", "{tmp}/x"], "augment-preview takes --config or --ckpt, not both"),
    (["--set", "data.scale=3"], "augment-preview --set takes augment fields only, e.g. --set augment.rotation=5"),
    (["--set", "augment.fill=mirror"], "augment.fill must be one of surround, reflect, border, zeros, got 'mirror'"),
    (["--set", "augment.rotation"], "override 'augment.rotation' must look like key.sub=value"),
])
def test_cli_errors_are_one_sentence(tmp_path, jpeg, capsys, argv, sentence):
    (tmp_path / "noaug.toml").write_text("[data]\nscale = 160\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["augment-preview", str(jpeg), "--out", str(tmp_path / "g.png"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(sentence.replace("{tmp}", str(tmp_path)))
    assert not (tmp_path / "g.png").exists()


def test_preview_user_errors(tmp_path):
    with pytest.raises(MinwaError):
        _run([str(tmp_path / "missing.jpg")])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(MinwaError):
        _run([str(bad), "--out", str(tmp_path / "g.png")])
