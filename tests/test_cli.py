"""The privtrain command: fast start-up, listings, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import TINY

HEAVY = ("torch", "flwr", "sdv", "opacus")


@pytest.mark.parametrize("argv", [["--help"], ["ls"], ["ledger", "show"], ["run", "--help"]])
def test_light_commands_do_not_import_heavy_libraries(argv, tmp_path, ledger_path):
    code = (
        "import sys\n"
        "from privtrain.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_ls_lists_recipes_and_groups(cli):
    out = cli("ls")
    assert out.returncode == 0
    assert "dp_sgd" in out.stdout
    for group in ("dataset", "model", "privacy", "ledger"):
        assert group in out.stdout
    assert "breast_cancer" in out.stdout and "cnn" in out.stdout


def test_cfg_job_prints_the_composed_config(cli):
    out = cli("run", "dp_sgd", "privacy.target_epsilon=1", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "target_epsilon: 1" in out.stdout and "loader: digits" in out.stdout


def _entries(ledger_path) -> int:
    if not ledger_path.exists():
        return 0
    with sqlite3.connect(ledger_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]


@pytest.mark.slow
def test_default_style_run_prints_summary_and_writes_artifacts(cli, tmp_path, ledger_path):
    out = cli("run", "dp_sgd", *TINY)
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout and "-DP per example" in out.stdout and "artifacts" in out.stdout
    run_dir = next((tmp_path / "outputs" / "dp_sgd").iterdir())
    for name in ("config.yaml", "metrics.json", "checkpoint.pt", "model_card.md"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
    assert metrics["guarantee"]["unit"] == "example" and metrics["guarantee"]["accountant"] == "prv"
    assert metrics["guarantee"]["epsilon"] == pytest.approx(3.0, rel=0.01)
    assert metrics["ledger"]["entry"].startswith("dp_sgd-")
    card = (run_dir / "model_card.md").read_text()
    for section in ("Intended use", "fingerprint", "Privacy guarantee", "does not cover", "git commit", "opacus"):
        assert section in card, section
    with sqlite3.connect(ledger_path) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM entries ORDER BY id")]
    assert statuses == ["reserved", "committed"]  # a built-in is public and known in full: no rows registered


@pytest.mark.slow
def test_sweep_charges_every_trial(cli, tmp_path, ledger_path):
    out = cli("run", "dp_sgd", "-m", "privacy.target_epsilon=1,2", *TINY)
    assert out.returncode == 0, out.stderr
    runs = sorted((tmp_path / "multirun" / "dp_sgd").glob("*/*/metrics.json"))
    assert len(runs) == 2
    eps = sorted(json.loads(p.read_text())["guarantee"]["epsilon"] for p in runs)
    assert eps == pytest.approx([1.0, 2.0], rel=0.01)
    from privtrain import ledger

    book = ledger.open(ledger_path)
    assert len({e.run_id for e in book.entries("digits") if e.status == "committed"}) == 2
    assert book.spent("digits") > 2.0  # both trials composed (tightly: below the naive 3.0)
    assert book.spent("digits") < 3.0


@pytest.mark.slow
def test_dry_run_prints_plan_and_touches_nothing(cli, tmp_path, ledger_path):
    out = cli("run", "dp_sgd", "--dry-run", *TINY)
    assert out.returncode == 0, out.stderr
    assert "plan" in out.stdout.lower()
    assert not (tmp_path / "outputs").exists()  # not even an empty run folder
    assert _entries(ledger_path) == 0
    budget = cli("ledger", "budget", "set", "digits", "--epsilon", "1", "--delta", "1e-5")
    assert budget.returncode == 0, budget.stderr
    refused = cli("run", "dp_sgd", "--dry-run", *TINY)  # ε=3 cannot fit a budget of 1
    assert refused.returncode == 2 and "REFUSED" in refused.stdout
    assert _entries(ledger_path) == 1 and not (tmp_path / "outputs").exists()  # only the budget entry


@pytest.mark.slow
def test_over_budget_run_is_refused_before_training(cli, tmp_path, ledger_path):
    first = cli("run", "dp_sgd", *TINY, "ledger.default_budget.epsilon=5.5", "ledger.default_budget.delta=1e-5")
    assert first.returncode == 0, first.stderr  # the filter certifies one ε=3 run at 4.9 <= 5.5, two at 5.8
    second = cli("run", "dp_sgd", *TINY)
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()[-1]
    assert "privtrain: error:" in line and "remain" in line.lower()
    assert len(list((tmp_path / "outputs" / "dp_sgd").rglob("metrics.json"))) == 1
