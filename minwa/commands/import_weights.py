"""`minwa import-weights`: a torchvision or timm state dict into a minwa checkpoint (minwa.pretrained)."""

HELP = "turn torchvision/timm weights (ImageNet-pretrained) into a minwa checkpoint"
DESCRIPTION = """Turn a torchvision or timm state dict (.safetensors, or .pth/.bin read without unpickling
objects) into a minwa checkpoint (OUT.safetensors + OUT.json) with the source's normalisation, input geometry
and ImageNet class names: resnet18 and resnet50 (torchvision's and timm's layouts), alexnet (torchvision's,
into alexnet-torchvision), vgg16 (torchvision's and timm's, into deepimage16). The architecture is found from
the keys; --arch restricts it. Fine-tune the result with `minwa train --init OUT` (which also takes FILE
directly). See docs/pretrained.md."""

from minwa.utils.output import prepare_output_file


def add_arguments(p):
    p.add_argument("file", metavar="FILE", help="weights: .safetensors, .pth, .pt or .bin")
    p.add_argument("out", metavar="OUT", help="checkpoint to write (OUT.safetensors + OUT.json)")
    p.add_argument("--arch", help="the source's architecture (resnet18, resnet50, alexnet, vgg16; default: from the keys)")
    p.add_argument("--fc", choices=("keep", "reinit"), default="keep",
                   help="keep the source's FC layers (default), or leave minwa's own (deepimage16: 6144 wide) "
                        "freshly initialised")
    p.add_argument("--scale", type=int, default=0, help="shorter side the images are resized to (default: the source's)")
    p.add_argument("--crop", type=int, default=0, help="centre crop fed to the network (default: the source's)")
    p.add_argument("--report", action="store_true", help="list each tensor loaded and each left initialised")


def run(args) -> int:
    from minwa.errors import MinwaError
    from minwa.models.checkpoint import checkpoint_paths, save_checkpoint
    from minwa.pretrained import import_weights  # torch: only when the command runs

    if args.scale < 0 or args.crop < 0:
        raise MinwaError("--scale and --crop must be positive")
    weights, sidecar = checkpoint_paths(args.out)
    for path in (weights, sidecar):
        prepare_output_file(path)
    imported = import_weights(args.file, arch=args.arch, fc=args.fc, scale=args.scale, crop=args.crop)
    save_checkpoint(weights, imported.model, imported.meta)
    m = imported.meta
    if args.report:
        print(imported.report())
    print(f"{imported.layout.name} -> {weights} (minwa '{m['model']}', {m['num_classes']} classes, "
          f"scale {m['scale']} crop {m['crop']}; {len(imported.loaded)} tensors loaded, "
          f"{len(imported.left)} left initialised)")
    if imported.layout.note:
        print(f"note: {imported.layout.note}")
    return 0
