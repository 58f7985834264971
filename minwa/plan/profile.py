"""Per-layer FLOPs and bytes of a model at an input size, measured, not typed in.

The model is built on the meta device (no memory, no time) and one forward + backward of a 2-image batch
runs under ``torch.utils.flop_counter.FlopCounterMode`` (the counter ``minwa bench throughput`` uses for
its MFU); forward hooks on the leaf modules record, in execution order, the elements each layer reads and
writes and the weights it owns. Everything is kept per image, so any batch is a multiplication.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from minwa.models import create_model
from minwa.models.checkpoint import build_model_from_meta, read_meta
from minwa.models.registry import model_accepts
from minwa.parallel.parallelize import _units  # the FSDP units minwa really wraps: one definition

_PROBE = 2  # images in the measured batch


@dataclass
class Layer:
    name: str
    kind: str  # the module's class name
    fwd_flops: float  # per image
    bwd_flops: float  # per image (input and weight gradients, as autograd runs them)
    act_elems: float  # per image: elements read + written in forward
    out_elems: float  # per image: elements written (what backward keeps)
    params: int  # weights the module owns directly
    in_features: int = 0  # Linear only
    out_features: int = 0


@dataclass
class ModelProfile:
    name: str
    size: int
    in_chans: int
    layers: list[Layer]  # leaf modules in forward execution order
    units: list[tuple[str, int]]  # FSDP units (name, parameters), forward order; the root's last, as "<root>"
    fc_names: list[str]  # the model's FC layers (hybrid splits these)
    params: int

    @property
    def fwd_flops(self) -> float:
        return sum(l.fwd_flops for l in self.layers)

    @property
    def bwd_flops(self) -> float:
        return sum(l.bwd_flops for l in self.layers)


def _build(model: str, ckpt: str, size: int, num_classes: int):
    if ckpt:
        meta = read_meta(ckpt)
        net = build_model_from_meta({**meta, "model_kwargs": {**meta.get("model_kwargs", {}), "device": "meta"}},
                                    device="meta")
        return meta["model"], net, size or meta.get("crop") or net.default_scale
    kwargs = {"img_size": size} if size and model_accepts(model, "img_size") else {}
    net = create_model(model, num_classes=num_classes, device="meta", **kwargs)
    return model, net, size or net.default_scale


def profile_model(model: str = "deepimage16", size: int = 0, num_classes: int = 1000, ckpt: str = "") -> ModelProfile:
    """Measure ``model`` (or the checkpoint ``ckpt``'s) at a ``size``×``size`` input (0: its default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "initializing zero-element tensors is a no-op" on meta
        name, net, size = _build(model, ckpt, size, num_classes)
    net.train()
    leaves = {m: n for n, m in net.named_modules() if n and not any(True for _ in m.children())}
    seen: dict[str, Layer] = {}

    def hook(m, inputs, output):
        n = leaves[m]
        ins = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
        outs = output.numel() if isinstance(output, torch.Tensor) else 0
        lin = isinstance(m, nn.Linear)
        seen.setdefault(n, Layer(n, type(m).__name__, 0.0, 0.0, (ins + outs) / _PROBE, outs / _PROBE,
                                 sum(p.numel() for p in m.parameters(recurse=False)),
                                 m.in_features if lin else 0, m.out_features if lin else 0))

    handles = [m.register_forward_hook(hook) for m in leaves]
    x = torch.empty(_PROBE, net.in_chans, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        y = net(x)
        fwd = copy.deepcopy(counter.get_flop_counts())
        y.float().sum().backward()
        both = counter.get_flop_counts()
    for h in handles:
        h.remove()
    root = type(net).__name__
    for layer in seen.values():
        key = f"{root}.{layer.name}"
        f = sum(fwd.get(key, {}).values())
        layer.fwd_flops = f / _PROBE
        layer.bwd_flops = (sum(both.get(key, {}).values()) - f) / _PROBE
    wrapped = set(_units(net, set()))
    units = [(n, sum(p.numel() for p in m.parameters(recurse=False))) for n, m in net.named_modules() if m in wrapped]
    in_units = sum(p for _, p in units)
    total = sum(p.numel() for p in net.parameters())
    units.append(("<root>", total - in_units))
    return ModelProfile(name, size, net.in_chans, list(seen.values()), units,
                        [n for n, _ in net.named_fc_layers()], total)
