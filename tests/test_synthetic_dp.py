"""The DP synthesizer (dp_gaussian_copula) and lineage: its events, its domain, and training on its rows."""

from __future__ import annotations

import json
import math

import dp_accounting
import numpy as np
import pandas as pd
import pytest

import privtrain
from privtrain import ledger
from privtrain.artifacts import card_text
from privtrain.data.schema import Column
from privtrain.errors import BudgetExceeded, UserError
from privtrain.privacy import events as ev
from privtrain.synthetic import dp_copula
from tests.conftest import TINY
from tests.test_synthetic import CUSTOMER_SCHEMA, csv_args, make_customers

FAST = ["synth.report=false", "synth.utility.enabled=false"]
DP = ["synth=dp_gaussian_copula"]


def _run(recipe, overrides, out, ledger_path):
    return privtrain.run(recipe, [*overrides, f"ledger.path={ledger_path}"], output_dir=out)


# --- the mechanism -------------------------------------------------------------------------


def test_gaussian_sigma_matches_the_pld_accountant():
    sigma = dp_copula.gaussian_sigma(2.0, 1e-5)
    assert ev.epsilon_pld([dp_accounting.GaussianDpEvent(sigma)], 1e-5) == pytest.approx(2.0, abs=1e-4)


def test_plan_splits_one_gaussian_between_marginals_and_correlation():
    p = dp_copula.plan(epsilon=3.0, delta=1e-5, n_columns=5, marginal_share=0.25)
    marginals, correlation = p.events
    assert isinstance(marginals, dp_accounting.SelfComposedDpEvent) and marginals.count == 5
    sigma_m, sigma_c = marginals.event.noise_multiplier, correlation.noise_multiplier
    sigma = (5 / sigma_m**2 + 1 / sigma_c**2) ** -0.5
    assert (5 / sigma_m**2) * sigma**2 == pytest.approx(0.25)
    assert sigma == pytest.approx(dp_copula.gaussian_sigma(3.0, 1e-5), rel=1e-3)
    assert 3.0 - 1e-3 < p.epsilon <= 3.0
    assert p.epsilon == ev.epsilon_pld(p.events, 1e-5)
    assert p.row_clip == pytest.approx(math.sqrt(5))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epsilon": 0.0}, r"epsilon=0\.0 must be > 0"),
        ({"delta": 1.5}, "delta=1.5"),
        ({"bins": 1}, "bins=1"),
        ({"marginal_share": 1.0}, "marginal_share=1.0"),
        ({"row_clip": 0.0}, "row_clip=0.0"),
    ],
)
def test_plan_rejects_bad_values(kwargs, match):
    args = {"epsilon": 1.0, "delta": 1e-5, "n_columns": 3, **kwargs}
    with pytest.raises(UserError, match=match):
        dp_copula.plan(**args)


def test_samples_stay_in_the_declared_domain():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(5, 2, 300), "y": rng.normal(0, 1, 300), "c": rng.choice(["a", "b"], 300)})
    frame["y"] += frame["x"]  # correlated
    domain = [
        Column("x", low=-5.0, high=15.0),
        Column("y", low=-10.0, high=20.0),
        Column("c", categories=("a", "b", "z")),
    ]
    p = dp_copula.plan(epsilon=8.0, delta=1e-5, n_columns=3)
    model = dp_copula.fit(frame, domain, p, rng=np.random.default_rng(0))
    rows = model.sample(500, seed=1)
    assert list(rows.columns) == ["x", "y", "c"] and len(rows) == 500
    assert rows["x"].between(-5, 15).all() and rows["y"].between(-10, 20).all()
    assert set(rows["c"]) <= {"a", "b", "z"}
    assert np.allclose(np.diag(model.correlation), 1.0) and np.linalg.eigvalsh(model.correlation).min() > 0
    assert np.corrcoef(rows["x"], rows["y"])[0, 1] > 0.3  # the correlation survives ε = 8


# --- in the recipe and the ledger ------------------------------------------------------------


def test_dp_events_compose_in_the_ledger_to_the_reported_epsilon(tmp_path, ledger_path):
    first = _run("synthetic", ["dataset=wine", *DP, "synth.epsilon=2", *FAST], tmp_path / "a", ledger_path)
    fp = first.dataset["fingerprint"]
    led = ledger.open(ledger_path)
    assert first.guarantee.epsilon <= 2.0
    assert led.spent(fp) == pytest.approx(first.guarantee.epsilon, abs=2e-3)
    committed = [e for e in led.entries(fp) if e.status == "committed"]
    assert ev.dumps(committed[0].events) == ev.dumps(first.guarantee.events)
    second = _run("synthetic", ["dataset=wine", *DP, "synth.epsilon=2", *FAST, "seed=1"], tmp_path / "b", ledger_path)
    both = ev.epsilon_pld(list(first.guarantee.events) + list(second.guarantee.events), first.guarantee.delta)
    assert led.spent(fp) == pytest.approx(both, abs=2e-3)
    assert 2.0 < led.spent(fp) < 4.0  # tight composition, below the naive sum
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["guarantee"]["epsilon"] == first.guarantee.epsilon and metrics["dp"]["n_columns"] == 14


def test_dp_synthesizer_respects_the_budget(tmp_path, ledger_path):
    budget = ["ledger.default_budget.epsilon=2", "ledger.default_budget.delta=1e-5"]
    with pytest.raises(BudgetExceeded, match="over budget: source 'wine'"):
        _run("synthetic", ["dataset=wine", *DP, "synth.epsilon=3", *budget, *FAST], tmp_path / "a", ledger_path)
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []
    result = _run("synthetic", ["dataset=wine", *DP, "synth.epsilon=0.9", *budget, *FAST], tmp_path / "b", ledger_path)
    led = ledger.open(ledger_path)
    assert result.ledger["remaining"] == pytest.approx(led.remaining("wine"), abs=1e-9)
    assert 0 < led.remaining("wine") < 2.0 - result.guarantee.epsilon  # the filter is stricter than PLD


def test_dp_on_a_csv_uses_the_declared_schema_and_drops_pii(tmp_path, ledger_path):
    path = tmp_path / "customers.csv"
    frame = make_customers(path)
    out = tmp_path / "run"
    result = _run("synthetic", csv_args(path, *DP, *CUSTOMER_SCHEMA, *FAST), out, ledger_path)
    rows = pd.read_csv(out / "synthetic.csv")
    assert set(rows.columns) == {"age", "income", "plan", "churn"}  # PII columns are outside the domain
    assert rows["age"].between(18, 90).all() and set(rows["plan"]) <= {"basic", "plus", "pro"}
    assert not set(frame["customer"]) & set(rows.astype(str).to_numpy().ravel())
    assert any("dataset.schema" in n for n in result.guarantee.notes)
    assert math.isfinite(result.guarantee.epsilon)


def test_dp_domain_from_a_reviewed_metadata_file(tmp_path, ledger_path):
    path = tmp_path / "customers.csv"
    make_customers(path)
    meta = {
        "tables": {
            "t": {
                "columns": {
                    "age": {"sdtype": "numerical", "range_min": 0, "range_max": 120},
                    "income": {"sdtype": "numerical", "range_min": 0, "range_max": 500000},
                    "plan": {"sdtype": "categorical", "range_values": ["basic", "plus", "pro"]},
                    "churn": {"sdtype": "categorical", "range_values": [0, 1]},
                    "customer": {"sdtype": "name", "pii": True},
                    "contact": {"sdtype": "email", "pii": True},
                    "email": {"sdtype": "email", "pii": True},
                    "phone_number": {"sdtype": "phone_number", "pii": True},
                }
            }
        },
        "relationships": [],
        "METADATA_SPEC_VERSION": "V2",
    }
    file = tmp_path / "meta.json"
    file.write_text(json.dumps(meta))
    result = _run("synthetic", csv_args(path, *DP, f"synth.metadata={file}", *FAST), tmp_path / "run", ledger_path)
    assert any("synth.metadata" in n for n in result.guarantee.notes)
    assert set(pd.read_csv(tmp_path / "run" / "synthetic.csv").columns) == {"age", "income", "plan", "churn"}


def test_dp_without_a_declared_domain_is_refused(tmp_path, ledger_path):
    path = tmp_path / "customers.csv"
    make_customers(path)
    for extra in ([], ["dataset.infer_schema=true"]):
        with pytest.raises(UserError, match=r"^synth=dp_gaussian_copula needs a declared domain") as info:
            _run("synthetic", csv_args(path, *DP, *extra), tmp_path / "x", ledger_path)
        assert "\n" not in str(info.value)
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


def test_dp_delta_must_be_below_one_over_n(tmp_path, ledger_path):
    with pytest.raises(UserError, match=r"^synth\.delta=0\.1 must lie in"):
        _run("synthetic", ["dataset=wine", *DP, "synth.delta=0.1"], tmp_path / "x", ledger_path)


# --- lineage: training on synthetic rows is post-processing ------------------------------------


def test_training_on_dp_synthetic_rows_charges_nothing_to_the_parent(tmp_path, ledger_path):
    synth = _run(
        "synthetic",
        ["dataset=wine", *DP, "synth.epsilon=2", "synth.num_rows=400", *FAST],
        tmp_path / "synth",
        ledger_path,
    )
    led = ledger.open(ledger_path)
    parent = synth.dataset["fingerprint"]
    before = led.spent(parent)
    output = synth.dataset["output"]
    lineage = led.lineage(output["fingerprint"])
    assert lineage.parent == "wine" and lineage.epsilon == pytest.approx(synth.guarantee.epsilon)
    trained = _run(
        "dp_sgd", ["dataset=synthetic", f"dataset.path={output['path']}", *TINY], tmp_path / "dp", ledger_path
    )
    assert ledger.open(ledger_path).spent(parent) == pytest.approx(before)
    assert trained.guarantees[0].accountant == "lineage"
    assert trained.guarantees[0].epsilon == pytest.approx(synth.guarantee.epsilon)
    card = (tmp_path / "dp" / "model_card.md").read_text()
    assert "Inherited through lineage" in card
    assert f"**({card_text.eps(synth.guarantee.epsilon)}, " in card and "differential privacy per example" in card


def test_training_on_non_dp_synthetic_rows_carries_infinite_epsilon(tmp_path, ledger_path):
    synth = _run("synthetic", ["dataset=wine", "synth.num_rows=400", *FAST], tmp_path / "synth", ledger_path)
    output = synth.dataset["output"]
    assert ledger.open(ledger_path).lineage(output["fingerprint"]).epsilon == math.inf
    trained = _run(
        "dp_sgd", ["dataset=synthetic", f"dataset.path={output['path']}", *TINY], tmp_path / "dp", ledger_path
    )
    assert trained.guarantees[0].epsilon == math.inf
    card = (tmp_path / "dp" / "model_card.md").read_text()
    assert "No differential privacy guarantee (epsilon = infinity)" in card
    assert "inf (non-DP synthesizer)" in card
