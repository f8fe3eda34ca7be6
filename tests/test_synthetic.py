"""The synthetic recipe: SDV synthesizers, PII, reports, errors. DP and lineage: test_synthetic_dp.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import privtrain
from privtrain import ledger
from privtrain.errors import UserError

FAST = ["synth.report=false", "synth.utility.enabled=false"]


def make_customers(path, n: int = 80, seed: int = 0):
    """A CSV with PII SDV catches (email, phone_number) and PII it misses (customer names, contact e-mails)."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    people = [fake.name() for _ in range(n // 4)]  # repeat customers: SDV sees a categorical, not a key
    contacts = [fake.email() for _ in range(n // 4)]
    frame = pd.DataFrame(
        {
            "customer": rng.choice(people, n),
            "contact": rng.choice(contacts, n),
            "email": [fake.email() for _ in range(n)],
            "phone_number": [fake.phone_number() for _ in range(n)],
            "age": rng.integers(18, 90, n),
            "income": np.round(rng.gamma(2.0, 20000.0, n), 2),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "churn": rng.integers(0, 2, n),
        }
    )
    frame.to_csv(path, index=False)
    return frame


CUSTOMER_SCHEMA = [
    "+dataset.schema.age={min: 18, max: 90}",
    "+dataset.schema.income={min: 0, max: 300000}",
    "+dataset.schema.plan={categories: [basic, plus, pro]}",
    "+dataset.schema.churn={categories: [0, 1]}",
]


@pytest.fixture
def customers(tmp_path):
    path = tmp_path / "customers.csv"
    return path, make_customers(path)


def csv_args(path, *extra):
    return ["dataset=csv", f"dataset.path={path}", "dataset.target=churn", "dataset.features=[age,income,plan]", *extra]


def _run(overrides, out, ledger_path):
    return privtrain.run("synthetic", [*overrides, f"ledger.path={ledger_path}"], output_dir=out)


# --- PII -----------------------------------------------------------------------------------


def test_sdv_misses_person_names_and_privtrain_catches_them(customers):
    from privtrain.synthetic import metadata

    _, frame = customers
    detected = metadata.sdtypes(metadata.detect(frame, "customers"), "customers")
    # The miss this check exists for: SDV types a column of person names as an ordinary category.
    assert detected["customer"] == "categorical" and detected["contact"] == "categorical"
    assert detected["email"] == "email"
    marked, findings = metadata.mark_pii(
        metadata.detect(frame, "customers"), frame, "customers", check=True, skip={"churn"}
    )
    by_column = {f.column: f for f in findings}
    assert by_column["customer"].sdtype == "name" and by_column["customer"].source == "privtrain"
    assert by_column["contact"].sdtype == "email" and by_column["contact"].source == "privtrain"
    assert by_column["email"].source == "sdv" and by_column["phone_number"].source == "sdv"
    assert {"age", "income", "plan", "churn"}.isdisjoint(by_column)
    types = metadata.sdtypes(marked, "customers")
    assert types["customer"] == "name" and types["contact"] == "email"


def test_pii_never_appears_verbatim_in_any_output(customers, tmp_path, ledger_path):
    path, frame = customers
    out = tmp_path / "run"
    result = _run(csv_args(path, "dataset.features=null", *FAST), out, ledger_path)
    rows = pd.read_csv(out / "synthetic.csv")
    everything = (
        (out / "synthetic.csv").read_text()
        + (out / "metadata.json").read_text()
        + (out / "synthetic.schema.json").read_text()
        + (out / "metrics.json").read_text()
    )
    for column in ("customer", "contact", "email", "phone_number"):
        assert column in rows.columns
        real = set(frame[column].astype(str))
        assert not real & set(rows[column].astype(str)), column
        assert not any(value in everything for value in real), column
    assert result.metrics["pii_verbatim_values"] == 0
    listed = {f["column"] for f in json.loads((out / "metrics.json").read_text())["pii"]}
    assert {"customer", "contact", "email", "phone_number"} <= listed
    assert any("customer (name, privtrain)" in n for n in result.guarantee.notes)  # in the run summary


def test_without_privtrains_check_sdv_copies_names(customers, tmp_path, ledger_path):
    """The regression the PII check prevents: with it off, SDV copies real customer names."""
    path, frame = customers
    out = tmp_path / "run"
    _run(csv_args(path, "dataset.features=null", "synth.pii_check=false", *FAST), out, ledger_path)
    rows = pd.read_csv(out / "synthetic.csv")
    assert set(rows["customer"]) & set(frame["customer"])


# --- synthesizers ----------------------------------------------------------------------------


def test_gaussian_copula_fits_and_samples(customers, tmp_path, ledger_path):
    path, frame = customers
    out = tmp_path / "run"
    result = _run(csv_args(path, "synth.num_rows=33", "synth.format=parquet", *FAST), out, ledger_path)
    rows = pd.read_parquet(out / "synthetic.parquet")
    assert len(rows) == 33 and set(rows.columns) == set(frame.columns)
    assert (out / "metadata.json").is_file() and (out / "synthetic.schema.json").is_file()
    assert result.guarantee.epsilon == math.inf
    led = ledger.open(ledger_path)
    assert led.spent(result.dataset["fingerprint"]) == math.inf  # a NonPrivateDpEvent was charged


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,params",
    [
        ("ctgan", ["synth.epochs=2", "synth.batch_size=20"]),
        ("tvae", ["synth.epochs=2", "synth.batch_size=20"]),
        ("copulagan", ["synth.epochs=2", "synth.batch_size=20"]),
    ],
)
def test_neural_synthesizers_fit_and_sample(customers, tmp_path, ledger_path, model, params):
    path, frame = customers
    out = tmp_path / model
    result = _run(csv_args(path, f"synth={model}", "synth.num_rows=25", *params, *FAST), out, ledger_path)
    rows = pd.read_csv(out / "synthetic.csv")
    assert len(rows) == 25 and set(rows.columns) == set(frame.columns)
    assert result.guarantee.epsilon == math.inf


def test_reviewed_metadata_file_is_used(customers, tmp_path, ledger_path):
    path, _ = customers
    first = tmp_path / "first"
    _run(csv_args(path, *FAST), first, ledger_path)
    saved = json.loads((first / "metadata.json").read_text())
    saved["tables"]["customers"]["columns"]["plan"] = {"sdtype": "categorical"}  # the table is named after the file
    reviewed = tmp_path / "reviewed.json"
    reviewed.write_text(json.dumps(saved))
    out = tmp_path / "second"
    _run(csv_args(path, f"synth.metadata={reviewed}", *FAST), out, ledger_path)
    assert (
        json.loads((out / "metadata.json").read_text())["tables"]["customers"]["columns"]["customer"]["sdtype"]
        == "name"
    )


# --- reports -----------------------------------------------------------------------------------


def test_report_files_and_numbers_in_range(tmp_path, ledger_path):
    out = tmp_path / "run"
    result = _run(["dataset=wine"], out, ledger_path)
    for name in (
        "report.md",
        "quality_column_shapes.png",
        "quality_pair_trends.png",
        "metrics.json",
        "synthetic.csv",
        "metadata.json",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    q = m["quality"]
    for key in ("quality_score", "column_shapes", "column_pair_trends", "diagnostic_score"):
        assert 0.0 <= q[key] <= 1.0, key
    for key in ("dcr_baseline_protection", "dcr_overfitting_protection", "closer_to_training"):
        assert 0.0 <= m["privacy"][key] <= 1.0, key
    assert m["privacy"]["median_dcr_synthetic"] >= 0.0
    u = m["utility"]
    assert 0.0 <= u["tstr_accuracy"] <= 1.0 and 0.0 <= u["trtr_accuracy"] <= 1.0
    assert u["trtr_accuracy"] > 0.8  # wine is easy for logistic regression on real rows
    report = (out / "report.md").read_text()
    for text in (
        "Column Shapes",
        "Column Pair Trends",
        "DCRBaselineProtection",
        "TSTR",
        "TRTR",
        "not covered by the guarantee",
    ):
        assert text in report
    assert result.metrics["quality_score"] == q["quality_score"]


# --- errors: one line, nothing charged -----------------------------------------------------------


def _refused(overrides, tmp_path, ledger_path, match):
    with pytest.raises(UserError, match=match) as info:
        _run(overrides, tmp_path / "refused", ledger_path)
    assert "\n" not in str(info.value)
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


def test_num_rows_must_be_positive(tmp_path, ledger_path):
    _refused(["synth.num_rows=0"], tmp_path, ledger_path, r"^synth\.num_rows=0 must be a positive")
    _refused(["synth.num_rows=-5"], tmp_path, ledger_path, r"^synth\.num_rows=-5")


def test_metadata_that_does_not_match_the_data(customers, tmp_path, ledger_path):
    path, _ = customers
    bad = tmp_path / "meta.json"
    bad.write_text(
        json.dumps(
            {
                "tables": {"t": {"columns": {"age": {"sdtype": "numerical"}, "zip": {"sdtype": "categorical"}}}},
                "relationships": [],
                "METADATA_SPEC_VERSION": "V2",
            }
        )
    )
    _refused(csv_args(path, f"synth.metadata={bad}"), tmp_path, ledger_path, r"^synth\.metadata: .* does not match")
    wrong_type = tmp_path / "wrong.json"
    from privtrain.synthetic import metadata

    frame = pd.read_csv(path)
    d = metadata.detect(frame, "csv").to_dict()
    d["tables"]["csv"]["columns"]["plan"] = {"sdtype": "numerical"}  # metadata of another table name
    wrong_type.write_text(json.dumps(d))
    _refused(
        csv_args(path, f"synth.metadata={wrong_type}"), tmp_path, ledger_path, r"^synth\.metadata: .* does not match"
    )


def test_empty_table(tmp_path, ledger_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("age,churn\n")
    _refused(["dataset=csv", f"dataset.path={empty}", "dataset.target=churn"], tmp_path, ledger_path, "has no rows")


def test_target_missing_for_utility(customers, tmp_path, ledger_path):
    path, _ = customers
    _refused(
        ["dataset=csv", f"dataset.path={path}", "dataset.target=label"],
        tmp_path,
        ledger_path,
        r"^dataset\.target='label' is not a column .* utility \(TSTR\)",
    )


def test_groups_of_other_recipes_are_refused(tmp_path, ledger_path):
    _refused(["privacy=dp"], tmp_path, ledger_path, r"^privacy=\.\.\. does not apply to the synthetic recipe")


def test_unknown_hyperparameter(tmp_path, ledger_path):
    _refused(
        ["+synth.epochs=3"],
        tmp_path,
        ledger_path,
        r"^synth\.epochs is not a GaussianCopulaSynthesizer hyperparameter \(synth=gaussian_copula\)",
    )


def test_non_dp_synthesizer_refused_on_a_budgeted_dataset(customers, tmp_path, ledger_path):
    path, _ = customers
    budget = ["ledger.default_budget.epsilon=5", "ledger.default_budget.delta=1e-5"]
    _refused(csv_args(path, *budget, *FAST), tmp_path, ledger_path, "non-private run .*ledger.allow_non_private=true")
    result = _run(csv_args(path, *budget, "ledger.allow_non_private=true", *FAST), tmp_path / "ok", ledger_path)
    assert result.guarantee.epsilon == math.inf


def test_dry_run_charges_nothing(tmp_path, ledger_path):
    result = _run(["ledger.plan_only=true"], tmp_path / "dry", ledger_path)
    assert result.dry_run and not (tmp_path / "dry" / "synthetic.csv").exists()
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


def _real_held_out_rows(frame: pd.DataFrame, *, seed: int = 0, test_size: float = 0.2) -> pd.DataFrame:
    from privtrain.data.assign import held_out
    from privtrain.data.fingerprint import canonicalize

    frame = canonicalize(frame)[0]
    return frame[held_out(frame, seed=seed, test_size=test_size)]


def test_a_model_trained_on_synthetic_rows_is_scored_on_the_parents_real_held_out_rows(tmp_path, ledger_path):
    from conftest import TINY

    rng = np.random.default_rng(3)
    x = rng.random((600, 2))
    real = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": np.where(x[:, 0] + x[:, 1] > 1, "hi", "lo")})
    real.to_csv(tmp_path / "real.csv", index=False)
    synth = privtrain.run(
        "synthetic",
        [
            *FAST,
            "dataset=csv",
            f"dataset.path={tmp_path / 'real.csv'}",
            "dataset.target=label",
            "ledger.allow_non_private=true",
        ],
        output_dir=tmp_path / "syn",
    )
    rows = synth.output_dir / "synthetic.csv"
    trained = privtrain.run(
        "dp_sgd",
        [*TINY, "dataset=synthetic", f"dataset.path={rows}", "ledger.allow_non_private=true"],
        output_dir=tmp_path / "m",
    )
    expected = _real_held_out_rows(pd.read_csv(tmp_path / "real.csv"))
    assert trained.dataset["evaluated_on"].startswith("the real held-out rows of real")
    assert trained.dataset["n_test"] == len(expected)  # exactly the rows the synthesizer never saw
    assert trained.dataset["n_train"] == len(pd.read_csv(rows))  # every synthetic row trains
    # The score is on those real rows: predicting them with the saved model gives the same accuracy.
    predicted = privtrain.load(trained.output_dir).predict(expected.drop(columns=["label"]))
    assert np.mean(predicted == expected["label"].to_numpy()) == pytest.approx(trained.metrics["accuracy"], abs=1e-6)

    (tmp_path / "real.csv").write_text("a,b,label\n0.1,0.2,lo\n")  # the parent changed: say so, score on synthetic
    again = privtrain.run(
        "dp_sgd",
        [*TINY, "dataset=synthetic", f"dataset.path={rows}", "ledger.allow_non_private=true"],
        output_dir=tmp_path / "m2",
    )
    assert again.dataset["evaluated_on"].startswith("held-out synthetic rows, not real ones: the parent's rows")
    assert "changed since the synthetic run" in again.dataset["evaluated_on"]
    assert "held-out synthetic rows, not real ones" in (again.output_dir / "model_card.md").read_text()
