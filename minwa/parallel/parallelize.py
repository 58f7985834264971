"""Apply a parallel strategy to a plain single-device model, from outside, in one fixed order
(torchtitan's):

0. BatchNorm over the global batch (``parallel.sync_batchnorm``, several ranks);
1. FC splitting (``hybrid``: tensor-parallel FC layers, see :mod:`minwa.parallel.hybrid`);
2. activation checkpointing (``checkpointing``: the model's own ``set_grad_checkpointing``);
3. ``torch.compile`` (``compile``), of the split and checkpointed model, so the graph sees both;
4. mixed precision (``parallel.mixed_precision`` with ``param_dtype``, fsdp and hybrid): FSDP gathers the
   parameters in ``param_dtype`` and reduces gradients in float32 over float32 master weights;
5. data parallelism: FSDP2 (``fsdp``, and the trunk + FC replicas of ``hybrid``) or DDP with the
   butterfly hook (``butterfly``).

Gradient convention, the same for every strategy: the caller's loss on each rank is "sum of per-sample
losses over the rank's samples / global batch size", and the gradients after backward are the SUM over
ranks — i.e. exactly the single-process full-batch gradient. FSDP2 averages by default; minwa sets its
divide factor to 1 with sum reduction (gloo has no PREMUL_SUM, so sum reduction is forced).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from minwa.errors import MinwaError
from minwa.parallel.butterfly import wrap_butterfly
from minwa.parallel.config import ParallelConfig
from minwa.parallel.hybrid import split_fc_layers
from minwa.parallel.sync_batchnorm import convert_sync_batchnorm

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _units(model: nn.Module, skip: set[int]) -> list[nn.Module]:
    """Layers that own weights, in forward (registration) order: each becomes one FSDP unit, so the
    all-gather of the next one overlaps the current one's compute. Norm layers ride with the root."""
    return [m for m in model.modules()
            if m is not model and id(m) not in skip and not isinstance(m, _NORMS)
            and any(True for _ in m.parameters(recurse=False))]


def _contiguous_params(model: nn.Module) -> None:
    """FSDP shards flat row-major storage, so channels_last conv weights go back to contiguous. Activations
    stay channels_last (a conv follows its input's memory format); FSDP all-gathers fresh weights anyway."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.is_contiguous():
                p.data = p.data.contiguous()


def _sum_gradients(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)


def _prefetch_chain(units: list[nn.Module]) -> None:
    """Lazy update: each layer's weights are all-gathered while the previous layer computes."""
    for a, b in zip(units, units[1:]):
        a.set_modules_to_forward_prefetch([b])


def _mp_policy(cfg: ParallelConfig, param_dtype):
    if param_dtype is None or not cfg.mixed_precision:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)


def _between(model: nn.Module, checkpointing: bool, compile: bool) -> Callable[[nn.Module], nn.Module] | None:
    """Steps 2 and 3, applied after FC splitting and before data parallelism."""
    if checkpointing and not hasattr(model, "set_grad_checkpointing"):
        raise MinwaError(f"model {type(model).__name__} has no activation checkpointing; set model.checkpointing=false")
    if not (checkpointing or compile):
        return None

    def apply(m: nn.Module) -> nn.Module:
        if checkpointing:
            m.set_grad_checkpointing(True)
        return torch.compile(m) if compile else m

    return apply


def mixed_precision_dtype(cfg: ParallelConfig, precision: str) -> torch.dtype | None:
    """FSDP's compute dtype for a run in ``precision``: bfloat16 for bf16 runs with
    ``parallel.mixed_precision``, else None (parameters used as they are)."""
    return torch.bfloat16 if cfg.mixed_precision and precision == "bf16" else None


def parallelize(model: nn.Module, dims, cfg: ParallelConfig, param_dtype: torch.dtype | None = None, *,
                checkpointing: bool = False, compile: bool = False) -> nn.Module:
    """Return ``model`` spread over the ranks of ``dims`` by ``dims.strategy``, with the module
    docstring's steps applied in its order (only 2 and 3 for strategy 'none').

    ``param_dtype`` (e.g. torch.bfloat16, what ``minwa train`` passes for precision=bf16): the compute
    dtype of FSDP's mixed precision, used when ``cfg.mixed_precision``.
    """
    between = _between(model, checkpointing, compile)
    model = model.to(dims.device)
    if cfg.sync_batchnorm and dims.world_size > 1 and dims.strategy != "none":
        model = convert_sync_batchnorm(model, dims.device)
    if dims.strategy == "none":  # (a 1-rank group with a strategy still applies it: the bench measures overhead)
        return between(model) if between else model
    if dims.strategy == "butterfly":
        model = between(model) if between else model
        return wrap_butterfly(model, dims, cfg.bucket_mb)

    _contiguous_params(model)
    mp = _mp_policy(cfg, param_dtype)
    fc: list[nn.Module] = []
    if dims.strategy == "hybrid":
        fc = split_fc_layers(model, dims)
        # the split layers return views of DTensor outputs; their in-place neighbours were made out-of-place
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    if between:
        model = between(model)
    units = _units(model, {id(m) for m in fc})
    for m in units:
        fully_shard(m, mesh=dims.world_mesh, reshard_after_forward=False, mp_policy=mp)
    for m in fc:  # split FC layers: data-parallel only across FC replicas
        fully_shard(m, mesh=dims.fc_mesh["replica"], reshard_after_forward=False, mp_policy=mp)
    # the root holds the norm layers: their parameters stay float32, beside their float32 running statistics
    fully_shard(model, mesh=dims.world_mesh, reshard_after_forward=False, mp_policy=_mp_policy(cfg, None))
    _sum_gradients(model)
    if cfg.prefetch:
        _prefetch_chain(units)
    return model
