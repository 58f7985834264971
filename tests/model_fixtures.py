"""Small real configurations of the registered models, shared by the model tests."""

from __future__ import annotations

from minwa.models import create_model

# The big models at the same depth and layer kinds, narrow and on small inputs (full size: the meta device).
SMALL = {
    "deepimage16": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "deepimage19": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "deepimage-scaling": dict(widths=(4, 4, 8, 8, 8), fc=(16, 16), img_size=32),
    "alexnet": dict(fc=(16, 16), img_size=67),
    "alexnet-torchvision": dict(fc=(16, 16), img_size=67),
    "inception-bn": dict(width=0.125, img_size=32),
    "resnet18": dict(img_size=32),
    "resnet50": dict(img_size=32),
}


def small_in_chans(name: str) -> int:
    """The big models take colour images, the CPU-sized ones grayscale."""
    return 3 if name in SMALL else 1


def small_model(name: str, num_classes: int = 7, **kwargs):
    """``name`` at its small configuration (the caller seeds torch first when weights matter)."""
    return create_model(name, num_classes, small_in_chans(name), **SMALL.get(name, {}), **kwargs)


def train_tiny_fashion(fashion_dir, path, *, n: int, epochs: int = 1, batch: int = 50, seed: int = 0,
                       classes=None):
    """deepimage-tiny trained with Adam on the first ``n`` real Fashion-MNIST training images (normalised by
    their mean/std), saved as a checkpoint at ``path`` whose classes are ``classes`` (default Fashion's)."""
    import torch
    from torch import nn

    from minwa.data import open_dataset
    from minwa.models.checkpoint import save_checkpoint

    train = open_dataset(fashion_dir, "train")
    x = torch.from_numpy(train.pixels()[:n].copy()).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(train.labels[:n])
    mean, std = float(x.mean()), float(x.std())
    x = (x - mean) / std
    torch.manual_seed(seed)
    model = create_model("deepimage-tiny", 10, 1, batchnorm=True, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, n, batch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch]).backward()
            opt.step()
    return save_checkpoint(path, model, {
        "model": "deepimage-tiny", "model_kwargs": {"batchnorm": True, "dropout": 0.0}, "num_classes": 10,
        "in_chans": 1, "classes": list(classes or train.classes), "scale": 28, "crop": 28, "mean": [mean], "std": [std]})
