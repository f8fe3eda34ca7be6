"""End-to-end audits of real runs: leaky models are caught, DP models are not, bugs raise the red flag,
and shadow training is charged (slow: ``pytest --slow``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import privtrain
from privtrain import ledger
from privtrain.audit import audit_run
from privtrain.errors import BudgetExceeded, UserError
from tests.conftest import TINY

pytestmark = pytest.mark.slow
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # on a busy 2-core machine, torch's threads make tiny models 10x slower


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits_csv(path, rows: slice) -> list[str]:
    """A slice of digits as a CSV, and the overrides that train on it with a declared (public) schema."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.sample(frac=1.0, random_state=0).iloc[rows]
    frame.to_csv(path, index=False)
    decl = ", ".join(f"{c}: {{min: 0, max: 16}}" for c in frame.columns if c != "target")
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=target",
        f"dataset.public_n={len(frame)}",
        f"dataset.schema={{{decl}, target: {{categories: [0,1,2,3,4,5,6,7,8,9]}}}}",
    ]


# A large MLP trained long on 150 rows: it memorises them.
OVERFIT = [
    "model=mlp",
    "model.hidden=[1024]",
    "model.activation=relu",
    "recipe.epochs=200",
    "recipe.batch_size=32",
    "recipe.max_physical_batch_size=32",
    "recipe.lr=0.001",
    "recipe.ema=0",
    "dataset.test_size=0.5",
    "recipe.progress=false",
]


def test_overfit_non_private_model_is_caught(tmp_path, ledger_path):
    data = _digits_csv(tmp_path / "digits300.csv", slice(0, 300))
    privtrain.run("dp_sgd", [*data, *OVERFIT, "privacy=none"], output_dir=tmp_path / "run")
    audit = audit_run(tmp_path / "run", shadow_models=4, shadow_data="charged")
    best_auc = max(a["auc"] for a in audit["attacks"].values())
    assert best_auc > 0.7, audit["attacks"]
    assert audit["attacks"]["lira"]["auc"] > audit["attacks"]["loss"]["auc"]  # per-row calibration helps
    assert audit["epsilon_lower_bound"] > 1.0
    assert audit["verdict"] == "no_guarantee" and not audit["red_flag"]
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "trained without DP" in card and "## Empirical privacy audit" in card


def test_dp_model_at_epsilon_1_leaks_nothing_measurable(tmp_path, ledger_path):
    result = privtrain.run(
        "dp_sgd",
        [*TINY, "privacy.target_epsilon=1", "audit.enabled=true", "audit.shadow_models=0"],
        output_dir=tmp_path / "run",
    )
    audit = result.metrics["audit"]  # the hook at the end of the recipe ran the audit
    assert audit["claimed"]["epsilon"] == pytest.approx(1.0, abs=0.01)
    for name, attack in audit["attacks"].items():
        assert abs(attack["auc"] - 0.5) < 0.05, (name, attack["auc"])
    assert audit["epsilon_lower_bound"] < audit["claimed"]["epsilon"] and not audit["red_flag"]
    run = tmp_path / "run"
    assert json.loads((run / "audit.json").read_text())["verdict"] == "consistent"
    assert (run / "audit_roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (run / "model_card.md").read_text()
    assert "Consistent with the guarantee" in card and "RED FLAG" not in card


def test_red_flag_fires_when_noise_was_silently_disabled(tmp_path, ledger_path, cli, monkeypatch):
    import torch
    from opacus.optimizers import optimizer as dp_optimizer
    from opacus.optimizers import optimizer_fast_gradient_clipping as ghost_optimizer

    # The planted bug: Opacus adds no noise, while the accountant (and so the claim) believes it does (in the
    # optimizer of every clipping mode: ghost clipping's imports its own reference to the noise function).
    def silent(std, reference, generator=None, secure_mode=False):
        return torch.zeros_like(reference)

    monkeypatch.setattr(dp_optimizer, "_generate_noise", silent)
    monkeypatch.setattr(ghost_optimizer, "_generate_noise", silent)
    data = _digits_csv(tmp_path / "digits300.csv", slice(0, 300))
    result = privtrain.run(
        "dp_sgd",
        [*data, *OVERFIT, "privacy.target_epsilon=0.5", "privacy.max_grad_norm=10"],
        output_dir=tmp_path / "run",
    )
    assert result.guarantee.epsilon == pytest.approx(0.5, abs=0.01)  # the run claims DP
    done = cli("audit", str(tmp_path / "run"), "--shadow-models", "0", env=ONE_THREAD)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "RED FLAG" in done.stdout and "RED FLAG" in done.stderr
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit["red_flag"] and audit["epsilon_lower_bound"] > 0.5
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "RED FLAG — PRIVACY AUDIT FAILED" in card.split("## Intended use")[0]  # at the top


def _tiny_run(tmp_path, *extra) -> tuple:
    result = privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=1", *extra], output_dir=tmp_path / "run")
    return tmp_path / "run", result.dataset["fingerprint"]


def test_shadow_training_is_charged_to_the_ledger(tmp_path, ledger_path):
    run, fp = _tiny_run(tmp_path)
    book = ledger.open(ledger_path)
    before = book.spent(fp)
    audit = audit_run(run, shadow_models=4, shadow_data="charged")
    shadow = audit["shadow"]
    entries = [e for e in book.entries(fp) if e.recipe == "audit-shadow"]
    assert [e.status for e in entries] == ["reserved", "committed"]
    committed = entries[-1]
    assert committed.run_id == shadow["ledger_entry"] and committed.dataset_fingerprint == fp
    assert committed.source == "digits"  # the shadows train on digits' people: charged to its budget
    assert len(committed.events) == 2  # each row is in K/2 = 2 shadows
    assert committed.epsilon == pytest.approx(shadow["charged_epsilon"]) and committed.epsilon > 1.0
    assert book.spent(fp) > before + 0.5
    assert "audit.json" in json.loads(committed.artifacts_json)
    assert "charged ε" in (run / "model_card.md").read_text()


def test_shadows_are_refused_until_a_data_source_is_chosen_and_over_budget_charges_nothing(tmp_path, ledger_path):
    run, fp = _tiny_run(tmp_path, "ledger.default_budget.epsilon=2.5", "ledger.default_budget.delta=1e-5")
    book = ledger.open(ledger_path)
    n_entries = len(book.entries())
    with pytest.raises(UserError, match=r"audit.shadow_data is not set: .* would charge epsilon=\d"):
        audit_run(run)  # default settings: K = 4 shadows, no data source chosen
    with pytest.raises(BudgetExceeded, match="over budget"):
        audit_run(run, shadow_data="charged")
    assert len(book.entries()) == n_entries and not (run / "audit.json").exists()


def test_pool_shadows_charge_nothing_and_a_pool_of_private_rows_is_refused(tmp_path, ledger_path):
    import pandas as pd

    data = _digits_csv(tmp_path / "private.csv", slice(0, 600))
    _digits_csv(tmp_path / "others.csv", slice(600, 1200))
    others = pd.read_csv(tmp_path / "others.csv")  # digits rows are digits' people: jitter them into other images
    pixels = [c for c in others.columns if c != "target"]
    jitter = np.random.default_rng(0).integers(-2, 3, size=(len(others), len(pixels)))
    others[pixels] = np.clip(others[pixels].to_numpy() + jitter, 0, 16)
    others.to_csv(tmp_path / "pool.csv", index=False)
    privtrain.run(
        "dp_sgd",
        [*data, *TINY, "recipe.batch_size=64", "recipe.max_physical_batch_size=64", "privacy.target_epsilon=1"],
        output_dir=tmp_path / "run",
    )
    book = ledger.open(ledger_path)
    before = book.entries()
    audit = audit_run(tmp_path / "run", shadow_models=4, shadow_data="pool", pool_path=str(tmp_path / "pool.csv"))
    assert audit["shadow"]["variant"] == "offline" and audit["shadow"]["charged_epsilon"] == 0.0
    assert np.isfinite(audit["attacks"]["lira"]["auc"])
    added = book.entries()[len(before) :]
    assert book.entries()[: len(before)] == before
    # the pool's comparison with registered tables is a recorded probe; the audit chains the card it rewrote;
    # neither charges anything
    assert [e.status for e in added] == ["rows", "artifacts"] and "probe" in added[0].detail
    assert all(e.epsilon == 0.0 for e in added)
    with pytest.raises(UserError, match=r"row\(s\) of .* are rows of the private dataset"):
        audit_run(tmp_path / "run", shadow_models=4, shadow_data="pool", pool_path=str(tmp_path / "private.csv"))
    with pytest.raises(UserError, match=r"others.csv is private data known to the ledger .*source `digits`"):
        audit_run(tmp_path / "run", shadow_models=4, shadow_data="pool", pool_path=str(tmp_path / "others.csv"))


def test_synthetic_run_gets_a_distance_test_and_sdmetrics_scores(tmp_path, ledger_path, cli):
    privtrain.run("synthetic", ["synth.utility.enabled=false"], output_dir=tmp_path / "syn")
    done = cli("audit", str(tmp_path / "syn"), "--shadow-models", "0", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "syn" / "audit.json").read_text())
    assert audit["kind"] == "synthetic" and 0.0 <= audit["attacks"]["distance"]["auc"] <= 1.0
    assert audit["n_members"] + audit["n_nonmembers"] == 569  # breast_cancer, split as the recipe did
    assert "dcr_baseline_protection" in audit["sdmetrics"]
    assert "## Empirical privacy audit" in (tmp_path / "syn" / "report.md").read_text()
