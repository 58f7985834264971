"""Worker for tests/test_parallel.py::test_mixed_precision_setting_changes_what_fsdp_computes_with, under
``torchrun --nproc_per_node=2``: the dtype each layer's weight has inside the forward pass, and the dtype
its master weight keeps, with parallel.mixed_precision on and off, for a bf16 run."""

from __future__ import annotations

import json
import sys

import torch

from minwa.models import create_model
from minwa.parallel import ParallelConfig, init_distributed, parallelize, shutdown
from minwa.parallel.parallelize import mixed_precision_dtype

report = {}
for on in (True, False):
    cfg = ParallelConfig(strategy="fsdp", mixed_precision=on)
    dims = init_distributed(cfg, "cpu")
    torch.manual_seed(0)
    model = create_model("fashion-net", num_classes=10, in_chans=1, widths=[8, 16])
    model = parallelize(model, dims, cfg, mixed_precision_dtype(cfg, "bf16"))
    seen = {}
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
            m.register_forward_pre_hook(lambda mod, args, name=name: seen.update({name: str(mod.weight.dtype)}))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(4, 1, 28, 28)).float().sum().backward()
    report[str(on)] = {"forward": seen, "master": sorted({str(p.dtype) for p in model.parameters()})}
if dims.rank == 0:
    print(json.dumps(report))
sys.stdout.flush()
shutdown(exit_code=0)
