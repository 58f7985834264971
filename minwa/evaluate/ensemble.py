"""Checkpoints as ensemble members, and the forward passes that give each view's softmax.

A *view* is (test scale S, mirrored or not). For each member and view the images go through the one
test-time preprocessing (:mod:`minwa.evaluate.preprocess`: the centre square resized to S×S, centre-cropped
to the member's training crop C) or — dense testing — are fed whole, shorter side S, to the
FC-as-convolution network (:mod:`minwa.evaluate.dense`). Mirrored and plain copies go
through the network as one batch. Combining is plain arithmetic on softmax outputs (§5.1): the mean over
a member's views, then the mean over members, so models trained at different scales fuse directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from minwa.errors import MinwaError
from minwa.evaluate import preprocess as P
from minwa.evaluate import views as V
from minwa.evaluate.dense import DenseProbs
from minwa.utils.device_caps import autocast_for


@dataclass
class Member:
    """One model of the ensemble with what its checkpoint says about its inputs."""

    name: str
    model: nn.Module
    meta: dict
    _dense: nn.Module | None = field(default=None, repr=False)

    @property
    def crop(self) -> int:
        return int(self.meta.get("crop") or self.meta.get("scale") or getattr(self.model, "default_scale", 224))

    @property
    def scale(self) -> int:
        return int(self.meta.get("scale") or self.crop)

    @property
    def in_chans(self) -> int:
        return int(self.meta.get("in_chans", getattr(self.model, "in_chans", 3)))

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [str(i) for i in range(self.meta["num_classes"])])

    @property
    def mean(self):
        return self.meta.get("mean") or [0.5]

    @property
    def std(self):
        return self.meta.get("std") or [0.5]

    def dense(self) -> nn.Module:
        if self._dense is None:
            self._dense = DenseProbs(self.model).eval()
        return self._dense


def member_from_model(model: nn.Module, meta: dict, name: str = "model") -> Member:
    """Wrap an in-memory model (e.g. the trainer's) with a checkpoint-style ``meta``."""
    meta = {"num_classes": getattr(model, "num_classes", None), **meta}
    return Member(name, model.eval(), meta)


def load_members(ckpts, device) -> list[Member]:
    """Load checkpoints for evaluation; all must predict the same classes in the same order."""
    from minwa.models.checkpoint import load_checkpoint

    require_ckpts(ckpts)
    members = []
    for path, name in zip(ckpts, member_names(ckpts)):
        model, meta = load_checkpoint(path, device)
        members.append(Member(name, model.eval(), meta))
    check_compatible(members)
    return members


def require_ckpts(ckpts) -> None:
    if not ckpts:
        raise MinwaError("no checkpoint given (--ckpt PATH, repeat it for an ensemble)")


def member_names(ckpts) -> list[str]:
    """Short distinct names: the file stem (a run folder's name for ``final``), the parent added on clashes."""
    def short(p, parents):
        p = Path(p)
        p = p / "final" if p.is_dir() else p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
        parts = p.parts[-1 - parents:]
        if parents == 0 and parts[-1] == "final" and len(p.parts) > 1:
            parts = p.parts[-2:-1]
        return "/".join(parts)

    for parents in range(4):
        names = [short(c, parents) for c in ckpts]
        if len(set(names)) == len(names):
            return names
    return [f"{i}:{n}" for i, n in enumerate(names)]


def check_compatible(members: list[Member]) -> None:
    first = members[0]
    for m in members[1:]:
        if m.classes != first.classes:
            raise MinwaError(f"checkpoints {first.name} and {m.name} predict different classes; an ensemble needs the same classes in the same order")


def prepare(members: list[Member], device, channels_last: bool = True) -> None:
    """Move to ``device`` in eval mode; channels_last pays for convolutions on CPU and GPU alike."""
    for m in members:
        m.model.to(device).eval()
        if channels_last:
            m.model.to(memory_format=torch.channels_last)
        m._dense = None


@torch.inference_mode()
def view_probs(member: Member, images, scales, flip: bool, dense: bool, device,
               precision: str = "fp32", channels_last: bool = True) -> dict[tuple[int, bool], torch.Tensor]:
    """Softmax of every view of every image: ``{(S, mirrored): float32 (n, K) on CPU}``.

    ``images``: uint8 H×W×C arrays of any sizes, or one N×H×W×C array. One forward pass per test scale
    (plain and mirrored together) for centre crops; per scale and resized size when dense."""
    device = torch.device(device)
    dtype = next(member.model.parameters()).dtype
    n, k = len(images), len(member.classes)
    out = {(s, f): torch.empty(n, k) for s in scales for f in ((False, True) if flip else (False,))}
    net = member.dense() if dense else member.model
    for s, idx, x in V.scaled_batches(images, scales, dense, device):
        x = P.crop_normalise(x, None if dense else member.crop, member.mean, member.std, member.in_chans)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        x = x.to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(precision, device):
            p = net(x) if dense else torch.softmax(net(x).float(), dim=1)
        p = p.float().cpu()
        out[(s, False)][idx] = p[: len(idx)]
        if flip:
            out[(s, True)][idx] = p[len(idx):]
    return out


def mean_probs(probs: dict, keys) -> torch.Tensor:
    """Average of the softmax outputs of the given views."""
    keys = list(keys)
    return sum(probs[k] for k in keys) / len(keys)


def ensemble_probs(per_member: list[torch.Tensor]) -> torch.Tensor:
    """Average of the members' (already view-averaged) softmax outputs, each member weighted equally."""
    return sum(per_member) / len(per_member)
