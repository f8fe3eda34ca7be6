"""Governed projects and declared lineage: a table the ledger does not know is refused until declared, a
declared parent is charged, and every comparison with a registered table (a dry run's included) is recorded.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import TINY
from ledger_helpers.patients import patients
from test_sources import _csv, _digits

import privtrain
from privtrain import ledger
from privtrain.errors import UserError
from privtrain.policy import load

GOVERNED = """
version: 1
rules:
  - name: known-people-only
    require_registered_source: true
"""


def _policy(ledger_path, text: str = GOVERNED):
    path = ledger_path.parent / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _other_images() -> pd.DataFrame:
    frame = _digits()
    pixels = [c for c in frame.columns if c != "target"]
    return frame.assign(**dict(zip(pixels, np.random.default_rng(0).integers(0, 17, (len(pixels), len(frame))))))


BOUNDS = {
    "age": (0, 120),
    "height_cm": (100, 230),
    "weight_kg": (20, 250),
    "bmi": (10, 70),
    "systolic_bp": (60, 260),
    "diastolic_bp": (30, 160),
    "cholesterol": (50, 450),
    "glucose": (1, 40),
    "visits": (0, 30),
}
CATEGORIES = {
    "sex": ["F", "M"],
    "smoker": ["never", "former", "current"],
    "readmitted": [0, 1],
    "region": ["north", "south", "east", "west", "central"],
    "diagnosis": ["none", "hypertension", "diabetes", "asthma", "copd", "ckd"],
}


def _patients_csv(frame, path) -> list[str]:
    """A patients table as a CSV run with its public schema (declared bounds and categories)."""
    frame.to_csv(path, index=False)
    schema = [f"{c}: {{min: {lo}, max: {hi}}}" for c, (lo, hi) in BOUNDS.items()]
    schema += [f"{c}: {{categories: [{', '.join(map(str, v))}]}}" for c, v in CATEGORIES.items()]
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=readmitted",
        f"+dataset.schema={{{', '.join(schema)}}}",
        "recipe.epochs=1",
        "recipe.progress=false",
        "recipe.batch_size=256",
        "dataset.public_n=3000",
    ]  # the source's declared public size, whatever part of it a file holds


def test_the_rule_parses_and_only_takes_a_flag(tmp_path):
    assert load(_policy(tmp_path / "l.db")).rules[0].require_registered_source is True
    with pytest.raises(UserError, match="require_registered_source must be true or false"):
        load(_policy(tmp_path / "l.db", GOVERNED.replace("true", "sometimes")))


def test_a_governed_project_refuses_unknown_people_until_they_are_declared(tmp_path, ledger_path):
    _policy(ledger_path)
    before = len(ledger.open(ledger_path).entries())
    with pytest.raises(UserError) as info:
        privtrain.run("dp_sgd", [*TINY, *_csv(_other_images(), tmp_path / "scans.csv")], output_dir=tmp_path / "r")
    message = str(info.value)
    assert (
        "\n" not in message and "rule 'known-people-only'" in message and "a registered or declared source" in message
    )
    assert (
        "dataset.source=NAME" in message and "dataset.derived_from=NAME" in message and "Nothing was charged" in message
    )
    book = ledger.open(ledger_path)
    assert not [e for e in book.entries()[before:] if e.status in ("reserved", "committed")]
    declared = privtrain.run(
        "dp_sgd",
        [*TINY, *_csv(_other_images(), tmp_path / "scans.csv"), "dataset.source=scans"],
        output_dir=tmp_path / "declared",
    )
    assert declared.ledger["charges"][0]["source"] == "scans"
    again = privtrain.run("dp_sgd", [*TINY, *_csv(_other_images(), tmp_path / "copy.csv")], output_dir=tmp_path / "a")
    (charge,) = again.ledger["charges"]  # the same table, undeclared: now a registered source's people
    assert charge["source"] == "scans" and "belong to source `scans`" in charge["link"]
    linked = privtrain.run(
        "dp_sgd",
        [*TINY, *_csv(_digits().sample(frac=0.5, random_state=0), tmp_path / "half.csv")],
        output_dir=tmp_path / "l",
    )
    assert linked.ledger["charges"][0]["source"] == "digits"  # a built-in's people: known


def test_derived_from_charges_the_declared_parent(tmp_path, ledger_path):
    book = ledger.open(ledger_path)
    table = patients(1500, seed=3)
    table.to_csv(tmp_path / "patients.csv", index=False)
    from privtrain.data.fingerprint import canonicalize
    from privtrain.sources import Source

    frame, fingerprint = canonicalize(pd.read_csv(tmp_path / "patients.csv"))
    book.register_table(Source("patients", "patients", "declared"), fingerprint, frame)
    book.set_budget("patients", "example", 20.0, 1e-5)
    r = np.random.default_rng(4)
    evasive = table.assign(
        **{
            c: table[c] + r.normal(0, 0.05 * table[c].std(), len(table))
            for c in ["age", "height_cm", "weight_kg", "bmi", "systolic_bp", "cholesterol"]
        }
    )
    _policy(ledger_path)
    with pytest.raises(UserError, match="a registered or declared source"):  # noise on every cell evades matching
        privtrain.run("dp_sgd", _patients_csv(evasive, tmp_path / "evasive.csv"), output_dir=tmp_path / "r")
    result = privtrain.run(
        "dp_sgd",
        [*_patients_csv(evasive, tmp_path / "evasive.csv"), "dataset.derived_from=patients"],
        output_dir=tmp_path / "d",
    )
    (charge,) = result.ledger["charges"]
    assert charge["source"] == "patients" and "declared derived from source `patients`" in charge["link"]
    assert book.spent("patients") > 0
    n = len(book.entries())
    with pytest.raises(UserError, match=r"dataset.derived_from='nobody': the ledger .* knows no such source"):
        privtrain.run(
            "dp_sgd",
            [*_patients_csv(evasive, tmp_path / "e2.csv"), "dataset.derived_from=nobody"],
            output_dir=tmp_path / "n",
        )
    assert len(book.entries()) == n
    with pytest.raises(UserError, match="declare either dataset.source"):
        privtrain.run(
            "dp_sgd",
            [*_patients_csv(evasive, tmp_path / "e3.csv"), "dataset.derived_from=patients", "dataset.source=other"],
            output_dir=tmp_path / "b",
        )


def test_a_dry_run_that_compares_with_registered_tables_is_recorded(tmp_path, ledger_path):
    book = ledger.open(ledger_path)
    table = patients(1200, seed=5)
    from privtrain.data.fingerprint import fingerprint_frame
    from privtrain.sources import Source

    book.register_table(Source("clinic", "clinic", "declared"), fingerprint_frame(table), table)
    probes = lambda: [e for e in book.entries() if e.status == "rows" and "probe" in e.detail]  # noqa: E731
    assert probes() == []
    one_row = privtrain.run(
        "dp_sgd",
        [*_patients_csv(table.iloc[:1], tmp_path / "one.csv"), "ledger.plan_only=true", "recipe.batch_size=1"],
        output_dir=tmp_path / "one",
    )
    assert one_row.dry_run and "clinic" not in one_row.ledger["plan"]  # one row: the sketch says nothing
    subset = privtrain.run(
        "dp_sgd",
        [*_patients_csv(table.sample(frac=0.5, random_state=1), tmp_path / "half.csv"), "ledger.plan_only=true"],
        output_dir=tmp_path / "half",
    )
    assert "belong to source `clinic`" in subset.ledger["plan"]
    assert [p.detail["probe"] for p in probes()] == [
        {"compared": ["clinic"], "linked": []},
        {"compared": ["clinic"], "linked": ["clinic"]},
    ]
    assert all(p.user for p in probes()) and book.verify().ok
