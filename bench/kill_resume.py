"""SIGKILL `minwa train` at random moments, resume it, and compare the final weights with an uninterrupted
run, bit for bit: the fault-injection journey behind the "resumes exactly" promise, on any data.

    python bench/kill_resume.py --data PHOTOS_SHARDS --out /tmp/kr --kills 6 -- --model deepimage-tiny \\
        --epochs 20 --set data.scale=64 --set data.crop=56 --set data.batch_size=6 --set save_every=1

Everything after ``--`` goes to `minwa train` (the script adds --quiet, --data, --out and log_every=1).
Each kill hits the whole process group (the loader's workers too) after a random delay within the
straight run's duration. Prints one JSON line per kill and a summary; exit 1 if any run differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def train_cmd(data: str, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "minwa", "train", "--quiet", "--data", data, "--out", str(out),
            "--set", "log_every=1", *extra]


def differing(a: Path, b: Path) -> int:
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    return sum(not torch.equal(wa[k], wb[k]) for k in wa) + len(wa.keys() ^ wb.keys())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("train_args", nargs="*")
    args = p.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    straight = args.out / "straight"
    t0 = time.perf_counter()
    subprocess.run(train_cmd(args.data, straight, args.train_args), check=True, stdout=subprocess.DEVNULL)
    duration = time.perf_counter() - t0
    results = []
    for k in range(args.kills):
        out = args.out / f"kill{k}"
        delay = rng.uniform(0.5, duration)
        proc = subprocess.Popen(train_cmd(args.data, out, args.train_args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        metrics = out / "metrics.jsonl"
        lines = metrics.read_text().count("\n") if metrics.is_file() else 0
        again = ["--resume", str(out)] if out.exists() else []  # killed before it made its folder: start it
        r = subprocess.run(train_cmd(args.data, out, args.train_args) + again, capture_output=True, text=True)
        same_lines = (metrics.read_text().count("\n") == (straight / "metrics.jsonl").read_text().count("\n"))
        rec = {"kill": k, "delay_s": round(delay, 3), "killed": killed, "metric_lines_at_kill": lines,
               "resume_exit": r.returncode, "differing_tensors": differing(straight, out) if r.returncode == 0 else None,
               "metric_lines_match": same_lines}
        results.append(rec)
        print(json.dumps(rec), flush=True)
    ok = all(r["resume_exit"] == 0 and r["differing_tensors"] == 0 and r["metric_lines_match"] for r in results)
    print(json.dumps({"kills": len(results), "killed_mid_run": sum(r["killed"] for r in results),
                      "all_bit_identical": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
