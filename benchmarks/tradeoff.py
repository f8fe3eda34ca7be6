"""The privacy/accuracy trade-off, side by side: every method, every ε, same splits.

    python benchmarks/tradeoff.py            # full: digits + breast_cancer, 3 seeds, ε ∈ {0.5,1,2,4,8,∞}
    python benchmarks/tradeoff.py --quick    # ~2-minute smoke version (CI runs it)

Methods (all through privtrain's Python API, each with its shipped defaults):
- ``dp_sgd``            example-level DP-SGD (Opacus);
- ``federated central`` client-level DP-FedAvg (Flower), the shipped central-DP population (500 clients);
- ``federated local``   example-level DP-SGD inside each client of the shipped local-DP population (10);
  both ε = ∞ points are the one non-private run (privacy=none: the 500-client population).
  results/tradeoff/ predates these defaults (10 clients for both): rerun it to refresh them.
- ``DP-synthetic``      train on rows from the DP synthesizer (TSTR on the real held-out split);
- ``non-private``       each method's ε = ∞ version (privacy=none / SDV GaussianCopula).
Anchors in the same run, on the same splits: plain Opacus with the tutorial's settings
(MLP 64-128-C, SGD lr 1.0, batch 128, 30 epochs, clip 1.0) and a non-private
scikit-learn logistic regression.

Output in out/tradeoff/ (or --out): trials.csv, table_<dataset>.md, pareto_<dataset>.png,
ledger.json (the ε the benchmark's own ledger composed for the whole sweep), README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, out_dir, plain_opacus  # noqa: E402

INF = math.inf
COLUMNS = ["dataset", "method", "unit", "epsilon", "seed", "accuracy", "seconds"]
METHODS = (
    "dp_sgd",
    "federated central",
    "federated local",
    "DP-synthetic",
    "plain Opacus (tutorial)",
    "sklearn logreg (non-private)",
)


_DONE: dict[tuple, dict] = {}  # (recipe, overrides) -> metrics: identical runs are trained once


def _privtrain(recipe: str, overrides: list[str], out: Path) -> dict:
    """Run once per distinct configuration: federated central and local at ε = ∞ are the same
    non-private run (privacy=none), so the second reuses the first's metrics (its seconds read ~0)."""
    import privtrain

    key = (recipe, tuple(overrides))
    if key not in _DONE:
        _DONE[key] = privtrain.run(recipe, overrides, output_dir=out).metrics
    return _DONE[key]


def trial(method: str, dataset: str, eps: float, seed: int, quick: bool, runs: Path) -> float:
    """Accuracy on the real held-out split for one (method, dataset, ε, seed)."""
    common = [f"dataset={dataset}", f"seed={seed}", "recipe.progress=false"]
    tag = runs / f"{method.replace(' ', '_')}-{dataset}-{eps}-{seed}"
    private = math.isfinite(eps)
    if method == "dp_sgd":
        extra = ["recipe.epochs=3"] if quick else []
        privacy = [f"privacy.target_epsilon={eps}"] if private else ["privacy=none"]
        return _privtrain("dp_sgd", [*common, *privacy, *extra], tag)["accuracy"]
    if method.startswith("federated"):
        extra = ["fl.rounds=2", "fl.local_epochs=1"] if quick else []
        mode = "central" if method.endswith("central") else "dp"
        privacy = [f"privacy={mode}", f"privacy.target_epsilon={eps}"] if private else ["privacy=none"]
        return _privtrain("federated", [*common, *privacy, *extra], tag)["accuracy"]
    if method == "DP-synthetic":
        synth = ["synth=dp_gaussian_copula", f"synth.epsilon={eps}"] if private else ["synth=gaussian_copula"]
        # TSTR on the real held-out split: a non-DP report of those rows, asked for explicitly
        over = [f"dataset={dataset}", f"seed={seed}", *synth, "synth.report=false", "synth.utility.enabled=true"]
        return _privtrain("synthetic", over, tag)["tstr_accuracy"]
    from privtrain import data

    splits = data.split(data.load(data.DatasetSpec(dataset)), seed=seed, test_size=0.2)
    if method == "plain Opacus (tutorial)":
        return plain_opacus(splits, eps, seed, epochs=3 if quick else 30)
    if method == "sklearn logreg (non-private)":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=2000).fit(splits.x_train, splits.y_train)
        return float(clf.score(splits.x_test, splits.y_test))
    raise ValueError(method)


def plan(quick: bool, datasets, seeds, epsilons) -> list[tuple[str, str, float, int]]:
    jobs = []
    for dataset in datasets:
        for seed in seeds:
            for method in METHODS:
                for eps in epsilons:
                    if method == "plain Opacus (tutorial)" and not math.isfinite(eps):
                        continue
                    if method.startswith("sklearn") and math.isfinite(eps):
                        continue
                    jobs.append((method, dataset, eps, seed))
            jobs.append(("sklearn logreg (non-private)", dataset, INF, seed))
    return list(dict.fromkeys(jobs))


def unit_of(method: str) -> str:
    return "client" if method == "federated central" else "example"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2-minute smoke version (CI)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/out/tradeoff)")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument(
        "--resume", action="store_true", help="keep the trials already in --out/trials.csv, run the rest"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render tables, plots and README.md from an existing trials.csv in --out",
    )
    args = parser.parse_args(argv)
    datasets = args.datasets or (["digits"] if args.quick else ["digits", "breast_cancer"])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epsilons = [1.0, INF] if args.quick else [0.5, 1.0, 2.0, 4.0, 8.0, INF]
    out = args.out or out_dir("tradeoff")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")  # keep the user's ledger clean
    jobs = plan(args.quick, datasets, seeds, epsilons)
    if args.report_only:
        frame = pd.read_csv(out / "trials.csv")
        datasets = list(dict.fromkeys(frame.dataset))
        wall = frame.seconds.sum()
    else:
        done = pd.read_csv(out / "trials.csv") if args.resume and (out / "trials.csv").is_file() else None
        frame, wall = run_trials(jobs, args.quick, out, done)
    composed = _ledger_totals(out / "ledger.db")
    (out / "ledger.json").write_text(json.dumps(composed, indent=2) + "\n")
    cmd = "python benchmarks/tradeoff.py" + (" --quick" if args.quick else "")
    done = f"{len(frame)} of {len(jobs)} planned trials" + (
        "" if len(frame) >= len(jobs) else " (interrupted: partial)"
    )
    summary = [
        "# Privacy/accuracy trade-off\n",
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}  ",
        f"Wall time: {wall / 60:.1f} min for {done}\n",
    ]
    for dataset in datasets:
        table = markdown_table(frame[frame.dataset == dataset])
        (out / f"table_{dataset}.md").write_text(table)
        summary += [f"## {dataset}\n", table, f"![pareto](pareto_{dataset}.png)\n"]
        pareto_plot(frame[frame.dataset == dataset], dataset, out / f"pareto_{dataset}.png")
    summary += [
        "## What the benchmark's own ledger composed for the whole sweep\n",
        "| dataset | unit | runs | spent ε, all trials (tight PLD) | DP trials alone (tight PLD, δ=1e-5) | naive Σε |",
        "|---|---|---|---|---|---|",
    ]
    summary += [
        f"| {c['name']} | {c['unit']} | {c['runs']} | {c['spent']} | {c['dp_trials_spent']} | {c['naive_sum']} |"
        for c in composed
    ]
    (out / "README.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return out


def run_trials(jobs, quick: bool, out: Path, done: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float]:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    rows = [] if done is None else [tuple(r) for r in done[COLUMNS].itertuples(index=False)]
    finished = {(r[1], r[0], float(r[3]), int(r[4])) for r in rows}
    previous = 0.0 if done is None else float(done.seconds.sum())
    jobs = [j for j in jobs if (j[0], j[1], float(j[2]), int(j[3])) not in finished]
    for method, dataset, eps, seed in tqdm(jobs, desc="trade-off", unit="trial"):
        t = time.perf_counter()
        acc = trial(method, dataset, eps, seed, quick, out / "runs")
        rows.append((dataset, method, unit_of(method), eps, seed, acc, time.perf_counter() - t))
        pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "trials.csv", index=False)  # survive interruptions
    return pd.DataFrame(rows, columns=COLUMNS), previous + time.perf_counter() - started


def markdown_table(frame: pd.DataFrame) -> str:
    """Mean ± std accuracy per method and ε, and the gap to the method's own non-private version."""
    eps_values = sorted(frame.epsilon.unique())
    anchor = frame[frame.method == "sklearn logreg (non-private)"].accuracy.mean()
    head = (
        "| method (unit) | "
        + " | ".join("ε=∞" if not math.isfinite(e) else f"ε={e:g}" for e in eps_values)
        + " | gap to non-private at ε=1 |"
    )
    lines = [head, "|" + "---|" * (len(eps_values) + 2)]
    for method in METHODS:
        g = frame[frame.method == method]
        if g.empty:
            continue
        cells = []
        for e in eps_values:
            acc = g[g.epsilon == e].accuracy
            cells.append(f"{acc.mean():.3f} ± {acc.std(ddof=0):.3f}" if len(acc) else "")
        ref = g[~np.isfinite(g.epsilon)].accuracy.mean() if (~np.isfinite(g.epsilon)).any() else anchor
        at1 = g[g.epsilon == 1.0].accuracy.mean()
        gap = f"{at1 - ref:+.3f}" if len(g[g.epsilon == 1.0]) else ""
        lines.append(f"| {method} ({unit_of(method)}) | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines) + "\n"


def pareto_plot(frame: pd.DataFrame, dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted(e for e in frame.epsilon.unique() if math.isfinite(e))
    inf_x = (max(finite) * 2.5) if finite else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        g = frame[frame.method == method]
        if g.empty:
            continue
        s = g.groupby("epsilon").accuracy.agg(["mean", "std"]).fillna(0.0)
        x = [e if math.isfinite(e) else inf_x for e in s.index]
        style = "--" if "non-private" in method or "tutorial" in method else "-"
        ax.errorbar(
            x, s["mean"], yerr=s["std"], marker="o", capsize=3, linestyle=style, label=f"{method} ({unit_of(method)})"
        )
    ticks = finite + [inf_x]
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{e:g}" for e in finite] + ["∞"])
    ax.set_xlabel("ε (δ = 1e-5; unit in the legend)")
    ax.set_ylabel("test accuracy (real held-out split)")
    ax.set_title(f"{dataset}: privacy/accuracy trade-off (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ledger_totals(path: Path) -> list[dict]:
    """Per source, unit and population: the ledger's tight total (inf once a non-private trial ran), and the
    tight composition of the DP trials alone, from the same stored events."""
    from privtrain import ledger
    from privtrain.privacy.events import epsilon_pld, is_non_private

    book = ledger.open(path)
    rows = []
    for d in book.sources():
        if not d.n_runs:
            continue  # derived (synthetic) datasets: nothing trained on them here
        charged: dict[int, list] = {}
        for e in book.entries(d.source, d.unit, d.scope):
            if e.status in ("reserved", "committed", "failed") and (e.status != "reserved" or e.id not in charged):
                charged[e.reservation_id] = e.events
        private = [ev for events in charged.values() if not is_non_private(events) for ev in events]
        rows.append(
            {
                "name": d.name,
                "population": d.scope_label or "",
                "unit": d.unit,
                "runs": d.n_runs,
                "spent": "inf" if math.isinf(d.spent) else round(d.spent, 3),
                "dp_trials_spent": round(epsilon_pld(private, 1e-5), 3),
                "naive_sum": "inf" if math.isinf(d.naive_sum) else round(d.naive_sum, 3),
            }
        )
    return rows


if __name__ == "__main__":
    main()
