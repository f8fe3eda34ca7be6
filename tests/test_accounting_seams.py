"""Accounting seams: a budget's δ obeys a run's rule (δ < 1/n), and the DP copula never takes bounds that came
from the rows as its public domain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import privtrain
from privtrain import ledger
from privtrain.cli import main
from privtrain.errors import UserError
from tests.conftest import TINY


def _one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


# --- a budget's δ is below 1/n ---------------------------------------------------------------------


@pytest.mark.parametrize("source, n, delta", [("digits", 1797, 0.5), ("wine", 178, 0.01), ("breast_cancer", 569, 2e-3)])
def test_a_budget_delta_at_or_above_one_over_n_is_refused(ledger_path, source, n, delta):
    book = ledger.open(ledger_path)
    with pytest.raises(
        UserError, match=rf"δ={delta:g} must lie below 1/n = {1 / n:.2e} for a source of {n} rows"
    ) as info:
        book.set_budget(source, "example", 6.0, delta)
    assert "use e.g. δ=" in _one_line(info)
    assert book.entries() == []
    book.set_budget(source, "example", 6.0, 1e-5)  # below 1/n: fine


def test_the_cli_refuses_a_large_delta_before_registering_a_file(tmp_path, ledger_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "patients.csv"
    pd.DataFrame({"age": rng.integers(18, 90, 3000), "bp": rng.normal(120, 15, 3000).round(1)}).to_csv(
        path, index=False
    )
    code = main(["ledger", "budget", "set", str(path), "--epsilon", "6", "--delta", "1e-3", "--path", str(ledger_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--delta for patients.csv: δ=0.001 must lie below 1/n" in err
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []  # no rows registered either
    assert (
        main(["ledger", "budget", "set", str(path), "--epsilon", "6", "--delta", "1e-5", "--path", str(ledger_path)])
        == 0
    )
    book = ledger.open(ledger_path)
    key = book.entries()[-1].source
    with pytest.raises(UserError, match=r"for a source of 3000 rows"):  # the registered table's size counts later
        book.set_budget(key, "example", 6.0, 1e-3)


def test_a_default_budget_with_a_large_delta_is_refused_before_any_charge(tmp_path, ledger_path):
    with pytest.raises(UserError, match=r"default budget .* of source 'wine': δ=0.01 must lie below 1/n") as info:
        privtrain.run(
            "dp_sgd",
            [
                *TINY,
                "dataset=wine",
                "recipe.batch_size=64",
                "ledger.default_budget.epsilon=6",
                "ledger.default_budget.delta=0.01",
            ],
            output_dir=tmp_path / "x",
        )
    _one_line(info)
    assert not (tmp_path / "x").exists()
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


def test_a_policy_total_at_a_large_delta_cannot_hold_more_runs(tmp_path, ledger_path):
    """The attacker's view of the issue: a total of ε = 6 at δ = 0.5 let 19 runs of ε = 2 fit."""
    (ledger_path.parent / "policy.yaml").write_text(
        "rules:\n  - name: cap\n    max_epsilon_total: 6\n    total_delta: 0.5\n"
    )
    with pytest.raises(UserError, match=r"δ=0.5 must lie below 1/n = 5.56e-04 for a source of 1797 rows") as info:
        privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2"], output_dir=tmp_path / "x")
    _one_line(info)
    assert [e.status for e in ledger.open(ledger_path).entries()] in ([], ["policy"])  # nothing charged


# --- the DP copula's domain never comes from the rows -------------------------------------------------


SYNTH_FAST = ["synth.report=false", "synth.utility.enabled=false"]


def test_privtrains_own_detected_metadata_is_refused_as_a_public_domain(tmp_path, ledger_path):
    from tests.test_synthetic import csv_args, make_customers

    path = tmp_path / "customers.csv"
    make_customers(path)
    plain = privtrain.run("synthetic", csv_args(path, *SYNTH_FAST), output_dir=tmp_path / "plain")  # SDV, not DP
    detected = plain.output_dir / "metadata.json"
    saved = json.loads(detected.read_text())
    assert saved["privtrain"]["bounds"] == "rows"
    columns = saved["tables"]["customers"]["columns"]
    assert columns["age"]["range_max"] == pd.read_csv(path)["age"].max()  # the private extreme, as the issue found
    entries = len(ledger.open(ledger_path).entries())
    with pytest.raises(UserError, match=r"^synth\.metadata: .* holds bounds SDV read off the private rows") as info:
        privtrain.run(
            "synthetic",
            csv_args(path, "synth=dp_gaussian_copula", f"synth.metadata={detected}", *SYNTH_FAST),
            output_dir=tmp_path / "dp",
        )
    _one_line(info)
    assert len(ledger.open(ledger_path).entries()) == entries and not (tmp_path / "dp").exists()

    # reviewing the detected file for another SDV run keeps the mark: its extremes did not become public
    again = privtrain.run(
        "synthetic", csv_args(path, f"synth.metadata={detected}", *SYNTH_FAST), output_dir=tmp_path / "again"
    )
    assert json.loads((again.output_dir / "metadata.json").read_text())["privtrain"]["bounds"] == "rows"


def test_a_declared_public_domain_still_works_and_its_saved_metadata_is_reusable(tmp_path, ledger_path):
    from tests.test_synthetic import csv_args, make_customers

    path = tmp_path / "customers.csv"
    make_customers(path)
    bounds = {"age": (0, 120), "income": (0, 500000)}  # public: a person's age, the product's income cap
    columns = {c: {"sdtype": "numerical", "range_min": lo, "range_max": hi} for c, (lo, hi) in bounds.items()}
    columns.update(
        plan={"sdtype": "categorical", "range_values": ["basic", "plus", "pro"]},
        churn={"sdtype": "categorical", "range_values": [0, 1]},
    )
    public = {"tables": {"t": {"columns": columns}}, "relationships": [], "METADATA_SPEC_VERSION": "V2"}
    file = tmp_path / "public.json"
    file.write_text(json.dumps(public))
    dp = ["synth=dp_gaussian_copula", "synth.epsilon=2"]
    first = privtrain.run(
        "synthetic", csv_args(path, *dp, f"synth.metadata={file}", *SYNTH_FAST), output_dir=tmp_path / "first"
    )
    assert np.isfinite(first.guarantee.epsilon)
    saved = first.output_dir / "metadata.json"
    assert json.loads(saved.read_text())["privtrain"]["bounds"] == "declared"
    plan = privtrain.run(
        "synthetic",
        csv_args(path, *dp, f"synth.metadata={saved}", *SYNTH_FAST, "ledger.plan_only=true"),
        output_dir=tmp_path / "second",
    )
    assert plan.dry_run  # the saved public domain is accepted again (a plan: nothing trained or charged)
