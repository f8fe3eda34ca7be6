"""PNG figures of a federated run: how many rows each client holds, and accuracy by round."""

from __future__ import annotations

from pathlib import Path

from privtrain.figures import figure

_BARS_UP_TO = 60  # clients; above this the figure is a histogram of sizes


def partition_png(summary: dict, path: Path, title: str) -> Path:
    """Rows per client (local train and evaluation): sizes only, which are public by declaration.

    Nothing about the rows' labels is drawn: a per-client label histogram is a non-DP statistic
    of the training rows.
    """
    import numpy as np

    train = np.asarray(summary["train_sizes"])
    evals = np.asarray(summary["eval_sizes"])
    fig, ax = figure(figsize=(max(5.0, min(0.3 * len(train), 14) + 2), 3.6))
    if len(train) <= _BARS_UP_TO:
        ax.bar(range(len(train)), train, label="local training rows")
        ax.bar(range(len(train)), evals, bottom=train, label="local evaluation rows")
        ax.set_xlabel("client")
        ax.set_ylabel("rows")
        ax.legend(fontsize=8)
    else:
        sizes = train + evals
        ax.hist(sizes, bins=np.arange(sizes.max() + 2) - 0.5 if sizes.max() < 60 else 30)
        ax.set_xlabel("rows per client (local train + evaluation)")
        ax.set_ylabel("clients")
    ax.set_title(
        f"{title} ({len(train)} clients, {summary['clients_without_training_rows']} without training rows)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def accuracy_png(rounds: list[dict], path: Path, title: str) -> Path:
    """Held-out (server-side) and federated (client-side) accuracy by round."""
    fig, ax = figure(figsize=(5.5, 3.6))
    ax.plot([r["round"] for r in rounds], [r["accuracy"] for r in rounds], marker="o", label="held-out (server)")
    fed = [r for r in rounds if "federated_accuracy" in r]
    if fed:
        ax.plot(
            [r["round"] for r in fed],
            [r["federated_accuracy"] for r in fed],
            marker="s",
            label="federated (clients' local splits)",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
