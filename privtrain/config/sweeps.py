"""The end of a sweep (``privtrain run RECIPE -m ...``): one table of every trial, and accuracy against ε.

A Hydra callback (configs/hydra/default.yaml), so it runs with every launcher (basic, joblib, submitit)
once all trials are done. It reads each trial's ``metrics.json`` and writes ``summary.csv``,
``summary.md`` and ``accuracy_vs_epsilon.png`` in the sweep's directory. A trial without results
(refused before it started, or failed) is listed as such. Choosing a trial by these held-out metrics is
post-processing for the training rows (every trial was charged) and not covered for the held-out rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hydra.experimental.callback import Callback

COLUMNS = (
    "trial",
    "overrides",
    "status",
    "accuracy",
    "balanced_accuracy",
    "majority_baseline",
    "epsilon",
    "delta",
    "unit",
    "source",
    "run",
    "warning",
)
# one cell of the summary table: text, trial number, a metric or ε (inf when non-private), or missing
Cell = str | int | float | None


def trials(sweep_dir: Path) -> list[dict[str, Cell]]:
    """One row per trial folder of a sweep (in trial order)."""
    import yaml

    rows = []
    for job in sorted(
        (p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        shown = " ".join(o for o in overrides if not o.startswith("hydra."))
        row: dict[str, Cell] = dict.fromkeys(COLUMNS, "")
        row.update(trial=int(job.name), overrides=shown, status="no result (refused or failed: see its log)")
        metrics_file = job / "metrics.json"
        if metrics_file.is_file():
            m = json.loads(metrics_file.read_text())
            g = m["guarantee"]
            row.update(
                status="done",
                accuracy=m["metrics"].get("accuracy", m["metrics"].get("tstr_accuracy")),
                balanced_accuracy=m["metrics"].get("balanced_accuracy", ""),
                majority_baseline=m["metrics"].get("majority_baseline", ""),
                warning=m["metrics"].get("warning", ""),
                epsilon=math.inf if g["epsilon"] == "inf" else float(g["epsilon"]),
                delta=g["delta"],
                unit=g["unit"],
                source=m["dataset"].get("name"),
                run=m["ledger"].get("entry"),
            )
        rows.append(row)
    return rows


def write_summary(sweep_dir: Path) -> list[Path]:
    """summary.csv, summary.md and accuracy_vs_epsilon.png of a finished sweep; returns what it wrote."""
    import pandas as pd

    rows = trials(sweep_dir)
    if not rows:
        return []
    frame = pd.DataFrame(rows, columns=COLUMNS)
    out = Path(sweep_dir)
    frame.to_csv(out / "summary.csv", index=False)
    shown = frame.copy()
    for column in ("accuracy", "balanced_accuracy", "majority_baseline"):
        shown[column] = [f"{a:.4f}" if isinstance(a, float) else a for a in shown[column]]
    shown["epsilon"] = [
        ("inf" if math.isinf(e) else f"{e:.3g}") if isinstance(e, float) else e for e in shown["epsilon"]
    ]
    (out / "summary.md").write_text(
        f"# Sweep {out.name}: {len(frame)} trials\n\n{shown.to_markdown(index=False)}\n\n"
        "Every trial was charged to the ledger. Accuracy is on each trial's held-out split (the evaluator's data, "
        "not covered by the guarantee); picking the best trial by it is post-processing for the training rows.\n"
    )
    files = [out / "summary.csv", out / "summary.md"]
    done = frame[frame["status"] == "done"]
    if len(done):
        files.append(_plot(done, out / "accuracy_vs_epsilon.png"))
    return files


def _plot(done, path: Path) -> Path:
    from privtrain.figures import figure

    eps = [float(e) for e in done["epsilon"]]
    finite = [e for e in eps if math.isfinite(e)]
    at_inf = max(finite) * 2 if finite else 1.0
    fig, ax = figure(figsize=(6, 4), dpi=110)
    ax.scatter([e if math.isfinite(e) else at_inf for e in eps], [float(a) for a in done["accuracy"]])
    for e, a, t in zip(eps, done["accuracy"], done["trial"]):
        ax.annotate(
            str(t), (e if math.isfinite(e) else at_inf, float(a)), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    if finite:
        ax.set_xscale("log")
    ax.set_xlabel(f"ε per {done['unit'].iloc[0]} (rightmost: ∞ if any trial is non-private)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("sweep: accuracy against ε (numbers: trials)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


class SweepSummary(Callback):
    """Hydra calls ``on_multirun_end`` once, after every trial of the sweep."""

    def on_multirun_end(self, config, **kwargs) -> None:
        files = write_summary(Path(config.hydra.sweep.dir))
        if files:
            print(f"privtrain: sweep summary: {files[1]}", flush=True)
