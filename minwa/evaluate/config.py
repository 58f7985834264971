"""Evaluation settings: test scales, flips, dense testing, ensembles."""

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    data: str = ""  # evaluation data (shards or raw source); default: the checkpoint's val data
    ckpts: list[str] = field(default_factory=list)  # several = an ensemble (softmax averaged)
    scales: list[int] = field(default_factory=list)  # test scales S (shorter side); empty = the model's own
    flip: bool = False  # also evaluate the horizontal mirror and average softmax
    dense: bool = False  # FC layers as convolutions over the whole image, score map averaged (OverFeat)
    batch_size: int = 256  # images per forward pass (twice that with flip)
    topk: int = 5
    json: bool = False
    out: str = ""  # folder for the report, confusion matrix PNG and metrics JSON
    split: str = ""  # split of the source to evaluate; "" = the held-out one (IDX: test; split folders: val)
    limit: int = 0  # evaluate only the first N images (0 = all)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast; faster on CPUs with bf16 units and on GPUs)
    channels_last: bool = True
