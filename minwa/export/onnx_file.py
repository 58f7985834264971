"""ONNX through torch.export (the dynamo exporter), the metadata as ``metadata_props``.

Input ``input`` (float32 NCHW, normalised), output ``probabilities`` (float32 N×K); the batch axis (and,
dense, height and width) stay symbolic.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from minwa.errors import MinwaError
from minwa.utils.atomic import atomic_write_bytes

OPSET = 18
_TWO_GB = 2**31


def write_onnx(program: torch.export.ExportedProgram, out: Path, metadata: dict[str, str]) -> None:
    try:
        import onnx  # an optional dependency (pip install minwa[export]); onnxscript is the exporter's
        import onnxscript  # noqa: F401
    except ImportError:
        raise MinwaError("ONNX export needs onnx and onnxscript (pip install 'minwa[export]')") from None
    with _quiet():
        onnx_program = torch.onnx.export(program, dynamo=True, input_names=["input"],
                                         output_names=["probabilities"], opset_version=OPSET, verbose=False)
    proto = onnx_program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    if proto.ByteSize() >= _TWO_GB:
        raise MinwaError(f"the model's weights exceed ONNX's 2 GB single-file limit; export --format pt2 instead")
    onnx.checker.check_model(proto)
    atomic_write_bytes(out, proto.SerializeToString())


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress and warns per op: a command's output is one line."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(level)
