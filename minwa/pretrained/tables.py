"""The mapping tables: which module of a torchvision or timm state dict fills which module of minwa's model.

One :class:`Layout` per (architecture, key layout). A table row is ``(minwa module, source module)``; every
tensor under the minwa module (``weight``, ``bias``, BN's ``running_mean`` …) comes from the same name under
the source module. Rows are written out, not searched for, so a file that is something else fails on its
first unmatched key (``minwa.pretrained.convert``). docs/pretrained.md prints these tables.

timm's ResNet-18/50 use torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1`` …
``downsample.0/1``, ``fc``: timm/models/resnet.py, ``BasicBlock``/``Bottleneck``/``downsample_conv``), so
one table serves both. timm's VGG-16 keeps torchvision's ``features`` but holds FC1/FC2 as convolutions
(``pre_logits.fc1`` 4096×512×7×7, ``pre_logits.fc2`` 4096×4096×1×1, ``ConvMlp`` in timm/models/vgg.py) and
the classifier as ``head.fc``: those weights are reshaped to minwa's Linear layers (the same numbers in
the same order: a 7×7 convolution over a 7×7 map is FC1 on the flattened map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # 0..1 units, as minwa's mean/std
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Layout:
    arch: str  # the source's architecture name (torchvision's): what --arch takes
    source: str  # whose key layout: "torchvision", "timm", or "torchvision, timm"
    model: str  # the minwa registry model it loads into
    rows: tuple[tuple[str, str], ...]  # (minwa module, source module)
    classifier: str  # the source's softmax layer (its weight's rows are the classes)
    kwargs: dict = field(default_factory=dict)  # minwa options that make the model the source's (--fc keep;
    # --fc reinit builds the model with its own defaults: deepimage16's 6144-wide FC layers)
    reshaped: tuple[str, ...] = ()  # source modules stored as convolutions that minwa holds as Linear layers
    scale: int = 256  # the source's evaluation geometry: shorter side resized to `scale`, centre `crop`
    crop: int = 224
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.arch} ({self.source})"

    @property
    def classifier_weight(self) -> str:
        return f"{self.classifier}.weight"


def _resnet_rows() -> tuple[tuple[str, str], ...]:
    return tuple((m, m) for m in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"))


_VGG16_FEATURES = (  # torchvision's flat features.N (ReLU and max-pool between) → minwa's stages
    ("features.0.0", "features.0"), ("features.0.2", "features.2"),
    ("features.1.0", "features.5"), ("features.1.2", "features.7"),
    ("features.2.0", "features.10"), ("features.2.2", "features.12"), ("features.2.4", "features.14"),
    ("features.3.0", "features.17"), ("features.3.2", "features.19"), ("features.3.4", "features.21"),
    ("features.4.0", "features.24"), ("features.4.2", "features.26"), ("features.4.4", "features.28"),
)
_VGG_NOTE = ("deepimage16's conv stack is VGG-16's (13 3×3 convs, the same pools); its FC layers are 6144 wide, "
             "VGG-16's 4096: --fc keep loads VGG-16's FC layers into deepimage16 with fc=[4096, 4096] (VGG-16 "
             "exactly); --fc reinit keeps deepimage16's 6144-wide FC layers, freshly initialised")

LAYOUTS: tuple[Layout, ...] = (
    Layout("resnet18", "torchvision, timm", "resnet18", _resnet_rows(), "fc"),
    Layout("resnet50", "torchvision, timm", "resnet50", _resnet_rows(), "fc",
           note="torchvision's IMAGENET1K_V2 weights were evaluated at scale 232: pass --scale 232"),
    Layout("alexnet", "torchvision", "alexnet-torchvision", (
        ("features.0.0", "features.0"), ("features.1.0", "features.3"), ("features.2.0", "features.6"),
        ("features.2.2", "features.8"), ("features.2.4", "features.10"),
        ("head.fc1", "classifier.1"), ("head.fc2", "classifier.4"), ("head.fc3", "classifier.6"),
    ), "classifier.6",
           note="torchvision's AlexNet (64-192-384-256-256, no LRN, no groups) is not the paper's: it loads "
                "into alexnet-torchvision, not alexnet"),
    Layout("vgg16", "torchvision", "deepimage16", (
        *_VGG16_FEATURES,
        ("head.fc1", "classifier.0"), ("head.fc2", "classifier.3"), ("head.fc3", "classifier.6"),
    ), "classifier.6", kwargs={"fc": [4096, 4096]}, note=_VGG_NOTE),
    Layout("vgg16", "timm", "deepimage16", (
        *_VGG16_FEATURES,
        ("head.fc1", "pre_logits.fc1"), ("head.fc2", "pre_logits.fc2"), ("head.fc3", "head.fc"),
    ), "head.fc", kwargs={"fc": [4096, 4096]}, reshaped=("pre_logits.fc1", "pre_logits.fc2"),
           note=_VGG_NOTE),
)
# minwa's names for the same architectures, also accepted by --arch
ALIASES = {"alexnet-torchvision": "alexnet", "deepimage16": "vgg16"}


def layouts_for(arch: str | None) -> tuple[Layout, ...]:
    """The layouts ``--arch`` names (all of them for None); unknown names give ()."""
    if arch is None:
        return LAYOUTS
    arch = ALIASES.get(arch, arch)
    return tuple(lay for lay in LAYOUTS if lay.arch == arch)


def arch_names() -> list[str]:
    return sorted({lay.arch for lay in LAYOUTS})
