"""Model-data parallelism (Deep Image §3.2, Krizhevsky's "one weird trick"): conv trunk data-parallel,
FC layers split across ranks.

The conv layers hold few weights and most of the compute: each rank runs them on its own slice of the
batch. The FC layers hold most of the weights: each rank keeps 1/S of every FC layer (S = fc_split) and
they run on the whole batch of the S ranks, gathered before FC1 and scattered back after the last FC, so
their weights are never exchanged — only activations. Built on DTensor's tensor-parallel styles:

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

from minwa.errors import MinwaError


def fc_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's FC layers in forward order (registration order), e.g. VGG's fc6, fc7, fc8."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def fc_plan(names: list[str]) -> dict:
    """The tensor-parallel style of each FC layer, chosen so the batch is gathered once and scattered once."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

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


def split_fc_layers(model: nn.Module, dims) -> list[nn.Linear]:
    """Split the model's FC layers over the 'fc' dimension of ``dims.fc_mesh``; returns the split layers."""
    from torch.distributed.tensor.parallel import parallelize_module

    layers = fc_layers(model)
    if not layers:
        raise MinwaError(f"the hybrid strategy splits FC layers, but {type(model).__name__} has none; "
                         "use parallel.strategy=fsdp")
    parallelize_module(model, dims.fc_mesh["fc"], fc_plan([n for n, _ in layers]))
    _no_inplace_near(model, [n for n, _ in layers])
    return [m for _, m in layers]


def _no_inplace_near(model: nn.Module, names: list[str]) -> None:
    """A split layer hands on a view of its DTensor output; an in-place ReLU/Dropout on that view would
    bypass autograd's custom backward (torch refuses it). Make the FC layers' siblings out-of-place."""
    for name in names:
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        for m in parent.children():
            if getattr(m, "inplace", False) is True:
                m.inplace = False
