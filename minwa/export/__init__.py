"""A trained model leaves minwa: ONNX (through torch.export) and ``.pt2`` (torch.export's ExportedProgram).

``export_checkpoint(ckpt, out, fmt, dense=)`` writes the graph — normalised float32 NCHW in, softmax
probabilities out, dynamic batch (and, dense, dynamic height and width) — with the class names and the
one test-time preprocessing (:mod:`minwa.evaluate.preprocess`) in the file's metadata;
``read_metadata(path)`` reads them back. docs/export.md. Names are imported on first use (torch is heavy).
"""

from minwa.utils.lazy import lazy_package

FORMATS = ("onnx", "pt2")  # here, not in the exporter: the CLI lists them without importing torch

__all__ = ["FORMATS"] + lazy_package(__name__, {
    "export_checkpoint": "minwa.export.exporter",
    "read_metadata": "minwa.export.metadata",
    "load_pt2": "minwa.export.pt2",
})
