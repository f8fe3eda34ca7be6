"""Membership-inference audit of dp_sgd: AUC, TPR at 1% FPR and the ε lower bound vs the claimed ε.

    python benchmarks/audit_table.py [--datasets digits breast_cancer] [--seeds 0 1 2] [--eps none 8 3 1]
                                     [--shadow-models 4] [--model logreg]

For each dataset, seed and privacy setting it trains the recipe with its shipped defaults
(only privacy and seed set), then runs `privtrain audit` with the default K shadow models
(audit.shadow_data=charged, charged to the benchmark's own ledger). Writes
out/audit_table/{trials.csv, table.md}.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch
from common import machine, mean_std_table, out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", nargs="+", default=["none", "8", "3", "1"])
    parser.add_argument("--shadow-models", type=int, default=None, help="default: configs/audit/default.yaml")
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--render-only", action="store_true", help="rebuild table.md from trials.csv")
    args = parser.parse_args()
    out = out_dir("audit_table")
    if args.render_only:
        render(pd.read_csv(out / "trials.csv"), args, out)
        return
    import privtrain
    from privtrain.audit import audit_run

    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")
    torch.set_num_threads(1)
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for eps in args.eps:
                privacy = (
                    ["privacy=none", "ledger.allow_non_private=true"]
                    if eps == "none"
                    else [f"privacy.target_epsilon={eps}"]
                )
                run_dir = out / "runs" / f"{dataset}-{args.model}-{eps}-{seed}"
                t = time.perf_counter()
                result = privtrain.run(
                    "dp_sgd",
                    [f"dataset={dataset}", f"model={args.model}", f"seed={seed}", "recipe.progress=false", *privacy],
                    output_dir=run_dir,
                )
                train_s = time.perf_counter() - t
                t = time.perf_counter()
                audit = audit_run(run_dir, shadow_models=args.shadow_models, shadow_data="charged")
                audit_s = time.perf_counter() - t
                attacks = audit["attacks"]
                rows.append(
                    {
                        "dataset": dataset,
                        "setting": "non-private" if eps == "none" else f"ε={eps}",
                        "seed": seed,
                        "claimed_eps": audit["claimed"]["epsilon"],
                        "accuracy": result.metrics["accuracy"],
                        "auc_loss": attacks["loss"]["auc"],
                        "auc_lira": attacks.get("lira", {}).get("auc"),
                        "auc_best": max(a["auc"] for a in attacks.values()),
                        "tpr1_best": max(a["tpr_at_0.01_fpr"] for a in attacks.values()),
                        "eps_lb": audit["epsilon_lower_bound"],
                        "max_provable": audit["max_provable_epsilon"],
                        "red_flag": audit["red_flag"],
                        "train_s": train_s,
                        "audit_s": audit_s,
                        "shadows": audit["shadow"].get("models", 0),
                    }
                )
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "trials.csv", index=False)
    render(frame, args, out)


COLUMNS = [
    "claimed_eps",
    "accuracy",
    "auc_best",
    "auc_loss",
    "auc_lira",
    "tpr1_best",
    "eps_lb",
    "max_provable",
    "audit_s",
]


def render(frame: pd.DataFrame, args, out) -> None:
    frame["row"] = frame["dataset"] + " " + frame["setting"]
    parts = [
        f"# Membership-inference audit of dp_sgd ({args.model}, shipped defaults)",
        "",
        f"Machine: {machine()}. Seeds {args.seeds}; mean ± std. K = {int(frame['shadows'].iloc[0])} shadow "
        "models (charged). AUC/TPR: best of loss, confidence and LiRA. ε lower bound: 95% Clopper–Pearson, "
        "simultaneous over thresholds and attacks.",
        "",
    ]
    long = frame.melt(id_vars=["row"], value_vars=COLUMNS, var_name="metric")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    table = mean_std_table(long, "row", "metric", "value")
    order = [r for d in args.datasets for r in frame["row"].unique() if r.startswith(d + " ")]
    parts.append(table.loc[order, COLUMNS].to_markdown())
    parts += [
        "",
        f"Red flags: {int(frame['red_flag'].sum())} of {len(frame)} audits.",
        f"Audit time with K shadows (s): mean {frame['audit_s'].mean():.1f}, "
        f"max {frame['audit_s'].max():.1f}; training time of the target (s): mean {frame['train_s'].mean():.1f}.",
    ]
    (out / "table.md").write_text("\n".join(parts) + "\n")
    print("\n".join(parts))


if __name__ == "__main__":
    main()
