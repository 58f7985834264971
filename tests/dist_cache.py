"""Worker for tests/test_data_sharded_cache.py, launched with ``torchrun --nproc_per_node=N``: on each
rank, the batches of a split cache (``data.shard_cache``) against those of the whole cache, over two
epochs and after a mid-epoch resume, for grey IDX data and colour photo shards, and for shards with damaged
samples skipped (``data.on_bad_sample = "skip"``: each rank finds the damage in its own part only, the
replacements must still be the whole cache's). Writes one JSON per rank.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from minwa.data import DataConfig, build_loader, open_dataset
from minwa.data.sharded_cache import owned
from minwa.parallel import ParallelConfig, init_distributed, shutdown


def compare(ds, cfg: DataConfig, rank: int, world: int) -> dict:
    whole = build_loader(cfg, ds, train=True, rank=rank, world_size=world)
    split = build_loader(DataConfig(**{**cfg.__dict__, "shard_cache": True}), ds, train=True, rank=rank,
                         world_size=world)
    report = {"held": int(split.cache.shape[0]), "expected_held": len(owned(len(ds), rank, world)),
              "batches": 0, "equal": True, "resumed_equal": True, "bad_equal": True}
    for epoch in (0, 1):
        whole.set_epoch(epoch)
        split.set_epoch(epoch)
        for a, b in zip(whole, split, strict=True):
            report["batches"] += 1
            same = all(torch.equal(x, y) for x, y in zip(a, b))
            report["equal"] &= same and b.images.stride() == a.images.stride()
    skipped = lambda loader: [r for r in loader.bad_samples() if r["skipped"]]  # noqa: E731
    report["bad_equal"] = skipped(whole) == skipped(split)
    report["skipped"] = sum(r["skipped"] for r in split.bad_samples())
    # resume: a new split loader from a mid-epoch state yields exactly the rest
    split.set_epoch(2)
    it = iter(split)
    for _ in range(max(1, len(split) // 2)):
        next(it)
    state = split.state_dict()
    rest = [b for b in it]
    again = build_loader(DataConfig(**{**cfg.__dict__, "shard_cache": True}), ds, train=True, rank=rank,
                         world_size=world)
    again.load_state_dict(state)
    for a, b in zip(rest, again, strict=True):
        report["resumed_equal"] &= all(torch.equal(x, y) for x, y in zip(a, b))
    return report


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--idx", required=True)
    p.add_argument("--shards", required=True)
    p.add_argument("--damaged", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    dims = init_distributed(ParallelConfig(strategy="fsdp"), "cpu")
    r, w = dims.rank, dims.world_size
    result = {"idx": compare(open_dataset(a.idx), DataConfig(batch_size=100, seed=5, cache="memory", workers=0), r, w),
              "photos": compare(open_dataset(a.shards), DataConfig(batch_size=4, scale=40, seed=1, cache="memory",
                                                                   workers=0, square="centre"), r, w),
              "damaged": compare(open_dataset(a.damaged), DataConfig(batch_size=4, scale=40, seed=1, cache="memory",
                                                                     workers=0, on_bad_sample="skip", square="centre"), r, w)}
    Path(a.out, f"rank{r}.json").write_text(json.dumps(result))
    shutdown()


if __name__ == "__main__":
    sys.exit(main())
