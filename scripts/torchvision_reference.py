"""torchvision's own models, for tests/test_import_weights.py: run by Debian's system python3 (python3-torch,
python3-torchvision), never by minwa's venv, so the reference is torchvision's code and not minwa's.

For each architecture it builds torchvision's model with seeded random weights (BatchNorm's scale, shift and
running statistics drawn too, so a wrongly mapped BN cannot hide behind the identity init; the classifier
scaled so the logits are of order 1, so a 1e-4 tolerance means something), saves its state dict
(``ARCH.pth``, torch.save: this torchvision has no safetensors) and its fp32 logits on the given images,
preprocessed as torchvision's ImageNet weights expect (shorter side 256, centre 224, ImageNet mean/std),
into ``reference.pth``: {"input": N×3×224×224, "logits": {arch: N×1000}, "versions": {...}}.

    /usr/bin/python3 scripts/torchvision_reference.py OUT_DIR IMAGE... [--arch resnet18 ...] [--seed 0]
"""

import argparse
import os

import torch
import torchvision
from PIL import Image
from torchvision import transforms

ARCHS = ("resnet18", "resnet50", "alexnet", "vgg16")


def draw_batchnorm(model: torch.nn.Module, counter: int = 0) -> torch.nn.Module:
    """BatchNorm's scale, shift and running statistics drawn (the torch seed set by the caller), in eval mode:
    a wrongly mapped BN cannot hide behind the identity init. scripts/timm_check.py uses it too."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(counter)
    return model.eval()


def randomise(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return draw_batchnorm(getattr(torchvision.models, arch)(), seed + 7)  # torchvision's init, then BN drawn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--arch", action="append", choices=ARCHS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("REFERENCE_THREADS", "1")))
    prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    x = torch.stack([prep(Image.open(p).convert("RGB")) for p in args.images])
    os.makedirs(args.out, exist_ok=True)
    logits = {}
    for i, arch in enumerate(args.arch or ARCHS):
        model = randomise(arch, args.seed + i)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        seen = []
        hook = last.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
        with torch.no_grad():
            spread = model(x).std()  # one forward (CPU time is short): rescale, then rerun only the classifier
            last.weight /= spread
            last.bias /= spread
            logits[arch] = last(seen[0])
        hook.remove()
        torch.save(model.state_dict(), os.path.join(args.out, f"{arch}.pth"))
    versions = {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}
    torch.save({"input": x, "logits": logits, "versions": versions}, os.path.join(args.out, "reference.pth"))
    print(f"torchvision {versions['torchvision']} (torch {versions['torch']}): {', '.join(logits)} on {len(x)} images")


if __name__ == "__main__":
    main()
