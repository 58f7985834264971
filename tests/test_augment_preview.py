"""`minwa augment-preview`: the Figure 4 grid is written, has the right size and shows real variation."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from minwa.commands import augment_preview
from minwa.errors import MinwaError

skdata = pytest.importorskip("skimage.data")


def _run(argv):
    p = argparse.ArgumentParser()
    augment_preview.add_arguments(p)
    return augment_preview.run(p.parse_args(argv))


def test_preview_grid_png(tmp_path):
    src = tmp_path / "chelsea.jpg"
    Image.fromarray(skdata.chelsea()).save(src, quality=92)
    out = tmp_path / "grid.png"
    assert _run([str(src), "--out", str(out), "--scale", "160", "--crop", "128", "--samples", "3"]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(np.float32)
    rows, gap, label = 9, 6, 22  # original + 7 transforms + all combined
    assert sheet.shape == (rows * (label + 128 + gap) + gap, gap + 3 * (128 + gap), 3)
    assert sheet.std() > 30  # a photograph, not a blank page

    def tile(row, col):
        y = gap + row * (label + 128 + gap) + label
        x = gap + col * (128 + gap)
        return sheet[y : y + 128, x : x + 128]

    centre = tile(0, 1)
    for row in range(1, rows):  # every transform row changes the picture, and its examples differ
        assert np.abs(tile(row, 0) - centre).mean() > 0.5 or np.abs(tile(row, 1) - centre).mean() > 0.5, row
        assert np.abs(tile(row, 0) - tile(row, 2)).mean() > 0.2, row


def test_preview_user_errors(tmp_path):
    with pytest.raises(MinwaError):
        _run([str(tmp_path / "missing.jpg")])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(MinwaError):
        _run([str(bad), "--out", str(tmp_path / "g.png")])
