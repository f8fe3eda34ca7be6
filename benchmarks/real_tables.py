"""Balanced accuracy and AUC on tables: privtrain dp_sgd vs scikit-learn's non-private logistic regression.

    python benchmarks/real_tables.py                      # breast_cancer, wine, money; ε 1 and 3; seeds 0 1 2
    python benchmarks/real_tables.py --seeds 0 --eps 3    # a quick look

Tables:
- ``breast_cancer`` and ``wine``: the built-ins, scaled by their published ranges;
- ``money`` / ``money (log1p)``: a generated table (3,000 rows) of three log-normal money columns and one
  uniform one, whose binary label is a noisy threshold on a combination of the log-amounts. It is written to
  a CSV and registered with a declared schema (public bounds [0, 1e7]), once as-is and once with
  ``transform: log1p`` on the money columns (docs/schema.md): the same file, so the same source.

Rows per table, on the same keyed split (seed s): privtrain dp_sgd with its shipped defaults at each ε, and
scikit-learn ``LogisticRegression`` (non-private, default regularisation) fitted on the same preprocessed
features. Both are scored by :func:`privtrain.scores.classification` (balanced accuracy; AUC of the positive
class for binary tables, one-vs-rest macro AUC for wine). Every privtrain run is charged to a temporary ledger
(``PRIVTRAIN_LEDGER``) that is deleted afterwards: no real budget is touched.

Writes out/real_tables/{trials.csv, table.md, real_tables.png}.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, mean_std_table, out_dir

ROWS = 3000
MONEY_COLUMNS = ("income", "balance", "spend")
BOUNDS = {"min": 0, "max": 1e7}
COLUMNS = ["table", "method", "epsilon", "seed", "balanced_accuracy", "auc", "seconds"]


def money_table(path: Path, seed: int = 11) -> Path:
    """Write the generated heavy-tailed table to ``path``: log-normal amounts over five orders of magnitude,
    a uniform nuisance column, and a label that depends on the log-amounts (about 12 % label noise)."""
    rng = np.random.default_rng(seed)
    income = np.exp(rng.normal(10.5, 1.2, ROWS))
    balance = np.exp(rng.normal(8.0, 2.0, ROWS))
    spend = np.exp(rng.normal(7.0, 1.0, ROWS))
    score = 0.8 * (np.log(income) - 10.5) + 0.4 * (np.log(balance) - 8.0) - 0.6 * (np.log(spend) - 7.0)
    label = np.where(score + rng.normal(0, 0.5, ROWS) > 0, "good", "bad")
    pd.DataFrame(
        {
            "income": income.round(2),
            "balance": balance.round(2),
            "spend": spend.round(2),
            "tenure": rng.uniform(0, 30, ROWS).round(1),
            "label": label,
        }
    ).to_csv(path, index=False)
    return path


def money_schema(log1p: bool) -> dict:
    money = {**BOUNDS, "transform": "log1p"} if log1p else dict(BOUNDS)
    return {
        **{c: dict(money) for c in MONEY_COLUMNS},
        "tenure": {"min": 0, "max": 30},
        "label": {"categories": ["bad", "good"]},
    }


def _flow(value) -> str:
    """A dict as a Hydra/YAML flow mapping."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def table_overrides(table: str, csv: Path) -> tuple[list[str], dict]:
    """(Hydra overrides naming the table, DatasetSpec keyword arguments for the same table)."""
    if not table.startswith("money"):
        return [f"dataset={table}"], {"loader": table}
    schema = money_schema(log1p="log1p" in table)
    spec = {"loader": "csv", "path": str(csv), "target": "label", "schema": schema, "public_n": ROWS}
    return [
        "dataset=csv",
        f"dataset.path={csv}",
        "dataset.target=label",
        f"+dataset.schema={_flow(schema)}",
        f"dataset.public_n={ROWS}",
    ], spec


def scored(y: np.ndarray, proba: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(balanced accuracy, AUC): the positive class's AUC for two classes, one-vs-rest macro AUC otherwise."""
    from sklearn.metrics import roc_auc_score

    from privtrain import scores

    out = scores.classification(y, proba, n_classes)
    auc = out.get("auc")
    if auc is None and n_classes > 2:
        auc = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(n_classes))))
    return out["balanced_accuracy"], float("nan") if auc is None else auc


def trial(table: str, eps: float, seed: int, csv: Path, runs: Path) -> list[tuple]:
    """privtrain dp_sgd at ``eps`` on one table and seed (and, once per seed, scikit-learn), as rows."""
    import torch

    import privtrain
    from privtrain import data

    overrides, spec = table_overrides(table, csv)
    splits = data.split(data.load(data.DatasetSpec(**spec)), seed=seed, test_size=0.2)
    n_classes = len(splits.classes)
    t = time.perf_counter()
    run = privtrain.run(
        "dp_sgd",
        [*overrides, f"privacy.target_epsilon={eps}", f"seed={seed}", "recipe.progress=false"],
        output_dir=runs / f"{table.replace(' ', '_')}-{eps}-{seed}",
    )
    seconds = time.perf_counter() - t
    model = privtrain.load(run.output_dir).model
    with torch.no_grad():
        proba = torch.softmax(model(torch.from_numpy(splits.x_test)), 1).numpy()
    rows = [(table, "privtrain dp_sgd", eps, seed, *scored(splits.y_test, proba, n_classes), seconds)]
    if eps == EPS_FIRST[0]:
        from sklearn.linear_model import LogisticRegression

        t = time.perf_counter()
        clf = LogisticRegression(max_iter=5000).fit(splits.x_train, splits.y_train)
        rows.append(
            (
                table,
                "sklearn logreg (non-private)",
                math.inf,
                seed,
                *scored(splits.y_test, clf.predict_proba(splits.x_test), n_classes),
                time.perf_counter() - t,
            )
        )
    return rows


EPS_FIRST: list[float] = []  # the first ε of the sweep: scikit-learn is fitted once per (table, seed)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["breast_cancer", "wine", "money", "money (log1p)"])
    parser.add_argument("--eps", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    EPS_FIRST[:] = args.eps[:1]
    out = out_dir("real_tables")
    rows: list[tuple] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PRIVTRAIN_LEDGER"] = str(Path(tmp) / "ledger.db")  # a throwaway ledger: no budget polluted
        csv = money_table(Path(tmp) / "money.csv")
        for table in args.tables:
            for seed in args.seeds:
                for eps in args.eps:
                    rows += trial(table, eps, seed, csv, Path(tmp) / "runs")
                print(pd.DataFrame(rows[-len(args.eps) - 1 :], columns=COLUMNS).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(out / "trials.csv", index=False)
    text = render(frame, args, time.perf_counter() - start)
    (out / "table.md").write_text(text)
    print(text)
    plot(frame, out / "real_tables.png")
    return out


def render(frame: pd.DataFrame, args, seconds: float) -> str:
    frame = frame.assign(row=frame["table"] + " · " + frame["method"])
    parts = [
        f"# Real tables: privtrain dp_sgd vs scikit-learn logistic regression (seeds {args.seeds}, mean ± std)",
        "",
        f"Machine: {machine()}  ",
        "Command: `python benchmarks/real_tables.py`  ",
        f"Wall time: {seconds / 60:.1f} min",
        "",
    ]
    for metric in ("balanced_accuracy", "auc"):
        table = mean_std_table(frame, "row", "epsilon", metric).fillna("")
        table.columns = ["ε=∞ (non-private)" if math.isinf(c) else f"ε={c:g}" for c in table.columns]
        parts += [f"## {metric.replace('_', ' ')}", "", table.to_markdown(), ""]
    return "\n".join(parts)


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(dict.fromkeys(frame["table"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("balanced_accuracy", "auc")):
        width = 0.8 / (frame["epsilon"].nunique())
        for i, (eps, g) in enumerate(frame.groupby("epsilon")):
            s = g.groupby("table")[metric].agg(["mean", "std"]).reindex(tables)
            label = "sklearn logreg (non-private)" if math.isinf(eps) else f"privtrain dp_sgd ε={eps:g}"
            ax.bar(
                np.arange(len(tables)) + i * width, s["mean"], width, yerr=s["std"].fillna(0), capsize=2, label=label
            )
        ax.set_xticks(np.arange(len(tables)) + 0.4 - width / 2, tables, fontsize=8)
        ax.set_ylim(0.4, 1.0)
        ax.set_title(metric.replace("_", " "))
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
