"""Fairness in the card: per-group accuracy on the held-out split, the largest gap, and the cost of privacy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from monitoring_helpers import overrides, table

import privtrain
from privtrain.errors import UserError
from privtrain.monitoring import fairness

N = 4000


def test_groups_and_gap_against_a_hand_count():
    frame = pd.DataFrame({"sex": ["F"] * 40 + ["M"] * 60 + ["X"] * 5, "age_band": ["young"] * 100 + ["old"] * 5})
    y = np.zeros(105, int)
    pred = np.zeros(105, int)
    pred[:20] = 1  # F: 20 of 40 right; M: all 60 right; X joins no sex group
    out = fairness.report({"sex": ("F", "M"), "age_band": ("young", "old")}, frame, y, pred)
    assert out["groups"]["sex"]["F"] == {"n": 40, "accuracy": 0.5}
    assert out["groups"]["sex"]["M"] == {"n": 60, "accuracy": 1.0}
    assert out["groups"]["age_band"]["young"]["accuracy"] == 0.8
    assert "accuracy" not in out["groups"]["age_band"]["old"] and out["groups"]["age_band"]["old"]["n"] == 0
    assert out["max_gap"] == 0.5 and out["attributes"] == ["sex", "age_band"]
    assert "evaluator's data" in out["evaluated_on"]


def test_sensitive_columns_must_exist_and_declare_their_categories():
    with pytest.raises(UserError, match="not a column"):
        fairness.categories(("race",), {"sex": {"categories": ["F"]}}, ["sex"])
    with pytest.raises(UserError, match="declare the categories of 'sex'"):
        fairness.categories(("sex",), {"sex": {"min": 0, "max": 1}}, ["sex"])
    assert fairness.categories(("sex",), {"sex": {"categories": ["F", "M"]}}, ["sex"]) == {"sex": ("F", "M")}


def test_comparable_hash_ignores_only_the_privacy_side():
    base = "seed: 0\nprivacy: {name: none}\nledger: {path: a}\nmodel: {name: logreg}\n"
    dp = "seed: 0\nprivacy: {name: dp, target_epsilon: 3}\nledger: {path: b}\nmodel: {name: logreg}\n"
    other = "seed: 1\nprivacy: {name: dp}\nmodel: {name: logreg}\n"
    assert fairness.comparable_hash(base) == fairness.comparable_hash(dp) != fairness.comparable_hash(other)


def test_card_and_metrics_report_the_planted_gap_and_the_cost_of_privacy(tmp_path, ledger_path):
    table(N, 0).to_csv(tmp_path / "train.csv", index=False)
    common = overrides(tmp_path / "train.csv", N, "dataset.sensitive=[sex,age_band]", epochs=3, batch=128)
    baseline = privtrain.run("dp_sgd", [*common, "privacy=none"], output_dir=tmp_path / "runs" / "base")
    base = json.loads((baseline.output_dir / "metrics.json").read_text())["fairness"]
    assert base["groups"]["sex"]["F"]["accuracy"] + 0.1 < base["groups"]["sex"]["M"]["accuracy"]  # the planted effect
    # ε = 3: a model good enough on group M that the planted gap shows through the noise (at ε = 1 it may not)
    private = privtrain.run("dp_sgd", [*common, "privacy.target_epsilon=3"], output_dir=tmp_path / "runs" / "dp")
    fair = json.loads((private.output_dir / "metrics.json").read_text())["fairness"]
    sex = fair["groups"]["sex"]
    assert fair["max_gap"] == pytest.approx(
        max(
            sex["M"]["accuracy"] - sex["F"]["accuracy"],
            abs(fair["groups"]["age_band"]["young"]["accuracy"] - fair["groups"]["age_band"]["old"]["accuracy"]),
        ),
        abs=1e-4,
    )
    assert fair["max_gap"] > 0.1
    cost = fair["cost_of_privacy"]
    assert cost["baseline_run"] == baseline.ledger["entry"]
    assert cost["accuracy_drop"]["sex"]["F"] == pytest.approx(
        base["groups"]["sex"]["F"]["accuracy"] - sex["F"]["accuracy"], abs=1e-4
    )
    card = (private.output_dir / "model_card.md").read_text()
    assert "## Fairness" in card and "Cost of privacy" in card and "evaluator's data" in card
    # a forged baseline (its metrics edited after the ledger chained them) is not trusted
    doc = json.loads((baseline.output_dir / "metrics.json").read_text())
    doc["fairness"]["groups"]["sex"]["F"]["accuracy"] = 1.0
    (baseline.output_dir / "metrics.json").write_text(json.dumps(doc))
    again = privtrain.run("dp_sgd", [*common, "privacy.target_epsilon=1"], output_dir=tmp_path / "runs" / "dp2")
    assert "cost_of_privacy" not in json.loads((again.output_dir / "metrics.json").read_text())["fairness"]


def test_an_undeclared_sensitive_attribute_is_refused_before_any_charge(tmp_path, ledger_path):
    from privtrain import ledger

    table(500, 0).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match="not a column"):
        privtrain.run(
            "dp_sgd", overrides(tmp_path / "t.csv", 500, "dataset.sensitive=[race]"), output_dir=tmp_path / "r"
        )
    assert not ledger_path.exists() or not [e for e in ledger.open(ledger_path).entries() if e.status == "committed"]
