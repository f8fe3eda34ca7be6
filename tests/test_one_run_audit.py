"""The one-run audit's machinery: canaries through Opacus' real parts, the CLI, the run option, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from privtrain.audit.canaries import CANARY_LABEL, CanaryModel, DiracObserver, canary_tensors, with_ids
from privtrain.errors import UserError

SMALL = ["privacy.target_epsilon=2", "recipe.steps=60", "recipe.progress=false"]


def _logreg(n_inputs: int = 8, n_classes: int = 3):
    from privtrain import models
    from privtrain.models import ModelSpec

    torch.manual_seed(0)
    return models.build(ModelSpec("logreg"), n_inputs=n_inputs, n_classes=n_classes, image_shape=None)


def test_a_canary_row_has_gradient_2c_on_its_own_coordinate_and_nothing_elsewhere():
    from opacus import GradSampleModule

    base = _logreg()
    model = CanaryModel(base, n_canaries=5, n_classes=3, norm=2 * 0.5)
    x = np.random.default_rng(0).random((4, 8)).astype(np.float32)
    ids = np.array([0, 3, 0, 1])  # rows 1 and 3 are canaries 2 and 0
    xb = torch.from_numpy(with_ids(x, ids))
    # The canaries never change what the model computes for a real row (up to float rounding of the slice).
    with torch.no_grad():
        assert torch.allclose(model(xb)[[0, 2]], base(torch.from_numpy(x))[[0, 2]], rtol=0, atol=1e-6)
    gsm = GradSampleModule(model, loss_reduction="mean")
    y = torch.tensor([0, 1, 2, 1])
    torch.nn.functional.cross_entropy(gsm(xb), y).backward()
    canary = model.canary[0].weight.grad_sample.reshape(4, -1)
    expected = torch.zeros(4, 5)
    expected[1, 2], expected[3, 0] = 1.0, 1.0
    assert torch.allclose(canary, expected, atol=1e-6)  # norm 2C = 1 on its own coordinate, per row
    for p in base.parameters():  # ... and exactly zero in the real model for canary rows
        assert torch.count_nonzero(p.grad_sample[[1, 3]]) == 0


def test_per_layer_clipping_gets_enough_canary_tensors_for_nearly_the_full_norm():
    base = _logreg()
    assert canary_tensors("flat", base) == 1
    k = canary_tensors("per_layer", base)
    assert k == 18 and math.sqrt(k / (2 + k)) > 0.94


@pytest.mark.parametrize(
    "mode,clipping", [("hooks", "flat"), ("functorch", "flat"), ("ghost", "flat"), ("hooks", "per_layer")]
)
def test_observed_canary_coordinates_are_sampling_plus_the_claimed_noise(mode, clipping):
    """Through the real sampler, per-sample gradients, clipping, noise and divisor: x = Bernoulli(q) + N(0, σ_eff²)."""
    from privtrain import training
    from privtrain.privacy import dp_sgd

    rng = np.random.default_rng(1)
    n, m, steps = 400, 200, 80
    included = rng.random(m) < 0.5
    ids = np.zeros(n)
    ids[: included.sum()] = np.flatnonzero(included) + 1
    x, y = rng.random((n, 8)).astype(np.float32), rng.integers(0, 3, n)
    y[ids > 0] = CANARY_LABEL  # its gradient is +2C e_j only with this label (CanaryModel's docstring)
    settings = training.TrainSettings(
        epochs=None,
        steps=steps,
        batch_size=40,
        max_physical_batch_size=40,
        optimizer="sgd",
        lr=0.1,
        grad_sample_mode=mode,
        clipping=clipping,
        progress=False,
    ).for_rows(n)
    plan = dp_sgd.plan(
        n_train=n,
        batch_size=40,
        epochs=settings.epochs,
        target_epsilon=None,
        noise_multiplier=1.0,
        delta=1e-5,
        max_grad_norm=0.5,
        accountant="rdp",
    )
    base = _logreg()
    observer = DiracObserver(CanaryModel(base, m, 3, tensors=canary_tensors(clipping, base), norm=1.0))
    training.train(observer.model, with_ids(x, ids), y, settings, dp=plan, instrument=observer, report_epsilon=False)
    obs = observer.observations
    assert obs.shape == (plan.steps, m)
    sigma_eff = plan.noise_multiplier * observer.built["geometry"]
    assert observer.built["geometry"] == pytest.approx(1.0 if clipping == "flat" else math.sqrt(20 / 18))
    se = sigma_eff / math.sqrt(obs[:, included].size)
    assert abs(obs[:, included].mean() - plan.sample_rate) < 5 * se  # a sampled canary adds exactly 1
    assert abs(obs[:, ~included].mean()) < 5 * se
    assert obs[:, ~included].std() == pytest.approx(sigma_eff, rel=0.05)


def test_mutant_switch_rejects_an_unknown_name(monkeypatch):
    from privtrain.privacy import mutants

    monkeypatch.setenv(mutants.ENV, "half_nosie")
    with pytest.raises(ValueError, match="half_nosie"):
        mutants.active()
    monkeypatch.delenv(mutants.ENV)
    assert mutants.active() is None


# --- the command -------------------------------------------------------------------------------------------------


def test_cli_one_run_audit_writes_its_report_and_charges_nothing(tmp_path, ledger_path, capsys):
    from privtrain.cli import main

    out = tmp_path / "report"
    assert main(["audit", "--one-run", "dp_sgd", *SMALL, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lower bound" in printed and "CONSISTENT" in printed
    audit = json.loads((out / "one_run_audit.json").read_text())
    assert audit["claimed"]["epsilon"] == pytest.approx(2.0, abs=0.02) and audit["claimed"]["delta"] == 1e-5
    assert audit["epsilon_lower_bound"] <= audit["claimed"]["epsilon"] and audit["verdict"] == "consistent"
    assert audit["canaries"] == 1000 and set(audit["attacks"]) == {"gauss", "steinke", "replay"}
    assert audit["structure"]["flag"] is False and audit["mutant"] is None
    assert (out / "one_run_audit_scores.png").stat().st_size > 1000
    assert "Lower bound: ε ≥" in (out / "one_run_audit.md").read_text()
    assert not ledger_path.exists()  # the audit never opens the ledger


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["audit", "--one-run", "synthetic"], "covered"),
        (["audit", "--one-run", "federated", "privacy=dp"], "central DP-FedAvg"),
        (["audit", "--one-run", "federated", "--mode", "both"], "white-box"),
        (["audit", "--one-run", "dp_sgd", "privacy=none"], "privacy=none"),
        (["audit", "--one-run", "dp_sgd", "audit.one_run.mode=bogus"], "audit.one_run.mode"),
        (["audit", "--one-run", "dp_sgd", "--canaries", "5"], "canaries"),
        (["audit"], "one run directory"),
        (["audit", "some/run", "--mode", "both"], "--one-run"),
    ],
)
def test_bad_one_run_input_is_one_line_exit_2_and_nothing_charged(argv, fragment, ledger_path, capsys):
    from privtrain.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not ledger_path.exists()


def test_the_run_option_audits_before_any_charge_and_a_red_flag_stops_the_run(tmp_path, ledger_path, monkeypatch):
    import privtrain
    from privtrain import ledger
    from privtrain.audit import RED_FLAG_EXIT, OneRunRedFlag

    ok = privtrain.run("dp_sgd", [*SMALL, "audit.one_run.enabled=true"], output_dir=tmp_path / "ok")
    assert ok.metrics["one_run_audit"]["verdict"] == "consistent"
    assert (tmp_path / "ok" / "one_run_audit" / "one_run_audit.json").is_file()
    card = (tmp_path / "ok" / "model_card.md").read_text()
    assert "## One-run audit of the training mechanism" in card and "consistent with the claimed" in card
    assert card.index("One-run audit") < card.index("## Provenance")
    from privtrain.artifacts import evidence
    from privtrain.artifacts.verify import run_evidence

    _, rec = run_evidence(tmp_path / "ok")  # the card with its section is what the ledger recorded
    assert "model_card.md" in rec.hashes and "one_run_audit/one_run_audit.json" in rec.hashes
    assert evidence.problems(tmp_path / "ok", rec) == []
    book = ledger.open(str(ledger_path))
    before = len(book.entries())
    monkeypatch.setenv("PRIVTRAIN_MUTANT", "half_noise")
    with pytest.raises(OneRunRedFlag, match="red flag") as caught:
        privtrain.run("dp_sgd", [*SMALL, "audit.one_run.enabled=true"], output_dir=tmp_path / "bad")
    assert caught.value.exit_code == RED_FLAG_EXIT
    assert len(ledger.open(str(ledger_path)).entries()) == before  # nothing reserved, nothing charged
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_the_run_option_is_refused_for_recipes_it_does_not_cover(ledger_path):
    import privtrain

    with pytest.raises(UserError, match="one-run audit covers dp_sgd"):
        privtrain.run("synthetic", ["audit.one_run.enabled=true"])


# --- release: a policy can require the configuration's one-run audit --------------------------------------------

POLICY = "version: 1\nrules:\n  - name: audited\n    require_one_run_audit: true\n"


def test_a_policy_can_require_a_one_run_audit_of_the_same_configuration_before_release(tmp_path, ledger_path, capsys):
    import privtrain
    from privtrain.cli import main

    (ledger_path.parent / "policy.yaml").write_text(POLICY)
    plain = privtrain.run("dp_sgd", SMALL, output_dir=tmp_path / "plain")
    assert main(["release", str(plain.output_dir)]) == 1
    assert "FAIL  one-run audit: the policy requires a one-run audit" in capsys.readouterr().out
    audited = privtrain.run("dp_sgd", [*SMALL, "audit.one_run.enabled=true"], output_dir=tmp_path / "audited")
    assert main(["release", str(audited.output_dir)]) == 0
    assert "pass  one-run audit: the configuration's one-run audit shows ε ≥" in capsys.readouterr().out


def test_the_release_gate_refuses_an_audit_of_another_configuration_or_one_not_chained(tmp_path):
    from types import SimpleNamespace

    from privtrain.artifacts.release_gates import one_run_gate as _one_run_gate

    report = tmp_path / "one_run_audit" / "one_run_audit.json"
    report.parent.mkdir()
    report.write_text(
        json.dumps({"configuration": {"config_hash": "abc"}, "verdict": "consistent", "epsilon_lower_bound": 1.0})
    )
    chained = {"one_run_audit/one_run_audit.json": "sha"}
    assert _one_run_gate(tmp_path, SimpleNamespace(config_hash="abc"), chained).ok
    other = _one_run_gate(tmp_path, SimpleNamespace(config_hash="xyz"), chained)
    assert not other.ok and "another configuration" in other.detail
    assert "not chained" in _one_run_gate(tmp_path, SimpleNamespace(config_hash="abc"), {}).detail
    report.write_text(json.dumps({"configuration": {"config_hash": "abc"}, "verdict": "red_flag"}))
    assert "red_flag" in _one_run_gate(tmp_path, SimpleNamespace(config_hash="abc"), chained).detail
