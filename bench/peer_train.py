#!/usr/bin/env python3
"""The yardstick: Fashion-MNIST trained the way most PyTorch users write it.

Tensors in a Dataset with per-sample flips and translations, torch's DataLoader, a small VGG-style CNN
with BatchNorm, fp32, SGD momentum with a one-cycle schedule, batch 256, test accuracy after every epoch.
Deliberately free of minwa: it reads the IDX files with numpy and imports nothing but torch and numpy.
Prints one JSON line per epoch and a final JSON line ({"final": true, ...}).

    python bench/peer_train.py --data /usr/share/datasets/fashion-mnist --epochs 5
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root, split):
    prefix = "train" if split == "train" else "t10k"
    find = lambda stem: next(os.path.join(root, f) for f in os.listdir(root) if f.startswith(stem))
    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    return torch.from_numpy(x.copy()).float().div(255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class Augmented(Dataset):
    """Random horizontal flip and a random translation of up to 2 pixels (zero padding)."""

    def __init__(self, x, y, mean, std):
        self.x, self.y, self.mean, self.std = x, y, mean, std

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = self.x[i]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        padded = F.pad(img, (2, 2, 2, 2))
        dx, dy = torch.randint(0, 5, (2,)).tolist()
        img = padded[:, dy:dy + 28, dx:dx + 28]
        return (img - self.mean) / self.std, self.y[i]


def make_net():
    def block(ci, co):
        return [nn.Conv2d(ci, co, 3, padding=1), nn.BatchNorm2d(co), nn.ReLU(),
                nn.Conv2d(co, co, 3, padding=1), nn.BatchNorm2d(co), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(256, 10))


def evaluate(net, x, y, mean, std):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (net((x[i:i + 1000] - mean) / std).argmax(1) == y[i:i + 1000]).sum().item()
    net.train()
    return correct / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--time-budget", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--target", type=float, default=0, help="stop once test accuracy reaches this")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    x, y = load(args.data, "train")
    xt, yt = load(args.data, "test")
    mean, std = x.mean().item(), x.std().item()
    loader = DataLoader(Augmented(x, y, mean, std), batch_size=256, shuffle=True, num_workers=args.workers,
                        drop_last=True, persistent_workers=args.workers > 0)
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=args.epochs * len(loader))
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_time, images, acc, to_target = 0.0, 0, 0.0, None
    for epoch in range(args.epochs):
        te = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            images += len(xb)
        train_time += time.perf_counter() - te
        acc = evaluate(net, xt, yt, mean, std)
        elapsed = time.perf_counter() - t0
        print(json.dumps({"epoch": epoch + 1, "time": elapsed, "test_acc": acc, "loss": loss.item()}), flush=True)
        if args.target and acc >= args.target and to_target is None:
            to_target = elapsed
            break
        if args.time_budget and elapsed >= args.time_budget:
            break
    print(json.dumps({"final": True, "final_accuracy": acc, "seconds": time.perf_counter() - t0,
                      "seconds_to_target": to_target, "images_per_s": images / max(train_time, 1e-9),
                      "setup_seconds": setup}), flush=True)


if __name__ == "__main__":
    main()
