"""timm's layouts checked on timm's own code, where timm is installed (the lent GPU machines; not the CPU
machines, whose tests build timm's key layout by renaming): for resnet18, resnet50 and vgg16, timm's model
with seeded random weights (BatchNorm statistics drawn too) is saved as its hub does (model.safetensors),
imported by minwa, and both are run on the same inputs in fp32. Prints one line per model and exits non-zero
when a maximum absolute logit difference exceeds 1e-4 (logits scaled to order 1, as in
scripts/torchvision_reference.py).

    python scripts/timm_check.py [--device cuda] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import timm  # installed where this runs; not a minwa dependency
import torch
from safetensors.torch import save_file

from minwa.pretrained import import_weights

sys.path.insert(0, str(Path(__file__).parent))
from torchvision_reference import draw_batchnorm  # noqa: E402  (torchvision is installed where timm is)

MODELS = {"resnet18": "resnet18", "resnet50": "resnet50", "vgg16": "vgg16"}  # minwa --arch: timm name
TOL = 1e-4


def timm_model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = draw_batchnorm(timm.create_model(name, pretrained=False), seed)
    head = model.get_classifier()
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        spread = model(x).std()
        head.weight /= spread
        head.bias /= spread
    return model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    out = Path(args.out or tempfile.mkdtemp(prefix="timm-check-"))
    out.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    print(f"timm {timm.__version__}, torch {torch.__version__}, {args.device}")
    for i, (arch, name) in enumerate(MODELS.items()):
        model = timm_model(name, i)
        path = out / name / "model.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
        imported = import_weights(path, arch=arch)
        x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(100 + i)).to(args.device)
        with torch.no_grad():
            diff = float((model.to(args.device)(x) - imported.model.to(args.device)(x)).abs().max())
        worst = max(worst, diff)
        print(f"{name}: layout {imported.layout.name}, {len(imported.loaded)} tensors loaded, "
              f"{len(imported.left)} left initialised, max |logit difference| {diff:.2e}")
    print("ok" if worst <= TOL else f"FAILED: {worst:.2e} > {TOL}")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
