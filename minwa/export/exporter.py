"""``export_checkpoint``: a checkpoint becomes one ``.onnx`` or ``.pt2`` file (writes are atomic)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from minwa.errors import MinwaError
from minwa.export import FORMATS
from minwa.evaluate.ensemble import Member
from minwa.export.graph import Probabilities, dense_min_side, example_and_shapes
from minwa.export.metadata import build_metadata
from minwa.export.onnx_file import write_onnx
from minwa.export.pt2 import write_pt2
from minwa.models.checkpoint import load_checkpoint
from minwa.utils.output import prepare_output_file

def export_checkpoint(ckpt, out, fmt: str = "onnx", dense: bool = False) -> Path:
    """Write checkpoint ``ckpt`` to ``out`` as ``fmt``; ``dense``: the FC-as-convolution graph for any
    input size. Returns the path written."""
    if fmt not in FORMATS:
        raise MinwaError(f"export format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    out = prepare_output_file(out, "export file")
    model, meta = load_checkpoint(ckpt, "cpu")
    member = Member(str(ckpt), model.float().eval(), meta)  # its geometry, as eval and predict read it
    dense_min = dense_min_side(member.model, member.in_chans, member.crop) if dense else None
    program = export_program(member.model, member.in_chans, member.crop, dense_min)
    metadata = build_metadata(meta, model=str(meta["model"]), classes=member.classes, scale=member.scale,
                              crop=member.crop, mean=member.mean, std=member.std, channels=member.in_chans,
                              dense_min=dense_min)
    (write_onnx if fmt == "onnx" else write_pt2)(program, out, metadata)
    return out


def export_program(model: torch.nn.Module, channels: int, crop: int,
                   dense_min: int | None = None) -> torch.export.ExportedProgram:
    """torch.export of the probabilities graph (dense from ``dense_min`` px up when given); a model that
    does not trace is one sentence."""
    x, shapes = example_and_shapes(channels, crop, dense_min)
    dense = dense_min is not None
    net = Probabilities(model, dense).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.export.export(net, (x,), dynamic_shapes=shapes)
    except MinwaError:
        raise
    except Exception as e:  # torch.export raises many kinds (UserError, ConstraintViolation, Unsupported)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MinwaError(f"model {type(model).__name__} does not export{' densely' if dense else ''}: {first}") from None
