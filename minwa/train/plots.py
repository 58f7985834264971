"""The learning curve as PNG (matplotlib, Agg), drawn from a run's metric records (``metrics.jsonl``).

Left axis: training loss (a point at every ``log_every`` steps and at each epoch's end, so a small set
still has one per epoch) and validation loss; right axis: validation top-1, its best point labelled;
dotted vertical lines where the plateau schedule divided the learning rate, a solid one where early
stopping ended the run.
"""

from __future__ import annotations

from pathlib import Path

from minwa.utils.atomic import atomic_save_figure


def _points(records: list[dict], kind: str, key: str) -> tuple[list[float], list[float]]:
    rows = [r for r in records if r.get("kind") == kind and r.get(key) is not None and r.get("epoch") is not None]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def plot_learning_curve(records: list[dict], path, title: str = "") -> Path | None:
    """Write the curve of ``records`` to ``path``; None (nothing written) when there is nothing to draw."""
    train = _points(records, "train", "loss")
    val_loss = _points(records, "val", "val_loss")
    val_acc = _points(records, "val", "val_acc")
    if not train[0] and not val_loss[0] and not val_acc[0]:
        return None
    import matplotlib  # heavy (~0.5 s): imported only when a curve is drawn, as before

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    if train[0]:
        ax1.plot(*train, ".-", color="tab:blue", lw=1.2, ms=4, label="train loss")
    if val_loss[0]:
        ax1.plot(*val_loss, "s--", color="tab:cyan", lw=1.2, ms=4, label="val loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (cross-entropy)")
    ax1.grid(alpha=0.3)
    handles = ax1.get_legend_handles_labels()
    if val_acc[0]:
        ax2 = ax1.twinx()
        ax2.plot(val_acc[0], [100 * a for a in val_acc[1]], "o-", color="tab:red", lw=1.5, label="val top-1")
        ax2.set_ylabel("validation top-1 (%)", color="tab:red")
        ax2.margins(y=0.15)  # room for the best point's label
        i = max(range(len(val_acc[1])), key=val_acc[1].__getitem__)
        ax2.annotate(f"best {100 * val_acc[1][i]:.1f}%", (val_acc[0][i], 100 * val_acc[1][i]),
                     textcoords="offset points", xytext=(8, 6), ha="left", color="tab:red", fontsize=8,
                     bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
        h2 = ax2.get_legend_handles_labels()
        handles = (handles[0] + h2[0], handles[1] + h2[1])
    for n, r in enumerate(r for r in records if r.get("kind") == "lr_drop" and r.get("epoch") is not None):
        line = ax1.axvline(r["epoch"], color="tab:gray", ls=":", lw=1.2, label="lr ÷10" if n == 0 else None)
        if n == 0:
            handles = (handles[0] + [line], handles[1] + ["lr ÷10"])
    for r in records:
        if r.get("kind") == "early_stop" and r.get("epoch") is not None:
            line = ax1.axvline(r["epoch"], color="black", lw=1.0)
            handles = (handles[0] + [line], handles[1] + ["early stop"])
    ax1.legend(*handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=5, fontsize=8, frameon=False)
    ax1.set_title(title or "learning curve")
    fig.tight_layout()
    atomic_save_figure(fig, Path(path))
    plt.close(fig)
    return Path(path)
