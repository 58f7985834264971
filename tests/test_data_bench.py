"""The loader benchmark's corpus and a one-round smoke run (figures are not asserted: not a timed test)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minwa.benchmarks.corpus import make_corpus
from minwa.cli import main
from minwa.data import open_dataset


def test_corpus_is_imagenet_like_jpegs(tmp_path):
    root = make_corpus(tmp_path / "c", 14)
    ds = open_dataset(root)
    assert len(ds) == 14 and len(ds.classes) == 7
    sizes = {ds.image(i).shape for i in range(len(ds))}
    assert sizes <= {(375, 500, 3), (500, 375, 3)}
    assert all(f.read_bytes()[:3] == b"\xff\xd8\xff" for f in ds.files)
    assert np.std(ds.image(0)) > 20  # a photograph, not a flat test card
    assert make_corpus(tmp_path / "c", 14) == root  # complete: not made again


def test_loader_benchmark_smoke(tmp_path, capsys):
    pytest.importorskip("webdataset")
    assert main(["bench", "loader", "--set", "make_corpus=48", "--set", f"work={tmp_path}", "--set", "rounds=1",
                 "--set", "size=64", "--set", "batch_size=8", "--set", "workers=2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("minwa_img_s", "pil_dataloader_img_s", "webdataset_img_s", "decode_ceiling_img_s"):
        assert out[key] > 0, key
    assert out["settings"]["images"] == 48 and out["cpu_us_per_image"]["minwa"] > 0


def test_integrity_benchmark_smoke(capsys):
    assert main(["bench", "integrity", "--set", "images=3", "--set", "rounds=1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 3 and 0 < out["crc_share_of_decode"]["decode_full"] < 1
    assert set(out["us_per_100kb"]) == {"crc32", "decode_full", "decode_for_224"}
