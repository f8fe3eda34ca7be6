"""One budget per person: every recipe, and every table holding the same people, charges one source.

Each bypass of the first release gets a scenario here: it must now be refused, or charged to the
budget of the source whose people it touches.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

import privtrain
from privtrain import ledger
from privtrain.errors import BudgetExceeded, UserError

FL_FAST = ["fl.rounds=1", "fl.local_epochs=1", "recipe.progress=false"]


def _digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


def _schema(frame: pd.DataFrame) -> str:
    """digits' public schema (pixels in [0, 16], ten classes) for the columns of ``frame``."""
    cols = ", ".join(f"{c}: {{min: 0, max: 16}}" for c in frame.columns if c != "target")
    return f"+dataset.schema={{{cols}, target: {{categories: [0,1,2,3,4,5,6,7,8,9]}}}}"


def _csv(frame: pd.DataFrame, path) -> list[str]:
    frame.to_csv(path, index=False)
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=target",
        _schema(frame),
        f"dataset.public_n={len(frame)}",
    ]


def _refused(recipe: str, overrides: list[str], tmp_path, error=UserError) -> str:
    with pytest.raises(error) as info:
        privtrain.run(recipe, overrides, output_dir=tmp_path / "refused")
    assert "\n" not in str(info.value) and not (tmp_path / "refused").exists()
    return str(info.value)


def test_every_bypass_of_a_budget_is_refused(tmp_path, ledger_path):
    book = ledger.open(ledger_path)
    book.set_budget("digits", "example", 6.0, 1e-5)  # before first use, by the built-in's name
    first = privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=3"], output_dir=tmp_path / "first")
    assert first.ledger["charges"][0]["source"] == "digits"
    n_entries = len(book.entries())
    for seed in (0, 1):  # another partitioning is the same people
        msg = _refused("federated", ["privacy=dp", f"fl.partition_seed={seed}", *FL_FAST], tmp_path, BudgetExceeded)
        assert msg.startswith("over budget: source 'digits' (example level)")
    msg = _refused("federated", ["privacy=central", *FL_FAST], tmp_path, BudgetExceeded)  # client-level DP too
    assert "source 'digits' (example level)" in msg
    msg = _refused("federated", ["privacy=none", *FL_FAST], tmp_path)
    assert "non-private run on source 'digits'" in msg and "allow_non_private" in msg
    minus_row = _digits().iloc[1:]
    msg = _refused("dp_sgd", [*TINY, *_csv(minus_row, tmp_path / "minus_row.csv")], tmp_path, BudgetExceeded)
    assert "source 'digits'" in msg and "100% of these rows belong to source `digits`" in msg
    constant = [c for c in _digits().columns if _digits()[c].nunique() == 1][0]
    minus_col = _digits().drop(columns=[constant])
    msg = _refused("dp_sgd", [*TINY, *_csv(minus_col, tmp_path / "minus_col.csv")], tmp_path, BudgetExceeded)
    assert "source 'digits'" in msg and "shared columns" in msg
    msg = _refused("dp_sgd", [*TINY, "privacy.unit=client"], tmp_path)  # the unit is not a knob
    assert msg.startswith("privacy.unit is not a setting")
    assert len(book.entries()) == n_entries  # nothing was charged, no row registered
    (digits,) = [s for s in book.sources() if s.unit == "example"]
    assert digits.source == "digits" and digits.n_runs == 1 and digits.filter_epsilon <= 6.0
    assert book.verify().ok


def test_tables_holding_a_sources_rows_are_charged_to_it(tmp_path, ledger_path):
    frame = _digits()
    shuffled = frame.sample(frac=1.0, random_state=1)
    shuffled.to_parquet(tmp_path / "digits.parquet", index=False)
    cases = {
        "subset": _csv(frame.sample(frac=0.3, random_state=0), tmp_path / "subset.csv"),
        "parquet, reordered": [
            "dataset=parquet",
            f"dataset.path={tmp_path / 'digits.parquet'}",
            "dataset.target=target",
            _schema(frame),
            f"dataset.public_n={len(frame)}",
        ],
        "appended rows": _csv(
            pd.concat([frame, frame.sample(300, random_state=2).assign(pixel_3_3=16.0)]), tmp_path / "appended.csv"
        ),
    }
    for what, overrides in cases.items():
        result = privtrain.run("dp_sgd", [*TINY, "recipe.batch_size=64", *overrides], output_dir=tmp_path / what)
        (charge,) = result.ledger["charges"]
        assert charge["source"] == "digits" and "belong to source `digits`" in charge["link"], what
        assert result.dataset["name"] == "digits"
    book = ledger.open(ledger_path)
    assert [s.source for s in book.sources()] == ["digits"]  # one source, three runs
    assert book.sources()[0].n_runs == 3


def test_a_different_table_with_the_same_columns_is_not_linked(tmp_path, ledger_path):
    frame = _digits()
    rng = np.random.default_rng(0)
    other = frame.copy()
    pixels = [c for c in frame.columns if c != "target"]
    other[pixels] = rng.integers(0, 17, size=(len(frame), len(pixels)))  # other images, same columns
    result = privtrain.run("dp_sgd", [*TINY, *_csv(other, tmp_path / "scans.csv")], output_dir=tmp_path / "r")
    (charge,) = result.ledger["charges"]
    assert charge["name"] == "scans" and charge["link"] is None  # shown under its file's stem
    assert charge["source"] == result.dataset["fingerprint"]  # identified by its content
    declared = privtrain.run(
        "dp_sgd",
        [*TINY, *_csv(other, tmp_path / "scans.csv"), "dataset.source=clinic_scans"],
        output_dir=tmp_path / "d",
    )
    assert declared.ledger["charges"][0]["source"] == "clinic_scans"
    names = {s.name for s in ledger.open(ledger_path).sources()}
    assert names == {"scans", "clinic_scans"} and "csv" not in names


def test_a_declared_table_that_shares_rows_charges_both_sources(tmp_path, ledger_path):
    book = ledger.open(ledger_path)
    book.set_budget("digits", "example", 6.0, 1e-5)
    subset = _csv(_digits().sample(frac=0.5, random_state=0), tmp_path / "half.csv")
    result = privtrain.run("dp_sgd", [*TINY, *subset, "dataset.source=study_a"], output_dir=tmp_path / "r")
    sources = {c["source"]: c for c in result.ledger["charges"]}
    assert set(sources) == {"study_a", "digits"}
    assert sources["study_a"]["link"] is None and "belong to source `digits`" in sources["digits"]["link"]
    assert book.spent("study_a") == pytest.approx(book.spent("digits"))


def test_budgets_are_set_before_first_use_changed_and_removed_as_chained_entries(cli, tmp_path, ledger_path):
    path = tmp_path / "patients.csv"
    frame = _digits().sample(frac=0.5, random_state=3)
    frame.to_csv(path, index=False)
    out = cli("ledger", "budget", "set", str(path), "--epsilon", "6", "--delta", "1e-5")
    assert out.returncode == 2 and "holds the people of a known source" in out.stderr  # digits' rows
    out = cli("ledger", "budget", "set", str(path), "--source", "patients", "--epsilon", "6", "--delta", "1e-5")
    assert out.returncode == 0, out.stderr
    book = ledger.open(ledger_path)
    assert book.budget("patients").epsilon == 6.0
    run = privtrain.run("dp_sgd", [*TINY, *_csv(frame.iloc[:400], tmp_path / "some.csv")], output_dir=tmp_path / "r")
    assert {c["source"] for c in run.ledger["charges"]} == {"patients", "digits"}  # a subset of both
    lower = cli("ledger", "budget", "set", "patients", "--epsilon", "1", "--delta", "1e-5")
    assert lower.returncode == 2 and "Pass --force" in lower.stderr
    assert cli("ledger", "budget", "set", "patients", "--epsilon", "1", "--delta", "1e-5", "--force").returncode == 0
    with pytest.raises(BudgetExceeded, match="budget set patients --epsilon E"):  # the message says how to recover
        privtrain.run("dp_sgd", [*TINY, *_csv(frame.iloc[:400], tmp_path / "some.csv")], output_dir=tmp_path / "x")
    assert cli("ledger", "budget", "set", "patients", "--epsilon", "12", "--delta", "1e-5").returncode == 0
    assert cli("ledger", "budget", "remove", "patients").returncode == 0
    assert book.budget("patients") is None
    statuses = [e.status for e in book.entries("patients") if e.status in ("budget", "unbudget")]
    assert statuses == ["budget", "budget", "budget", "unbudget"] and book.verify().ok
    assert [e.detail.get("forced") for e in book.entries("patients") if e.status == "budget"] == [False, True, False]


@pytest.mark.slow
def test_runs_through_every_recipe_compose_at_the_example_level(tmp_path, ledger_path):
    """dp_sgd, federated central DP and the DP synthesizer on digits: one source, composed as dp-accounting does."""
    import dp_accounting

    runs = [
        privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2"], output_dir=tmp_path / "dp"),
        privtrain.run(
            "federated",
            ["privacy=central", "privacy.target_epsilon=4", "fl.num_clients=4", *FL_FAST],
            output_dir=tmp_path / "fl",
        ),
        privtrain.run(
            "synthetic",
            [
                "dataset=digits",
                "synth=dp_gaussian_copula",
                "synth.epsilon=2",
                "synth.report=false",
                "synth.utility.enabled=false",
            ],
            output_dir=tmp_path / "syn",
        ),
    ]
    events = []
    for result in runs:
        (example,) = [g for g in result.guarantees if g.unit == "example"]
        assert math.isfinite(example.epsilon) and example.delta == 1e-5
        events.extend(example.events)
    pld = dp_accounting.pld.PLDAccountant()
    pld.compose(dp_accounting.ComposedDpEvent(events))
    book = ledger.open(ledger_path)
    assert book.spent("digits") == pytest.approx(pld.get_epsilon(1e-5), rel=0.01)
    client = [s for s in book.sources() if s.unit == "client"]
    assert len(client) == 1 and client[0].source == "digits" and "4 clients" in client[0].scope_label
