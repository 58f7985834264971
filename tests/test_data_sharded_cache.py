"""``data.shard_cache``: each rank holds a third of the decoded set, and the batches are exactly those of
the whole cache (one torchrun launch of 3 gloo processes: grey IDX data, colour photo shards, and photo
shards with damaged samples skipped)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import photo_folder, small_idx

from minwa.data import DataConfig, build_loader, open_dataset, pack
from minwa.errors import MinwaError

HERE = Path(__file__).resolve().parent


@pytest.mark.dist
def test_split_cache_hands_out_the_whole_caches_batches(tmp_path):
    small_idx(tmp_path / "idx", n=1000, seed=2)
    photo_folder(tmp_path / "photos", per_class=5)
    pack(tmp_path / "photos", tmp_path / "shards", workers=1, progress=False)
    damaged = Path(shutil.copytree(tmp_path / "shards", tmp_path / "damaged"))
    rows = np.load(damaged / "shard-00000.idx")
    tar = bytearray((damaged / "shard-00000.tar").read_bytes())
    for i in (1, 5, 6):  # owned by ranks 1, 2 and 0
        tar[int(rows["offset"][i]) + int(rows["size"][i]) // 2] ^= 0x10
    (damaged / "shard-00000.tar").write_bytes(bytes(tar))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3", "--rdzv_backend=c10d",
           "--rdzv_endpoint=localhost:0", str(HERE / "dist_cache.py"), "--out", str(tmp_path),
           "--idx", str(tmp_path / "idx"), "--shards", str(tmp_path / "shards"), "--damaged", str(damaged)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)
               if (tmp_path / f"rank{r}.json").exists()]
    assert len(reports) == 3, proc.stderr[-3000:]
    for rep in reports:
        for name, got in rep.items():
            assert got["held"] == got["expected_held"] and got["equal"] and got["resumed_equal"], (name, got)
            assert got["batches"] > 0 and got["bad_equal"], (name, got)
    assert sum(r["idx"]["held"] for r in reports) == 1000
    assert sum(r["damaged"]["skipped"] for r in reports) > 0  # damaged samples were met, and replaced alike


def test_split_cache_needs_a_process_group(tmp_path):
    small_idx(tmp_path / "idx", n=100)
    with pytest.raises(MinwaError, match="torchrun"):
        build_loader(DataConfig(cache="memory", shard_cache=True), open_dataset(tmp_path / "idx"), train=True,
                     rank=0, world_size=2)
