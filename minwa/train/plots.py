"""Learning curves as PNG: training loss and validation accuracy against epochs (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path


def plot_learning_curve(history: list[dict], path, title: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minwa.utils.atomic import atomic_save_figure

    train = [r for r in history if r.get("kind") == "train"]
    val = [r for r in history if r.get("kind") == "val" and "val_acc" in r]
    if not train and not val:
        return None
    fig, ax1 = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax1.plot([r["epoch"] for r in train], [r["loss"] for r in train], color="tab:blue", lw=1.2, label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="tab:blue")
    ax1.grid(alpha=0.3)
    if val:
        ax2 = ax1.twinx()
        ax2.plot([r["epoch"] for r in val], [100 * r["val_acc"] for r in val], "o-", color="tab:red", lw=1.5,
                 label="val top-1")
        ax2.set_ylabel("validation top-1 accuracy (%)", color="tab:red")
        best = max(val, key=lambda r: r["val_acc"])
        ax2.annotate(f"{100 * best['val_acc']:.2f}%", (best["epoch"], 100 * best["val_acc"]),
                     textcoords="offset points", xytext=(-50, 8), color="tab:red")
    ax1.set_title(title or "learning curve")
    fig.tight_layout()
    atomic_save_figure(fig, Path(path))
    plt.close(fig)
    return Path(path)
