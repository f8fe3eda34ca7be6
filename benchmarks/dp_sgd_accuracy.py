"""Test accuracy: privtrain's default dp_sgd vs plain Opacus vs non-private.

    python benchmarks/dp_sgd_accuracy.py [--dataset digits] [--seeds 0 1 2] [--eps 1 3 8]
    python benchmarks/dp_sgd_accuracy.py --dataset breast_cancer --seeds 0 1 2 3 4 --eps 1 3 \
        --also "privtrain dp_sgd (old defaults):recipe.steps=360"

Rows, all on the same splits (privtrain's keyed split, seed s):
- privtrain dp_sgd with its shipped defaults (configs/), only dataset, target_epsilon and seed set;
- each ``--also "label:override override"``: the same recipe with those Hydra overrides (e.g. old defaults);
- the same recipe with privacy=none (the non-private baseline);
- plain Opacus, tutorial-style: MLP 64-128-10 ReLU, SGD lr 1.0, batch 128, 30 epochs,
  clip 1.0, pixels scaled to [0, 1], PRV accountant, make_private_with_epsilon;
- a non-private MLP of the same architecture (Adam lr 1e-2, batch 128, 30 epochs; no clipping, no noise).
Writes out/dp_sgd_accuracy[/<dataset>]/{trials.csv, table.md, accuracy.png}. Uses its own ledger.
DP noise draws from the OS's entropy, so a rerun gives other figures within the ± shown.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--also", nargs="*", default=[], help='more privtrain rows: "label:override override"')
    parser.add_argument("--no-baselines", action="store_true", help="skip the non-private rows")
    parser.add_argument(
        "--draws",
        type=int,
        default=1,
        help="noise draws per seed and ε: privtrain's noise is fresh each run, plain Opacus' follows "
        "its seed, so one draw compares one random run with one fixed one",
    )
    parser.add_argument("--tag", default="", help="suffix of the output folder")
    args = parser.parse_args()
    import privtrain
    from privtrain import data

    name = "dp_sgd_accuracy" if args.dataset == "digits" and not args.tag else f"dp_sgd_accuracy/{args.dataset}"
    out = out_dir(name + (f"-{args.tag}" if args.tag else ""))
    also = [(e.split(":", 1)[0], e.split(":", 1)[1].split()) for e in args.also]
    base = [f"dataset={args.dataset}", "recipe.progress=false"]
    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        splits = data.split(data.load(data.DatasetSpec(args.dataset)), seed=seed, test_size=0.2)
        first = len(rows)
        for eps in args.eps:
            for draw in range(args.draws):
                for i, (label, overrides) in enumerate([("privtrain dp_sgd", []), *also]):
                    t = time.perf_counter()
                    r = privtrain.run(
                        "dp_sgd",
                        [*base, *overrides, f"privacy.target_epsilon={eps}", f"seed={seed}"],
                        output_dir=out / "runs" / f"privtrain{i}-{eps}-{seed}-{draw}",
                    )
                    rows.append((label, eps, seed, r.metrics["accuracy"], time.perf_counter() - t))
                t = time.perf_counter()
                rows.append(
                    (
                        "plain Opacus (tutorial)",
                        eps,
                        seed,
                        plain_opacus(splits, eps, seed, draw=draw),
                        time.perf_counter() - t,
                    )
                )
        if not args.no_baselines:
            r = privtrain.run(
                "dp_sgd", [*base, "privacy=none", f"seed={seed}"], output_dir=out / "runs" / f"privtrain-none-{seed}"
            )
            rows.append(("privtrain non-private", float("inf"), seed, r.metrics["accuracy"], 0.0))
            rows.append(("non-private MLP (tutorial)", float("inf"), seed, plain_opacus(splits, None, seed), 0.0))
        print(pd.DataFrame(rows[first:], columns=["method", "epsilon", "seed", "accuracy", "seconds"]), flush=True)
    frame = pd.DataFrame(rows, columns=["method", "epsilon", "seed", "accuracy", "seconds"])
    frame.to_csv(out / "trials.csv", index=False)
    table = mean_std_table(frame, "method", "epsilon", "accuracy")
    command = " ".join(["python benchmarks/dp_sgd_accuracy.py", *(f'"{a}"' if " " in a else a for a in sys.argv[1:])])
    text = (
        f"# DP-SGD test accuracy on {args.dataset} (delta={DELTA}, seeds {args.seeds}, {args.draws} noise "
        f"draw(s) each, mean ± std over all runs)\n\n"
        f"Machine: {machine()}\n\nCommand: `{command}`\n\n{table.to_markdown()}\n"
    )
    (out / "table.md").write_text(text)
    print(text)
    _plot(frame, out / "accuracy.png", args.dataset)


def _plot(frame: pd.DataFrame, path, dataset: str) -> None:
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
    ax.set_title(f"{dataset}: privtrain dp_sgd vs plain Opacus")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
