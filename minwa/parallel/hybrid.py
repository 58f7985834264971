"""Model-data parallelism (Deep Image §3.2, Krizhevsky's "one weird trick"): conv trunk data-parallel,
FC layers split across ranks.

The conv layers hold few weights and most of the compute: each rank runs them on its own slice of the
batch. The FC layers (the ones the model names: ``ModelBase.named_fc_layers``) hold most of the weights:
each rank keeps 1/S of every FC layer (S = fc_split) and they run on the whole batch of the S ranks,
gathered before FC1 and scattered back after the last FC, so their weights are never exchanged — only
activations. Built on DTensor's tensor-parallel styles:

- FC1: ``ColwiseParallel(input_layouts=Shard(0))`` — all-gather the batch, each rank computes its slice
  of the output neurons;
- then alternately ``RowwiseParallel`` (sum the partial products) and ``ColwiseParallel`` on the
  replicated batch; the last FC is ``RowwiseParallel(output_layouts=Shard(0))``: a reduce-scatter hands
  each rank back the logits of its own samples. An odd count ends with two row-parallel layers (the
  second one takes the replicated batch and slices its input locally, no communication).

Gradients: the FC shards see the S ranks' whole batch, so with the loss "sum over the rank's samples /
global batch" their gradients are already the sum over those ranks (a per-rank *mean* loss would make
them S× too large — the trap DESIGN.md records). Across FC replicas and for the trunk, FSDP sums.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from minwa.models.base import ModelBase

_INPLACE = (nn.ReLU, nn.Dropout)  # the in-place layers beside the registered models' FC layers


def fc_plan(names: list[str]) -> dict:
    """The tensor-parallel style of each FC layer, chosen so the batch is gathered once and scattered once."""
    k = len(names)
    if k == 1:  # a lone classifier: slice its inputs (all-to-all), reduce-scatter its outputs
        return {names[0]: RowwiseParallel(input_layouts=Shard(0), output_layouts=Shard(0))}
    plan = {names[0]: ColwiseParallel(input_layouts=Shard(0))}
    prev = "col"
    for i, name in enumerate(names[1:], start=1):
        last = i == k - 1
        if prev == "col":
            plan[name] = RowwiseParallel(output_layouts=Shard(0) if last else Replicate())
            prev = "row"
        elif last:
            plan[name] = RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(0))
        else:
            plan[name] = ColwiseParallel(input_layouts=Replicate())
            prev = "col"
    return plan


def split_fc_layers(model: ModelBase, dims) -> list[nn.Linear]:
    """Split the model's FC layers over the 'fc' dimension of ``dims.fc_mesh``; returns the split layers."""
    names = [name for name, _ in model.named_fc_layers()]
    parallelize_module(model, dims.fc_mesh["fc"], fc_plan(names))
    _no_inplace_near(model, names)
    return model.fc_layers()


def _no_inplace_near(model: nn.Module, names: list[str]) -> None:
    """A split layer hands on a view of its DTensor output; an in-place ReLU/Dropout on that view would
    bypass autograd's custom backward (torch refuses it). Make the FC layers' siblings out-of-place."""
    for name in names:
        for m in model.get_submodule(name.rpartition(".")[0]).children():
            if isinstance(m, _INPLACE):
                m.inplace = False
