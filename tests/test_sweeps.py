"""Sweeps: trials run in parallel through Hydra's joblib launcher, all charged, summarised at the end."""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from privtrain.config import sweeps


def _trial(root, num: int, overrides: list[str], metrics: dict | None) -> None:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_the_summary_lists_every_trial_and_plots_accuracy_against_epsilon(tmp_path):
    def metrics(acc, eps):
        return {
            "metrics": {"accuracy": acc},
            "guarantee": {"epsilon": eps, "delta": 1e-5, "unit": "example"},
            "dataset": {"name": "digits"},
            "ledger": {"entry": f"dp_sgd-{acc}"},
        }

    _trial(tmp_path, 0, ["privacy.target_epsilon=1"], metrics(0.8, 1.0))
    _trial(tmp_path, 1, ["privacy.target_epsilon=8"], None)  # refused: over budget
    _trial(tmp_path, 2, ["privacy=none"], metrics(0.95, "inf"))
    files = sweeps.write_summary(tmp_path)
    assert [f.name for f in files] == ["summary.csv", "summary.md", "accuracy_vs_epsilon.png"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "summary.csv")
    assert list(table["status"]) == ["done", "no result (refused or failed: see its log)", "done"]
    assert list(table["overrides"]) == ["privacy.target_epsilon=1", "privacy.target_epsilon=8", "privacy=none"]
    assert table["epsilon"].iloc[2] == float("inf") and " inf " in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "accuracy_vs_epsilon.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_joblib_sweep_runs_every_trial_charges_each_and_writes_the_summary(cli, tmp_path, ledger_path):
    out = cli("run", "dp_sgd", "-m", "hydra/launcher=joblib", "privacy.target_epsilon=1,2", *TINY)
    assert out.returncode == 0, out.stderr
    (sweep,) = (tmp_path / "multirun" / "dp_sgd").iterdir()  # one directory for every trial, in any process
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert "JoblibLauncher" in (sweep / "multirun.yaml").read_text() or "joblib" in out.stdout + out.stderr
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",done," in line for line in summary[1:])
    from privtrain import ledger

    assert len([e for e in ledger.open(ledger_path).entries() if e.status == "committed"]) == 2
