"""Test accuracy on digits: privtrain's default dp_sgd vs plain Opacus vs non-private.

    python benchmarks/dp_sgd_accuracy.py [--seeds 0 1 2] [--eps 1 3 8]

Rows, all on the same stratified splits (privtrain's split, seed s):
- privtrain dp_sgd with its shipped defaults (configs/), only target_epsilon and seed set;
- the same recipe with privacy=none (the non-private baseline);
- plain Opacus, tutorial-style: MLP 64-128-10 ReLU, SGD lr 1.0, batch 128, 30 epochs,
  clip 1.0, pixels scaled to [0, 1], PRV accountant, make_private_with_epsilon;
- a non-private MLP of the same architecture (Adam lr 1e-2, batch 128, 30 epochs; no clipping, no noise).
Writes out/dp_sgd_accuracy/{trials.csv, table.md, accuracy.png}. Uses its own ledger.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from common import machine, mean_std_table, out_dir, plain_opacus

DELTA = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    args = parser.parse_args()
    import privtrain
    from privtrain import data

    out = out_dir("dp_sgd_accuracy")
    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        splits = data.split(data.load(data.DatasetSpec("digits")), seed=seed, test_size=0.2)
        for eps in args.eps:
            t = time.perf_counter()
            r = privtrain.run("dp_sgd", [f"privacy.target_epsilon={eps}", f"seed={seed}", "recipe.progress=false"],
                              output_dir=out / "runs" / f"privtrain-{eps}-{seed}")
            rows.append(("privtrain dp_sgd", eps, seed, r.metrics["accuracy"], time.perf_counter() - t))
            t = time.perf_counter()
            rows.append(("plain Opacus (tutorial)", eps, seed, plain_opacus(splits, eps, seed), time.perf_counter() - t))
        r = privtrain.run("dp_sgd", ["privacy=none", f"seed={seed}", "recipe.progress=false"],
                          output_dir=out / "runs" / f"privtrain-none-{seed}")
        rows.append(("privtrain non-private", float("inf"), seed, r.metrics["accuracy"], 0.0))
        rows.append(("non-private MLP (tutorial)", float("inf"), seed, plain_opacus(splits, None, seed), 0.0))
        print(pd.DataFrame(rows[-(2 * len(args.eps) + 2):], columns=["method", "epsilon", "seed", "accuracy", "seconds"]), flush=True)
    frame = pd.DataFrame(rows, columns=["method", "epsilon", "seed", "accuracy", "seconds"])
    frame.to_csv(out / "trials.csv", index=False)
    table = mean_std_table(frame, "method", "epsilon", "accuracy")
    text = (f"# DP-SGD accuracy on digits (delta={DELTA}, seeds {args.seeds})\n\nMachine: {machine()}\n\n"
            f"Command: `python benchmarks/dp_sgd_accuracy.py`\n\n{table.to_markdown()}\n")
    (out / "table.md").write_text(text)
    print(text)
    _plot(frame, out / "accuracy.png")


def _plot(frame: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, g in frame[np.isfinite(frame["epsilon"])].groupby("method"):
        s = g.groupby("epsilon")["accuracy"].agg(["mean", "std"])
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=method)
    for method, g in frame[~np.isfinite(frame["epsilon"])].groupby("method"):
        ax.axhline(g["accuracy"].mean(), linestyle="--", linewidth=1, label=f"{method} (ε=∞)")
    ax.set_xscale("log")
    ax.set_xlabel("ε (δ = 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits: privtrain dp_sgd vs plain Opacus")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
