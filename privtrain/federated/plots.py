"""PNG figures of a federated run: who holds which labels, and accuracy by round."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def partition_png(summary: dict, classes: list, path: Path, title: str) -> Path:
    """Stacked bars: rows per client, coloured by label."""
    import numpy as np

    plt = _plt()
    hist = np.asarray(summary["label_histograms"], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(hist) + 2), 3.6))
    bottom = np.zeros(len(hist))
    cmap = plt.get_cmap("tab10" if hist.shape[1] <= 10 else "tab20")
    for c in range(hist.shape[1]):
        ax.bar(range(len(hist)), hist[:, c], bottom=bottom, color=cmap(c % cmap.N), label=str(classes[c]))
        bottom += hist[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("rows held (local train + eval)")
    ax.set_title(f"{title} (label skew, mean TV distance: {summary['label_skew_tv']:.2f})", fontsize=9)
    ax.legend(title="label", fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_png(rounds: list[dict], path: Path, title: str) -> Path:
    """Held-out (server-side) and federated (client-side) accuracy by round."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([r["round"] for r in rounds], [r["accuracy"] for r in rounds], marker="o", label="held-out (server)")
    fed = [r for r in rounds if "federated_accuracy" in r]
    if fed:
        ax.plot([r["round"] for r in fed], [r["federated_accuracy"] for r in fed], marker="s",
                label="federated (clients' local splits)")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
