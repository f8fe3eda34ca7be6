"""The dp_sgd recipe through the Python API, end to end on tiny settings."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY

import privtrain
from privtrain import ledger
from privtrain.privacy.events import epsilon_pld


def test_api_returns_metrics_guarantee_events_and_output_dir(tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=1"], output_dir=tmp_path / "run")
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    g = result.guarantee
    assert g.unit == "example" and g.accountant == "prv" and g.delta == 1e-5
    assert g.epsilon == pytest.approx(1.0, rel=0.01)
    assert type(g.events[0]).__name__ == "SelfComposedDpEvent"
    assert epsilon_pld(list(g.events), g.delta) == pytest.approx(g.epsilon, rel=0.02)
    assert (result.output_dir / "metrics.json").is_file()
    assert len(result.metrics["per_class_accuracy"]) == 10
    book = ledger.open(ledger_path)
    assert book.spent("digits") == pytest.approx(epsilon_pld(list(g.events), g.delta), rel=1e-3)


@pytest.mark.slow
def test_non_private_baseline_same_data_and_evaluation(tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", [*TINY, "privacy=none"], output_dir=tmp_path / "run")
    assert math.isinf(result.guarantee.epsilon) and not result.guarantee.private
    assert result.metrics["n_test"] == result.dataset["n_test"] == 332  # digits' keyed held-out split (seed 0)
    assert "No differential privacy guarantee" in (result.output_dir / "model_card.md").read_text()
    assert math.isinf(ledger.open(ledger_path).spent("digits"))


@pytest.mark.parametrize("mode", ["ghost", "functorch"])
@pytest.mark.slow
def test_grad_sample_modes_train(mode, tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", [*TINY, f"recipe.grad_sample_mode={mode}", "model=mlp"], output_dir=tmp_path / "r")
    assert result.metrics["accuracy"] > 0.3 and result.metrics["steps"] == 6


@pytest.mark.slow
def test_logical_batch_larger_than_physical_uses_batch_memory_manager(tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", [*TINY, "recipe.max_physical_batch_size=32"], output_dir=tmp_path / "r")
    assert result.metrics["steps"] == 6  # logical steps, not physical ones
    assert result.guarantee.epsilon == pytest.approx(3.0, rel=0.01)


@pytest.mark.slow
def test_cnn_and_tables_train(tmp_path, ledger_path):
    cnn = privtrain.run("dp_sgd", [*TINY, "model=cnn"], output_dir=tmp_path / "cnn")
    bc = privtrain.run("dp_sgd", [*TINY, "dataset=breast_cancer", "model=mlp"], output_dir=tmp_path / "bc")
    assert cnn.metrics["accuracy"] > 0.1 and bc.metrics["accuracy"] > 0.5
    assert bc.dataset["fingerprint"] != cnn.dataset["fingerprint"]


@pytest.mark.slow
def test_resume_accumulates_epsilon_and_charges_only_new_steps(tmp_path, ledger_path):
    first = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "a")
    book = ledger.open(ledger_path)
    spent_one = book.spent("digits")
    second = privtrain.run("dp_sgd", [*TINY, f"resume={first.output_dir / 'checkpoint.pt'}"], output_dir=tmp_path / "b")
    assert second.guarantee.epsilon > first.guarantee.epsilon * 1.2  # never resets
    assert len(second.guarantee.events) == 2
    ckpt = torch.load(second.output_dir / "checkpoint.pt", weights_only=False)
    assert ckpt["meta"]["steps"] == 12
    spent_two = ledger.open(ledger_path).spent("digits")
    # the ledger composes first run + the new steps: equals the resumed model's own guarantee
    assert spent_two == pytest.approx(epsilon_pld(list(second.guarantee.events), 1e-5), rel=1e-3)
    assert spent_two > spent_one


@pytest.mark.slow
def test_csv_with_inferred_schema_voids_the_guarantee(tmp_path, ledger_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] > 0).astype(int)}).to_csv(
        tmp_path / "d.csv", index=False
    )
    result = privtrain.run(
        "dp_sgd",
        [
            *TINY,
            "recipe.batch_size=64",
            "dataset=csv",
            f"dataset.path={tmp_path / 'd.csv'}",
            "dataset.target=label",
            "dataset.infer_schema=true",
        ],
        output_dir=tmp_path / "r",
    )
    assert any("inferred from the private data" in n for n in result.guarantee.notes)
    assert math.isinf(result.guarantee.epsilon) and any("infer_schema=true" in n for n in result.guarantee.notes)
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["dataset"]["schema"] == "inferred" and "final_train_loss" not in metrics["metrics"]
    (entry,) = [e for e in ledger.open(ledger_path).entries() if e.status == "committed"]
    assert entry.events_json == '[{"type":"NonPrivateDpEvent"}]'  # charged as what it is


@pytest.mark.parametrize("private", [True, False])
def test_the_progress_bar_shows_steps_and_epsilon_never_the_training_loss(capsys, private):
    import numpy as np

    from privtrain import training
    from privtrain.privacy import dp_sgd

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)).astype(np.float32), rng.integers(0, 2, 200)
    settings = training.TrainSettings(
        epochs=2, batch_size=50, max_physical_batch_size=50, optimizer="sgd", lr=0.1, progress=True
    )
    plan = (
        dp_sgd.plan(
            n_train=200,
            batch_size=50,
            epochs=2,
            target_epsilon=None,
            noise_multiplier=1.0,
            delta=1e-5,
            max_grad_norm=1.0,
            accountant="rdp",
        )
        if private
        else None
    )
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    out = training.train(model, x, y, settings, dp=plan, desc="bar")
    err = capsys.readouterr().err
    assert out.steps == 8 and "/8 [" in err  # the bar ran, over the planned steps
    assert "loss" not in err.lower()  # a non-DP statistic of the training rows: not printed by default
    assert ("eps=" in err) == private
