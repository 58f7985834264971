"""Where the streaming loader's CPU time goes between the main process and its decode workers.

``minwa bench loader`` reports CPU per image for workers and main process together; this splits it (and
counts minor page faults), epoch by epoch, with the consumer a plain ``for batch in loader`` loop that
holds each batch until it asks for the next. Run: ``python bench/loader_cpu_split.py SHARDS [--size 224]
[--workers 2] [--epochs 4]``; the first epoch (slots allocated, pages first touched) is not reported.
"""

from __future__ import annotations

import json
import time

from minwa.benchmarks.cputime import usage
from minwa.benchmarks.loader import script_parser
from minwa.data import DataConfig, build_loader, open_dataset


def main():
    p = script_parser(__doc__.splitlines()[0], "a folder of minwa shards")
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args()
    ds = open_dataset(a.folder)
    cfg = DataConfig(scale=a.size, batch_size=a.batch_size, workers=a.workers, cache="none", seed=0)
    rows = []
    for epoch in range(a.epochs):
        u0, t0, n = usage(), time.perf_counter(), 0
        for batch in build_loader(cfg, ds, train=True, epoch=epoch):
            n += len(batch.images)
        wall, u1 = time.perf_counter() - t0, usage()
        d = {k: u1[k] - u0[k] for k in u0}
        rows.append({"epoch": epoch, "images_per_s": round(n / wall, 1),
                     "main_cpu_us_per_image": round(d["main_cpu"] / n * 1e6, 1),
                     "workers_cpu_us_per_image": round(d["workers_cpu"] / n * 1e6, 1),
                     "main_faults_per_image": round(d["main_faults"] / n, 2),
                     "workers_faults_per_image": round(d["workers_faults"] / n, 2)})
    print(json.dumps(rows[1:], indent=2))


if __name__ == "__main__":
    main()
