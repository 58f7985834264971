"""A torchvision or timm state dict into a minwa model, by the tables of ``minwa.pretrained.tables``.

Every tensor of the minwa model is either filled from the source or named as left initialised (the FC
layers with ``fc="reinit"``; BatchNorm's ``num_batches_tracked`` counters when a file omits them, which
inference never reads): nothing is loaded partly by accident. The first source key without a place, the
first minwa key without a source, or the first shape that differs is one sentence naming it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from minwa.errors import MinwaError
from minwa.models import create_model
from minwa.models.base import ModelBase
from minwa.pretrained.imagenet import imagenet1k
from minwa.pretrained.source import read_state_dict
from minwa.pretrained.tables import IMAGENET_MEAN, IMAGENET_STD, Layout, arch_names, layouts_for

FC_MODES = ("keep", "reinit")
_OPTIONAL = "num_batches_tracked"  # BN's step counter: absent from some files, unused by inference


@dataclass
class Imported:
    """The model with the source's weights, its checkpoint sidecar fields, and what came from where."""

    model: ModelBase
    meta: dict
    layout: Layout
    loaded: list[tuple[str, str]]  # (minwa key, source key)
    left: list[str]  # minwa keys left at minwa's initialisation

    def report(self) -> str:
        """What ``--report`` prints: each minwa tensor and the source tensor it came from, then the rest."""
        n = sum(self.model.state_dict()[k].numel() for k, _ in self.loaded)
        lines = [f"{self.layout.name} -> minwa '{self.layout.model}': {len(self.loaded)} tensors "
                 f"({n:,} numbers) loaded, {len(self.left)} left initialised"]
        lines += [f"  loaded  {k}  <-  {src}" for k, src in self.loaded]
        lines += [f"  initialised  {k}" for k in self.left]
        return "\n".join(lines)


def _source_module(layout: Layout, key: str) -> tuple[str, str] | None:
    """(minwa module, source module) of the table row that covers minwa ``key`` (the longest that does)."""
    rows = [r for r in layout.rows if key == r[0] or key.startswith(r[0] + ".")]
    return max(rows, key=lambda r: len(r[0])) if rows else None


def _plan(layout: Layout, target: dict[str, torch.Tensor]) -> dict[str, str | None]:
    """minwa key -> source key (None: no row covers it)."""
    plan = {}
    for k in target:
        row = _source_module(layout, k)
        plan[k] = None if row is None else row[1] + k[len(row[0]):]
    return plan


def _meta_model(layout: Layout, fc: str, num_classes: int = 1000) -> ModelBase:
    """minwa's model for ``layout`` on the meta device (names and shapes, no memory)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "initializing zero-element tensors is a no-op" on meta
        return create_model(layout.model, num_classes, 3, device="meta", **(layout.kwargs if fc == "keep" else {}))


def _overlap(layout: Layout, keys: set[str]) -> tuple[bool, float]:
    """(whether ``keys`` are exactly this layout's, the fraction of them it expects)."""
    expected = set(_plan(layout, _meta_model(layout, "keep").state_dict()).values())
    required = {k for k in expected if k and not k.endswith(_OPTIONAL)}
    exact = required <= keys <= expected
    return exact, len(keys & expected) / max(1, len(keys))


def find_layout(keys: set[str], arch: str | None) -> Layout:
    """The layout whose keys ``keys`` are exactly (among ``arch``'s, or all), else the closest one (whose
    first mismatch ``map_state`` then names)."""
    candidates = layouts_for(arch)
    if not candidates:
        raise MinwaError(f"no import table for architecture '{arch}' (known: {', '.join(arch_names())})")
    scored = [(lay, *_overlap(lay, keys)) for lay in candidates]
    exact = [lay for lay, ok, _ in scored if ok]
    return exact[0] if exact else max(scored, key=lambda s: s[2])[0]


def map_state(layout: Layout, source: dict[str, torch.Tensor], model: ModelBase, fc: str, path
              ) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]], list[str]]:
    """(minwa state dict, loaded (minwa, source) pairs, minwa keys left initialised) or a MinwaError naming
    the first source key without a place, minwa key without a source, or shape that differs."""
    target = model.state_dict()
    plan = _plan(layout, target)
    fc_modules = tuple(f"{m}." for m in model.fc_names) if fc == "reinit" else ()
    expected = {s for s in plan.values() if s}
    stray = next((s for s in source if s not in expected), None)
    if stray is not None:
        raise MinwaError(f"{path}: '{stray}' has no place in {layout.name} (loaded into minwa's '{layout.model}'): "
                         f"not that architecture, or a variant of it")
    state, loaded, left = dict(target), [], []
    for k, src in plan.items():
        if src is None:
            raise MinwaError(f"the {layout.name} table has no row for minwa's '{k}'")  # a table bug, not the file's
        if k.startswith(fc_modules) or (src not in source and k.endswith(_OPTIONAL)):
            left.append(k)
            continue
        if src not in source:
            raise MinwaError(f"{path}: '{src}' (for minwa's '{k}') is missing: not a complete {layout.name} "
                             f"state dict")
        t, want = source[src], target[k]
        if src.rsplit(".", 1)[0] in layout.reshaped and t.numel() == want.numel() and want.dim() == 2:
            t = t.reshape(want.shape)  # a 7×7 (or 1×1) convolution over the whole map is this Linear layer
        if tuple(t.shape) != tuple(want.shape):
            raise MinwaError(f"{path}: '{src}' has shape {list(t.shape)}, minwa's '{k}' ({layout.model}) needs "
                             f"{list(want.shape)}")
        state[k] = t.to(want.dtype)
        loaded.append((k, src))
    return state, loaded, left


def _hub_config(path: Path) -> dict:
    """timm's ``pretrained_cfg`` from the Hugging Face hub's ``config.json`` beside the weights, if any."""
    cfg_file = path.with_name("config.json")
    try:
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise MinwaError(f"{cfg_file} beside the weights is not readable JSON") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("pretrained_cfg"), dict):
        return {}
    pre = dict(cfg["pretrained_cfg"])
    for key in ("label_names", "label_descriptions"):
        if isinstance(cfg.get(key), list):
            pre.setdefault(key, cfg[key])
    return pre


def _classes(num_classes: int, hub: dict) -> tuple[list[str] | None, list[str] | None]:
    names, descriptions = hub.get("label_names"), hub.get("label_descriptions")
    if isinstance(names, list) and len(names) == num_classes:
        ok = isinstance(descriptions, list) and len(descriptions) == num_classes
        return [str(n) for n in names], [str(d) for d in descriptions] if ok else None
    if num_classes == 1000:
        wnids, lemmas = imagenet1k()
        return list(wnids), list(lemmas)
    return None, None


def _geometry(layout: Layout, hub: dict, scale: int, crop: int) -> tuple[int, int]:
    """(scale, crop): given, else timm's ``input_size`` / ``crop_pct`` from the hub config, else the table's."""
    size = hub.get("input_size")
    hub_crop = int(size[-1]) if isinstance(size, list) and size else 0
    pct = hub.get("crop_pct")
    hub_scale = int(math.floor(hub_crop / pct)) if hub_crop and isinstance(pct, (int, float)) and pct > 0 else 0
    crop = crop or hub_crop or layout.crop
    scale = scale or hub_scale or (layout.scale if crop == layout.crop else round(crop * layout.scale / layout.crop))
    if crop > scale:
        raise MinwaError(f"crop {crop} is larger than scale {scale}")
    return scale, crop


def import_weights(path, arch: str | None = None, fc: str = "keep", scale: int = 0, crop: int = 0) -> Imported:
    """Read ``path`` (torchvision or timm state dict), find its layout (among ``arch``'s when given), and
    load it into minwa's model; the sidecar fields carry the source's normalisation, geometry and classes
    (a timm hub ``config.json`` beside the file gives its own)."""
    path = Path(path)
    return import_state(read_state_dict(path), path, arch, fc, scale, crop, hub=_hub_config(path))


def import_state(source: dict[str, torch.Tensor], path, arch: str | None = None, fc: str = "keep", scale: int = 0,
                 crop: int = 0, hub: dict | None = None) -> Imported:
    """:func:`import_weights` of a state dict already in memory (``model.state_dict()`` in a notebook);
    ``path`` only names it in messages and in the sidecar."""
    if fc not in FC_MODES:
        raise MinwaError(f"--fc must be keep or reinit, not '{fc}'")
    path, hub = Path(path), hub or {}
    layout = find_layout(set(source), arch)  # not exactly one: map_state names the first mismatch
    weight = source.get(layout.classifier_weight)
    num_classes = int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else 1000
    kwargs = dict(layout.kwargs) if fc == "keep" else {}
    model = _meta_model(layout, fc, num_classes)  # shapes only: initialising 138M weights to overwrite them costs seconds
    state, loaded, left = map_state(layout, source, model, fc, path)
    if any(not k.endswith(_OPTIONAL) for k in left):  # layers left to minwa's initialisation: build them for real
        model = create_model(layout.model, num_classes, 3, **kwargs)
        fresh = model.state_dict()
        state.update({k: fresh[k] for k in left})
    else:
        state.update({k: torch.zeros((), dtype=torch.long) for k in left})  # BN's step counters
    model.load_state_dict(state, strict=True, assign=True)
    model.eval()
    scale, crop = _geometry(layout, hub, scale, crop)
    if model.fc_head() is not None and crop != model.default_scale:
        raise MinwaError(f"{layout.model}'s FC head reads the map of a {model.default_scale}×{model.default_scale} "
                         f"crop, as {layout.arch} was trained: leave --crop at {model.default_scale}")
    classes, descriptions = _classes(num_classes, hub)
    meta = {"model": layout.model, "model_kwargs": kwargs, "num_classes": num_classes, "in_chans": 3,
            "scale": scale, "crop": crop,
            "mean": [float(v) for v in hub.get("mean", IMAGENET_MEAN)],
            "std": [float(v) for v in hub.get("std", IMAGENET_STD)],
            "imported": {"file": path.name, "layout": layout.name, "fc": fc, "loaded": len(loaded),
                         "left_initialised": left}}
    if classes is not None:
        meta["classes"] = classes
    if descriptions is not None:
        meta["class_descriptions"] = descriptions
    return Imported(model, meta, layout, loaded, left)
