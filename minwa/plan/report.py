"""What ``minwa plan`` shows: a table for people, plan.json and the Figure 2-like PNG."""

from __future__ import annotations

import json
from pathlib import Path

from minwa.utils.atomic import atomic_save_figure, atomic_write_json


def print_report(r: dict) -> None:
    m, h = r["model"], r["hardware"]
    print(f"{m['name']} at {m['size']} px: {m['params'] / 1e6:.1f}M weights, {m['fwd_flops_per_image'] / 1e9:.2f} GFLOP "
          f"forward + {m['bwd_flops_per_image'] / 1e9:.2f} backward per image (torch's counter)")
    print(f"{h['gpu']['name']} ({h['peak_flop_s'] / 1e12:.1f} TFLOP/s peak, {h['gpu']['memory_gb']:g} GB), "
          f"{h['gpus_per_node']} per node over {h['intra']['name']}, {h['nics_per_node']} × {h['inter']['name']} per node; "
          f"compute fraction {r['constants']['compute_fraction']:g}, overhead {r['constants']['overhead_ms']:g} ms")
    print(f"{'strategy':<10}{'GPUs':>5}{'img/GPU':>8}{'step ms':>9}{'compute':>9}{'comm':>8}{'input':>8}"
          f"{'images/s':>11}{'speed-up':>9}{'effic.':>7}{'GB/GPU':>8}")
    for x in r["rows"]:
        print(f"{x['strategy']:<10}{x['gpus']:>5}{x['batch_per_gpu']:>8.4g}{x['step_s'] * 1e3:>9.1f}"
              f"{x['compute_s'] * 1e3:>9.1f}{x['exposed_comm_s'] * 1e3:>8.1f}{x['exposed_input_s'] * 1e3:>8.1f}"
              f"{x['images_per_s']:>11.1f}{x['speedup']:>8.2f}x{x['efficiency']:>7.0%}"
              f"{x['memory_gb']:>7.1f}{'' if x['fits'] else '!'}")
    print("best: " + ", ".join(f"{n} GPUs {s}" for n, s in r["best"].items()))
    first = r["input"]["first_input_bound"]
    if r["input"]["mode"] == "gpu":
        print("input: decoded on the GPU (or cached there): no CPU limit modelled")
    elif first:
        print(f"input: the CPU decoders ({r['input']['decodes_per_s_per_node']:.0f} JPEGs/s per node) bound "
              f"{first['strategy']} from {first['gpus']} GPUs")
    else:
        print(f"input: never the bottleneck here ({r['input']['decodes_per_s_per_node']:.0f} JPEGs/s per node)")
    if "calibration" in r:
        c = r["calibration"]
        print(f"calibrated on {', '.join(c['files'])}: fraction {c['compute_fraction']:.2f}, overhead "
              f"{c['overhead_ms']:.1f} ms; " + ", ".join(f"{p['strategy']}@{p['gpus']} {p['error']:+.0%}" for p in c["points"]))


def write_outputs(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "plan.json", r)
    save_figure(r, out / "plan-speedup.png")


def save_figure(r: dict, path: Path) -> None:
    import matplotlib  # heavy, only when a figure is written; the Agg backend before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    top = max(x["gpus"] for x in r["rows"])
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
    b.plot([1, top], [1, top], "k--", lw=1, label="linear")
    b.set_yscale("log", base=2)
    b.set_ylabel("speed-up of images/s")
    a.set_ylabel("efficiency (speed-up / GPUs)")
    for s in dict.fromkeys(x["strategy"] for x in r["rows"] if x["strategy"] != "none"):
        pts = [(1, 1.0)] + [(x["gpus"], x["efficiency"]) for x in r["rows"] if x["strategy"] == s]
        a.plot(*zip(*pts), "o-", label=s)
    a.set_title(f"(a) {r['baseline']['batch_per_gpu']:g} images per GPU, each strategy")
    for B in dict.fromkeys(x["figure_batch"] for x in r["figure_b"]):
        pts = [(x["gpus"], x["speedup"]) for x in r["figure_b"] if x["figure_batch"] == B]
        b.plot(*zip(*pts), "o-", label=f"mini-batch {B:g}")
    b.set_title(f"(b) {r['figure_b_strategy']}, fixed mini-batch")
    for ax in (a, b):
        ax.legend(fontsize=8)
    fig.suptitle(f"minwa plan: {r['model']['name']} {r['model']['size']} px on {r['hardware']['gpu']['name']}, "
                 f"{r['hardware']['intra']['name']} + {r['hardware']['inter']['name']}", fontsize=10)
    atomic_save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def to_json(r: dict) -> str:
    return json.dumps(r, indent=2)
