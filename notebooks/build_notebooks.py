"""Writes the notebooks from plain Python cells (run once after editing; outputs are never committed).

    python notebooks/build_notebooks.py

Each cell's id is a digest of its notebook and its own text, so rebuilding changes the ids of the
cells you edited and no others: a diff shows what changed. The test suite checks that the committed
notebooks are exactly what this script writes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def setup(name: str) -> str:
    """The first cell of notebook ``name``: imports, QUICK, and the notebook's own ledger."""
    return f'''import os
from pathlib import Path
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display
import privtrain

# QUICK=1 (set by the test suite) shrinks every run so the notebook executes in seconds.
QUICK = os.environ.get("PRIVTRAIN_QUICK") == "1"
# This notebook keeps its own ledger (.privtrain/notebooks/{name}.db in your project), so the budgets it sets
# never refuse your runs or another notebook's. To charge your project's ledger instead, set PRIVTRAIN_LEDGER
# before starting Jupyter.
if "PRIVTRAIN_LEDGER" not in os.environ:
    os.environ["PRIVTRAIN_LEDGER"] = str(privtrain.ledger.default_path().parent / "notebooks" / "{name}.db")'''


def notebook(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells, seen = [], set()
    for kind, src in cells:
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        digest = hashlib.sha256(f"{name}\0{kind}\0{src}".encode()).hexdigest()
        cell.id = next(digest[i : i + 12] for i in range(0, 52) if digest[i : i + 12] not in seen)
        seen.add(cell.id)
        nb.cells.append(cell)
    return nb


def render(name: str) -> str:
    """The notebook's file content, as this script writes it."""
    return nbformat.writes(notebook(name, NOTEBOOKS[name])) + "\n"


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_quickstart.ipynb"] = [
    (
        "md",
        "# Quickstart: a DP-SGD run, the ledger's view, and a second run that composes\n\n"
        "We train on scikit-learn's `digits` with DP-SGD (Opacus) through privtrain's Python API. "
        "Every run is charged to a privacy ledger: this notebook's own (`.privtrain/notebooks/01_quickstart.db`), "
        "so its budgets never get in the way of your project's runs.",
    ),
    (
        "code",
        setup("01_quickstart")
        + """
TINY = ["recipe.epochs=2", "recipe.progress=false"] if QUICK else ["recipe.progress=false"]""",
    ),
    (
        "md",
        "## 1. Train at ε = 3\n\n`privtrain.run` composes `configs/dp_sgd.yaml` with Hydra overrides and returns a result.",
    ),
    (
        "code",
        """first = privtrain.run("dp_sgd", ["privacy.target_epsilon=3", *TINY])
print(first.summary())
first.guarantee""",
    ),
    (
        "md",
        "The guarantee names its unit (one example = one row), δ, the accountant, and the mechanism as "
        "dp-accounting events, which is what the ledger stores. The budget belongs to the *source* `digits`: "
        "every recipe, and every table holding the same rows (a CSV copy, a subset), is charged to it.",
    ),
    (
        "code",
        """book = privtrain.ledger.open()
book.set_budget("digits", "example", epsilon=8.0, delta=1e-5)
for d in book.sources():
    print(d.name, d.unit, "spent (tight PLD):", round(d.spent, 3), " admission filter:", round(d.filter_epsilon, 3),
          " remaining:", round(d.remaining, 3))""",
    ),
    (
        "md",
        "## 2. A second run composes with the first\n\nTwo ε = 3 runs do **not** cost ε = 6: "
        "the ledger composes their events with a tight PLD accountant. Runs are *admitted* by an RDP filter, "
        "which stays valid when each run is chosen after seeing the last; it certifies a little more than PLD.",
    ),
    (
        "code",
        """second = privtrain.run("dp_sgd", ["privacy.target_epsilon=3", "seed=1", *TINY])
summary = {d.name: d for d in book.sources()}["digits"]
print(f"naive sum: {summary.naive_sum:.2f}   tight (PLD): {summary.spent:.2f}   "
      f"admission filter (RDP): {summary.filter_epsilon:.2f}")
assert summary.spent < summary.naive_sum and summary.spent <= summary.filter_epsilon""",
    ),
    ("md", "## 3. The budget burned down over runs"),
    (
        "code",
        """import subprocess, sys
png = Path("ledger_digits.png")
subprocess.run([sys.executable, "-m", "privtrain.cli", "ledger", "plot", "digits", "--output", str(png)], check=True)
display(Image(filename=str(png)))""",
    ),
    ("md", "## 4. A run that does not fit is refused before it touches data"),
    (
        "code",
        """try:
    privtrain.run("dp_sgd", ["privacy.target_epsilon=8", *TINY])
except privtrain.errors.UserError as err:
    print("refused:", err)""",
    ),
    ("md", "The model card of each run states the guarantee, what it does not cover, and the ledger entry:"),
    ("code", """display(Markdown((second.output_dir / "model_card.md").read_text()))"""),
]

NOTEBOOKS["02_tradeoffs.ipynb"] = [
    (
        "md",
        "# Trade-offs: accuracy against ε, and picking an operating point\n\n"
        "This loads the committed results of `python benchmarks/tradeoff.py` "
        "(`benchmarks/results/tradeoff/trials.csv`: every trial, every method, 3 seeds) "
        "and redraws the Pareto plot.",
    ),
    (
        "code",
        setup("02_tradeoffs")
        + """
import math
import numpy as np
import pandas as pd

root = Path(privtrain.__file__).resolve().parent.parent
trials = pd.read_csv(root / "benchmarks" / "results" / "tradeoff" / "trials.csv")
trials["epsilon"] = trials["epsilon"].astype(float)
trials.groupby(["dataset", "method"]).size().unstack(0)""",
    ),
    (
        "md",
        "## The Pareto plot, one line per method (mean ± std over seeds)\n\n"
        "Read the legend's unit: central DP-FedAvg's ε is per *client*, the others per *example*.",
    ),
    (
        "code",
        """def pareto(frame, dataset):
    finite = sorted(e for e in frame.epsilon.unique() if math.isfinite(e))
    inf_x = max(finite) * 2.5
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, unit), g in frame.groupby(["method", "unit"]):
        s = g.groupby("epsilon").accuracy.agg(["mean", "std"]).fillna(0)
        x = [e if math.isfinite(e) else inf_x for e in s.index]
        ax.errorbar(x, s["mean"], yerr=s["std"], marker="o", capsize=3, label=f"{method} ({unit})")
    ax.set_xscale("log")
    ax.set_xticks(finite + [inf_x], [f"{e:g}" for e in finite] + ["∞"])
    ax.set_xlabel("ε"); ax.set_ylabel("test accuracy"); ax.set_title(dataset); ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    plt.show()

for dataset in trials.dataset.unique():
    pareto(trials[trials.dataset == dataset], dataset)""",
    ),
    (
        "md",
        "## Pick an operating point\n\n"
        "A common rule: the smallest ε whose mean accuracy is within 2 points of the same method "
        "without privacy. Choosing it from the held-out results is post-processing of released "
        "trials; each trial was charged to the benchmark's ledger.",
    ),
    (
        "code",
        """def operating_point(frame, method, tolerance=0.02):
    g = frame[frame.method == method].groupby("epsilon").accuracy.mean()
    reference = g[[e for e in g.index if not math.isfinite(e)]].mean()
    ok = [e for e in g.index if math.isfinite(e) and g[e] >= reference - tolerance]
    return (min(ok) if ok else None), reference

rows = []
for dataset in trials.dataset.unique():
    for method in ["dp_sgd", "federated central", "federated local", "DP-synthetic"]:
        eps, ref = operating_point(trials[trials.dataset == dataset], method)
        rows.append({"dataset": dataset, "method": method, "non-private accuracy": round(ref, 3),
                     "smallest ε within 2 points": eps})
pd.DataFrame(rows)""",
    ),
]

NOTEBOOKS["03_federated.ipynb"] = [
    (
        "md",
        "# Federated learning with client-level DP\n\n"
        "500 clients each hold a couple of `digits` rows, as phones would. Flower's in-process simulation trains "
        "a global model with DP-FedAvg: each round every client joins with probability q = 0.1 (a secret draw), "
        "its update is clipped, and the server adds Gaussian noise to the sum. The guarantee is per **client** "
        "(all the data of one participant), composed over the rounds; the ledger also charges the source "
        "`digits` at the example level.",
    ),
    (
        "code",
        setup("03_federated")
        + """
import json
# QUICK (the test suite): a small population and two rounds, just to run every cell.
SMALL = ["fl.num_clients=40", "fl.rounds=2", "fl.sampling_rate=0.5"] if QUICK else []""",
    ),
    (
        "md",
        "## 1. DP-FedAvg at client-level ε = 3\n\nThe defaults (500 clients, 60 rounds, q = 0.1, clip 1.0) were "
        "chosen on a validation split: `benchmarks/results/federated_dp/`.",
    ),
    (
        "code",
        """run = privtrain.run("federated", ["privacy=central", "privacy.target_epsilon=3", "recipe.progress=false", *SMALL])
print(run.summary())""",
    ),
    (
        "md",
        "## 2. Accuracy and ε, round by round\n\nThe server's model on the held-out split after every round, "
        "and the client-level ε spent so far (the PLD accountant over the rounds released).",
    ),
    (
        "code",
        """history = json.loads((run.output_dir / "metrics.json").read_text())["history"]
rounds = [r["round"] for r in history]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.plot(rounds, [r["accuracy"] for r in history], marker="o")
left.set(xlabel="round", ylabel="held-out accuracy", title="accuracy")
right.plot(rounds, [r["epsilon_client"] for r in history], marker="o", color="tab:red")
right.set(xlabel="round", ylabel="client-level ε so far", title="privacy spent")
plt.tight_layout(); plt.show()
[{k: r.get(k) for k in ("round", "accuracy", "epsilon_client", "sampled")} for r in history[-5:]]""",
    ),
    ("md", "## 3. The same population without privacy\n\nThe gap is the price of client-level ε = 3."),
    (
        "code",
        """baseline = privtrain.run("federated", ["privacy=none", "ledger.allow_non_private=true", "recipe.progress=false",
                                        *SMALL])
print(f"DP-FedAvg (client-level ε=3): {run.metrics['accuracy']:.3f}   non-private: {baseline.metrics['accuracy']:.3f}")""",
    ),
    (
        "md",
        "## 4. Local DP: a few clients with many rows\n\n`privacy=dp` runs DP-SGD inside each client (Opacus): "
        "the guarantee is per **example**, so it suits a few data owners with many rows each (10 clients here).",
    ),
    (
        "code",
        """local = privtrain.run("federated", ["privacy=dp", "privacy.target_epsilon=3", "recipe.progress=false",
                                     *(["fl.rounds=2"] if QUICK else [])])
print(local.summary())
for d in privtrain.ledger.open().sources():
    print(d.name, d.unit, d.scope_label or "all rows", "spent:", round(d.spent, 3))""",
    ),
]

NOTEBOOKS["04_synthetic.ipynb"] = [
    (
        "md",
        "# Synthetic data: a DP synthesizer vs SDV's GaussianCopula\n\n"
        "We fit a DP Gaussian copula on `breast_cancer`, train a model on its rows and check the ledger "
        "(post-processing is free), then compare with SDV's non-private GaussianCopula: quality report and "
        "train-on-synthetic/test-on-real (TSTR) accuracy.",
    ),
    ("code", setup("04_synthetic")),
    (
        "md",
        "The quality and utility reports compare the synthetic rows with the real rows *without noise*: they are "
        "non-DP releases for the data owner, off by default for the DP synthesizer. We turn them on here to compare.",
    ),
    (
        "code",
        """book = privtrain.ledger.open()
dp = privtrain.run("synthetic", ["synth=dp_gaussian_copula", "synth.epsilon=3",
                                 "synth.report=true", "synth.utility.enabled=true"])
print(dp.summary())""",
    ),
    ("md", "## Lineage: training on DP synthetic rows adds no charge to the parent"),
    (
        "code",
        """spent_before = book.spent("breast_cancer")
rows = dp.output_dir / "synthetic.csv"
model = privtrain.run("dp_sgd", ["dataset=synthetic", f"dataset.path={rows}", "privacy=none",
                                 "ledger.allow_non_private=true", "recipe.progress=false",
                                 *(["recipe.epochs=2"] if QUICK else [])])
print(model.summary())
print(f"parent spent before: {spent_before:.3f}  after: {book.spent('breast_cancer'):.3f}")
assert book.spent("breast_cancer") == spent_before""",
    ),
    ("md", "## Against SDV's GaussianCopula (not private: ε = ∞, so it needs `ledger.allow_non_private`)"),
    (
        "code",
        """import pandas as pd
copula = privtrain.run("synthetic", ["ledger.allow_non_private=true"])
pd.DataFrame({
    name: {"quality": r.metrics.get("quality_score"), "TSTR": r.metrics.get("tstr_accuracy"),
           "TRTR": r.metrics.get("trtr_accuracy"), "ε": r.guarantee.epsilon}
    for name, r in {"GaussianCopula (SDV)": copula, "DP Gaussian copula": dp}.items()
}).T""",
    ),
    (
        "code",
        """for png in sorted(dp.output_dir.glob("*.png")):
    display(Image(filename=str(png)))""",
    ),
]


def main() -> None:
    for name in NOTEBOOKS:
        (HERE / name).write_text(render(name))
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
