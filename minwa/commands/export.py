"""`minwa export`: a checkpoint as one ONNX or .pt2 file, its classes and preprocessing in the metadata."""

from minwa.export import FORMATS

HELP = "export a checkpoint to ONNX or .pt2 (torch.export), with its classes and preprocessing in the file"
DESCRIPTION = """Export a checkpoint. The graph takes float32 NCHW images preprocessed as the file's
metadata says (minwa.preprocessing: scale, crop, mean, std, RGB) and returns softmax probabilities over
minwa.classes; the batch size is dynamic. --dense exports the FC-as-convolution graph for any input size
(height and width dynamic). See docs/export.md."""


def add_arguments(p):
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint (x.safetensors, x.json, or a run folder)")
    p.add_argument("out", metavar="OUT", help="the file to write (e.g. model.onnx, model.pt2)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="onnx or pt2 (default: from OUT's suffix, else onnx)")
    p.add_argument("--dense", action="store_true", help="the dense graph: any input height and width")


def run(args) -> int:
    from minwa.export import export_checkpoint

    fmt = args.format or ("pt2" if str(args.out).endswith(".pt2") else "onnx")
    path = export_checkpoint(args.ckpt, args.out, fmt, dense=args.dense)
    print(f"wrote {path} ({fmt}{', dense' if args.dense else ''})")
    return 0
