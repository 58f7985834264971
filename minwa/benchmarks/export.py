"""`minwa bench export`: images/s of the exported graph in onnxruntime against PyTorch eager and
``torch.compile`` on this CPU, at each batch size (default 1 and 32), side by side in one run.

Every contestant runs the same graph: the model with its softmax (``minwa.export.graph.Probabilities``),
random weights, float32 NCHW input of ``size``; the ONNX file is the one ``minwa export`` writes (through
torch.export), loaded with ``runtime.threads`` intra-op threads, as torch gets. Interleaved per batch size:
each round times every contestant for at least ``seconds``; the median round counts. The outputs of
the three are checked to agree (1e-4) before timing.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from minwa.benchmarks.config import ExportBenchConfig
from minwa.errors import MinwaError
from minwa.export.exporter import export_program
from minwa.export.graph import Probabilities
from minwa.export.onnx_file import write_onnx
from minwa.models import create_model


def _contestants(cfg: ExportBenchConfig, net: torch.nn.Module, onnx_path: Path) -> dict:
    """name -> callable(numpy batch) -> numpy probabilities."""
    out = {}
    if "onnxruntime" not in cfg.skip:
        try:
            import onnxruntime as ort  # optional (pip install 'minwa[export]')
        except ImportError:
            raise MinwaError("the export bench needs onnxruntime (pip install 'minwa[export]'), "
                             "or --set skip=[onnxruntime]") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda x: sess.run(None, {"input": x})[0]
    if "eager" not in cfg.skip:
        out["eager"] = lambda x: net(torch.from_numpy(x)).numpy()
    if "compile" not in cfg.skip:
        compiled = torch.compile(net, dynamic=False)
        out["compile"] = lambda x: compiled(torch.from_numpy(x)).numpy()
    return out


def _round(fn, x: np.ndarray, seconds: float) -> float:
    """images/s over calls that together last at least ``seconds``."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls * len(x) / elapsed


def _time(cfg: ExportBenchConfig, runs: dict) -> dict:
    """{batch: {contestant: images/s}}; the contestants' outputs checked to agree first."""
    results = {}
    for b in cfg.batches:
        x = np.random.default_rng(b).standard_normal((b, cfg.in_chans, cfg.size, cfg.size), dtype=np.float32)
        outs = {name: fn(x) for name, fn in runs.items() for _ in range(max(1, cfg.warmup))}
        ref = next(iter(outs.values()))
        diff = {name: float(np.abs(o - ref).max()) for name, o in outs.items()}
        if max(diff.values()) > 1e-4:
            raise MinwaError(f"the contestants disagree at batch {b}: {diff}")
        rates = {name: [] for name in runs}
        for _ in range(cfg.rounds):
            for name, fn in runs.items():
                rates[name].append(_round(fn, x, cfg.seconds))
        results[str(b)] = {name: round(statistics.median(r), 1) for name, r in rates.items()}
    return results


def measure(cfg: ExportBenchConfig) -> dict:
    load_before = os.getloadavg()[0]  # other processes on the machine: the figures' context
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    torch.manual_seed(0)
    model = create_model(cfg.model, cfg.num_classes, cfg.in_chans).eval()
    net = Probabilities(model).eval()
    with tempfile.TemporaryDirectory(prefix="minwa-bench-export-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        if "onnxruntime" not in cfg.skip:
            write_onnx(export_program(model, cfg.in_chans, cfg.size), onnx_path, {})
        export_s = time.perf_counter() - t0
        runs = _contestants(cfg, net, onnx_path)
        with torch.inference_mode():
            results = _time(cfg, runs)
    return {
        "model": cfg.model, "size": cfg.size, "in_chans": cfg.in_chans, "num_classes": cfg.num_classes,
        "images_per_s": results, "export_seconds": round(export_s, 1), "rounds": cfg.rounds,
        "seconds_per_round": cfg.seconds, "threads": torch.get_num_threads(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)], "torch": torch.__version__,
                    "onnxruntime": _version("onnxruntime"), "python": platform.python_version()},
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def run(cfg: ExportBenchConfig) -> int:
    result = measure(cfg)
    if cfg.json:
        print(json.dumps(result, indent=2))
        return 0
    names = list(next(iter(result["images_per_s"].values())))
    print(f"{cfg.model} at {cfg.size} px, {result['threads']} threads, images/s (median of {cfg.rounds} rounds):")
    print(f"  {'batch':>5}  " + "  ".join(f"{n:>12}" for n in names))
    for b, r in result["images_per_s"].items():
        print(f"  {b:>5}  " + "  ".join(f"{r[n]:>12.1f}" for n in names))
    return 0
