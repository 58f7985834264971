"""Evaluation settings: test scales, flips, dense testing, ensembles."""

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    data: str = ""  # evaluation data (shards or raw source); default: the checkpoint's val data
    ckpts: list[str] = field(default_factory=list)  # several = an ensemble (softmax averaged)
    scales: list[int] = field(default_factory=list)  # test scales S (shorter side); empty = the model's own
    flip: bool = False  # also evaluate the horizontal mirror and average softmax
    dense: bool = False  # FC layers as convolutions over the whole image, score map averaged (OverFeat)
    batch_size: int = 256
    topk: int = 5
    json: bool = False
    out: str = ""  # folder for the report, confusion matrix PNG and metrics JSON
