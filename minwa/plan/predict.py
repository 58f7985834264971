"""The sweep ``minwa plan`` prints: each strategy at each GPU count, the 1-GPU baseline, the input side,
the best strategy per size, and Figure 2(b)'s fixed-mini-batch curves."""

from __future__ import annotations

from dataclasses import asdict

from minwa.errors import MinwaError
from minwa.plan import hardware
from minwa.plan.config import PlanConfig, check
from minwa.plan.costs import LINK_EFFICIENCY, MEMORY_EFFICIENCY, Fabric
from minwa.plan.profile import ModelProfile, profile_model
from minwa.plan.step import Machine, step


def machine(cfg: PlanConfig) -> Machine:
    g = hardware.gpu(cfg.gpu)
    fabric = Fabric(hardware.link(cfg.intra or g.intra), hardware.link(cfg.inter), cfg.gpus_per_node,
                    cfg.nics_per_node or cfg.gpus_per_node)
    return Machine(g, fabric, cfg.precision, cfg.mixed_precision, cfg.compute_fraction, cfg.overhead_ms / 1e3)


def gpu_counts(cfg: PlanConfig) -> list[int]:
    if cfg.gpus:
        return sorted(set(cfg.gpus))
    top, out, n = cfg.gpus_per_node * cfg.nodes, [], 1
    while n <= top:
        out.append(n)
        n *= 2
    return out if out[-1] == top else out + [top]


def input_seconds(cfg: PlanConfig, m: Machine, n: int, b: float) -> float:
    """CPU time per step to decode the node's images: its GPUs × b JPEGs over its cores."""
    if cfg.input == "gpu":
        return 0.0
    cores = cfg.cpu_cores_per_node or m.gpu.cores_per_node
    return min(n, cfg.gpus_per_node) * b * cfg.decode_us * 1e-6 / cores


def row(cfg: PlanConfig, m: Machine, prof: ModelProfile, strategy: str, n: int, b: float, base: float) -> dict | None:
    s = step(m, prof, strategy, n, b, fc_split=cfg.fc_split, bucket_mb=cfg.bucket_mb, prefetch=cfg.prefetch)
    if s is None:
        return None
    inp = input_seconds(cfg, m, n, b)
    total = max(s.total_s, inp)
    rate = n * b / total
    return {"strategy": strategy, "gpus": n, "batch_per_gpu": b, "global_batch": n * b, "step_s": total,
            "compute_s": s.compute_s, "exposed_comm_s": s.comm_s, "overhead_s": s.overhead_s,
            "input_s": inp, "exposed_input_s": total - s.total_s, "images_per_s": rate,
            "speedup": rate / base, "efficiency": rate / base / n, "memory_gb": s.memory_bytes / 1e9,
            "fits": s.memory_bytes <= m.gpu.memory_gb * 1e9}


def plan(cfg: PlanConfig, prof: ModelProfile | None = None) -> dict:
    """Everything ``minwa plan`` reports, as one JSON-ready dict."""
    check(cfg)
    m = machine(cfg)
    prof = prof or profile_model(cfg.model, cfg.size, cfg.num_classes, cfg.ckpt)
    if "hybrid" in cfg.strategies and not prof.fc_names:
        raise MinwaError(f"model '{prof.name}' has no FC layers to split: drop hybrid from plan strategies")
    b0 = cfg.batch_per_gpu
    base_row = row(cfg, m, prof, "none", 1, b0, 1.0)
    base = base_row["images_per_s"]
    base_row.update(speedup=1.0, efficiency=1.0)
    counts = gpu_counts(cfg)
    rows = [base_row]
    for strategy in cfg.strategies:
        for n in counts:
            if n == 1:
                continue
            b = cfg.global_batch / n if cfg.global_batch else b0
            r = row(cfg, m, prof, strategy, n, b, base) if b >= 1 else None
            if r:
                rows.append(r)
    best = {}
    for n in counts[1:]:
        cands = [r for r in rows if r["gpus"] == n and r["fits"]]
        if cands:
            best[n] = max(cands, key=lambda r: r["images_per_s"])["strategy"]
    dp = "fsdp" if "fsdp" in cfg.strategies else cfg.strategies[0]
    fig_b = [r for B in cfg.figure_batches for n in counts if B / n >= 1
             for r in [row(cfg, m, prof, dp, n, B / n, base) if n > 1 else {**base_row, "global_batch": B}]
             if r] if not cfg.global_batch else []
    for r in fig_b:
        r["figure_batch"] = r.get("figure_batch", r["global_batch"])
    cores = cfg.cpu_cores_per_node or m.gpu.cores_per_node
    input_bound = [r for r in rows if r["exposed_input_s"] > 0]
    return {
        "model": {"name": prof.name, "size": prof.size, "params": prof.params, "fwd_flops_per_image": prof.fwd_flops,
                  "bwd_flops_per_image": prof.bwd_flops, "fc_layers": prof.fc_names, "fsdp_units": len(prof.units) - 1},
        "hardware": {"gpu": asdict(m.gpu), "peak_flop_s": m.gpu.flop_s(cfg.precision),
                     "intra": asdict(m.fabric.intra), "inter": asdict(m.fabric.inter),
                     "gpus_per_node": cfg.gpus_per_node, "nics_per_node": m.fabric.nics_per_node,
                     "cpu_cores_per_node": cores},
        "constants": {"compute_fraction": cfg.compute_fraction, "overhead_ms": cfg.overhead_ms,
                      "link_efficiency": LINK_EFFICIENCY, "memory_efficiency": MEMORY_EFFICIENCY,
                      "decode_us_per_image_per_core": cfg.decode_us},
        "baseline": base_row, "rows": rows, "best": {str(k): v for k, v in best.items()},
        "figure_b": fig_b, "figure_b_strategy": dp,
        "input": {"mode": cfg.input, "decodes_per_s_per_node": 0 if cfg.input == "gpu" else cores * 1e6 / cfg.decode_us,
                  "first_input_bound": min(input_bound, key=lambda r: r["gpus"], default=None),
                  "cores_needed_per_gpu": {r["strategy"] + f"@{r['gpus']}": r["images_per_s"] / r["gpus"] * cfg.decode_us / 1e6
                                           for r in rows} if cfg.input == "cpu" else {}},
    }
