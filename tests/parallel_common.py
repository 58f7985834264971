"""Shared by the parallel tests and their torchrun worker: the model, the data and one SGD step.

The model is the registry's deepimage-tiny (3 conv + 3 FC) in float64 without dropout, so every strategy
must reproduce the single-process full-batch run to rounding (atol 1e-12). The data are real
Fashion-MNIST training images in the real loader's order: rank r gets the contiguous slice r of every
global batch.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

FASHION = os.environ.get("MINWA_FASHION", "/usr/share/datasets/fashion-mnist")
GLOBAL_BATCH = 16
SEED = 7

# test name -> (parallel.strategy, parallel.fc_split)
STRATEGIES = {"none": ("none", 0), "fsdp": ("fsdp", 0), "butterfly": ("butterfly", 0),
              "hybrid": ("hybrid", 0), "hybrid2": ("hybrid", 2), "fsdp-localbn": ("fsdp", 0)}


def make_model(batchnorm: bool = False):
    from minwa.models import create_model

    torch.manual_seed(1234)
    return create_model("deepimage-tiny", num_classes=10, in_chans=1, dropout=0.0, fc=(48, 40),
                        batchnorm=batchnorm, dtype=torch.float64)


def make_optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)


class Batches(list):
    global_batch = GLOBAL_BATCH


def make_batches(steps: int, rank: int = 0, world_size: int = 1) -> Batches:
    """The rank's slices of the first ``steps`` global batches of epoch 0 (uint8 -> float64 in [0, 1])."""
    try:
        from minwa.data import build_loader, open_dataset
    except ImportError:  # the loader is still being built: the same order from minwa.data.order
        return _batches_from_order(steps, rank, world_size)
    from minwa.data.config import DataConfig

    ds = open_dataset(FASHION, split="train")
    cfg = DataConfig(batch_size=GLOBAL_BATCH, workers=0, cache="none", seed=SEED)
    loader = build_loader(cfg, ds, train=True, rank=rank, world_size=world_size)
    out = Batches()
    for i, batch in enumerate(loader):
        if i == steps:
            break
        out.append((batch.images.to(torch.float64) / 255.0, batch.labels))
    return out


def _batches_from_order(steps, rank, world_size):
    import numpy as np

    from minwa.data.idx import load_idx_split
    from minwa.data.order import epoch_permutation, rank_batch

    images, labels = load_idx_split(FASHION, "train")
    order = epoch_permutation(len(labels), SEED, 0)
    out = Batches()
    for b in range(steps):
        idx = rank_batch(order, b, GLOBAL_BATCH, rank, world_size)
        x = torch.from_numpy(np.ascontiguousarray(images[idx])).to(torch.float64) / 255.0
        out.append((x.reshape(len(idx), 1, 28, 28), torch.from_numpy(labels[idx].astype(np.int64))))
    return out


def step(model, opt, x, y, global_batch: int):
    """minwa's loss convention: sum over this rank's samples / global batch; gradients summed over ranks."""
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, reduction="sum") / global_batch
    loss.backward()
    opt.step()
    return loss


def _full(t):
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def grad_norm(model) -> float:
    return float(sum(_full(p.grad).double().pow(2).sum() for p in model.parameters() if p.grad is not None).sqrt())


def full_state(model) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: _full(v).detach().cpu().contiguous() for k, v in sd.items()}
