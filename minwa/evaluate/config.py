"""Evaluation settings: test scales, flips, dense testing, ensembles; ``check(cfg)`` refuses impossible
ones in one sentence before any checkpoint or data is read."""

from dataclasses import dataclass, field

from minwa import config as config_io
from minwa.errors import check_rules
from minwa.utils import runtime_config
from minwa.utils.runtime_config import RuntimeConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # autocast over the checkpoint's fp32 weights (no fp64)


@dataclass
class EvalConfig:
    data: str = ""  # evaluation data (shards or raw source); default: the checkpoint's val data, or held_out.csv
    ckpts: list[str] = field(default_factory=list)  # several = an ensemble (softmax averaged)
    scales: list[int] = field(default_factory=list)  # test scales S (shorter side); empty = the model's own
    flip: bool = False  # also evaluate the horizontal mirror and average softmax
    dense: bool = False  # FC layers as convolutions over the whole image, score map averaged (OverFeat)
    batch_size: int = 256  # images per forward pass (twice that with flip)
    topk: list[int] = field(default_factory=lambda: [1, 5])  # top-k errors reported (`--topk 1,5,20`)
    hierarchy: bool = False  # WordNet-id classes: also answers summed up the hypernym tree (docs/data.md)
    hierarchy_threshold: float = 0.9  # an answer is the most specific synset holding this much probability
    wordnet: str = ""  # folder holding WordNet's data.noun; "" = /usr/share/wordnet (Debian's wordnet-base)
    json: bool = False
    out: str = ""  # folder for confusion.png and eval.json; `minwa eval`'s default: eval/ beside the checkpoint
    split: str = ""  # split of the source to evaluate; "" = the held-out one (IDX: test; split folders: val)
    limit: int = 0  # evaluate only the first N images (0 = all)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    MOVED = {"device": "runtime.device", "precision": "runtime.precision", "channels_last": "runtime.channels_last"}


def topk_list(topk) -> list[int]:
    """The k of every reported top-k error, sorted, top-1 always among them (a bare int is [1, k])."""
    return sorted({1, *([topk] if isinstance(topk, int) else topk)})


def check(cfg: EvalConfig) -> EvalConfig:
    """Reject impossible evaluation settings, each in one sentence."""
    config_io.check_finite(cfg)
    runtime_config.check(cfg.runtime, PRECISIONS)
    check_rules([
        (all(s >= 1 for s in cfg.scales), f"scales must be positive, got {list(cfg.scales)}"),
        (cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}"),
        (min(topk_list(cfg.topk)) >= 1, f"topk must be at least 1, got {min(topk_list(cfg.topk))}"),
        (0 < cfg.hierarchy_threshold <= 1, f"hierarchy_threshold must be in (0, 1], got {cfg.hierarchy_threshold}"),
        (cfg.limit >= 0, f"limit must not be negative (0 = all images), got {cfg.limit}"),
    ])
    return cfg
