"""The PII gate: every recipe refuses direct identifiers in a file dataset before any charge, with one line
per finding, unless they are dropped (``dataset.drop``) or declared (``dataset.pii.allow``); a clean table
passes. Identifiers are generated (Faker, seeded) under neutral column names, so content detection is tested,
and checksums are tested against strings that fail them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import privtrain
from privtrain import ledger
from privtrain.data import pii
from privtrain.data.pii_gate import IdentifiersFound
from privtrain.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from pii_quality import identifier_makers  # noqa: E402  (the benchmark's generators)

N = 120
FL_FAST = ["fl.rounds=1", "fl.local_epochs=1", "recipe.progress=false"]
TINY = ["recipe.epochs=1", "recipe.progress=false", "recipe.batch_size=32", "recipe.max_physical_batch_size=32"]


def _identifiers(kind: str, n: int = N, seed: int = 0) -> list[str]:
    """``n`` generated values of one kind of identifier (the benchmark's generators, Faker, seeded)."""
    make = identifier_makers(seed)[kind]
    return [make() for _ in range(n)]


def _table(extra: dict | None = None, n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.random(n),
            "x2": rng.normal(size=n).round(3),
            "code": rng.choice(["A1", "B2", "C3"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    for name, values in (extra or {}).items():
        frame[name] = values
    return frame


def _csv(frame: pd.DataFrame, path) -> list[str]:
    frame.to_csv(path, index=False)
    return ["dataset=csv", f"dataset.path={path}", "dataset.target=y", "dataset.infer_schema=true"]


def _entries(ledger_path) -> int:
    return len(ledger.open(ledger_path).entries())


# --- the detectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "email",
        "phone",
        "person_name",
        "ssn",
        "ni_number",
        "iban",
        "credit_card",
        "ipv4",
        "ipv6",
        "street_address",
        "date_of_birth",
        "free_text",
    ],
)
def test_each_kind_is_found_by_content_under_a_neutral_name(kind):
    finding = pii.check_column("col_7", pd.Series(_identifiers(kind, 300)))
    assert finding is not None and finding.kind == kind, finding


def test_column_names_alone_flag_identifiers_even_when_numeric():
    assert pii.check_column("dob", pd.Series([1, 2, 3])).kind == "date_of_birth"
    assert pii.check_column("PhoneNumber", pd.Series([5551234567] * 3)).kind == "phone"
    assert pii.check_column("birth_date", pd.Series(["x"] * 3)).kind == "date_of_birth"
    assert pii.check_column("customer_email", pd.Series(["a"] * 3)).kind == "email"
    assert pii.check_column("birth_weight", pd.Series([3.1, 2.9, 3.5])) is None  # 'birth' alone is not a date


def test_checksums_are_verified_not_just_shapes():
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.is_card("4111 1111 1111 1111") and not pii.is_card("4111 1111 1111 1112")
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32") and not pii.iban_ok("GB83 WEST 1234 5698 7654 32")
    assert pii.is_ssn("123-45-6789") and not pii.is_ssn("666-45-6789") and not pii.is_ssn("123-00-6789")
    assert pii.is_ni_number("AB 12 34 56 C") and not pii.is_ni_number("ZZ 12 34 56 C")
    assert pii.is_ipv4("10.0.0.1") and not pii.is_ipv4("300.1.2.3")
    rng = np.random.default_rng(1)
    randoms = [str(v) for v in rng.integers(10**15, 10**16, 2000)]
    failing = [v for v in randoms if not pii.luhn_ok(v)]
    assert 0.85 < len(failing) / len(randoms) < 0.95  # about 1 in 10 random strings pass by chance
    assert not any(pii.is_card(v) for v in failing)


def test_decoys_are_not_flagged():
    rng = np.random.default_rng(2)
    n = 500
    decoys = pd.DataFrame(
        {
            "col_1": [str(v) for v in rng.integers(10**15, 10**16, n)],  # random 16-digit strings: ~10% pass Luhn
            "col_2": rng.integers(10**15, 10**16, n),  # the same, read as numbers
            "col_3": [f"GB{v:02d}WEST{w:014d}" for v, w in zip(rng.integers(0, 100, n), rng.integers(0, 10**14, n))],
            "col_4": rng.choice(["A1", "B2", "C3", "X-9"], n),
            "col_5": rng.normal(100, 15, n),
            "col_6": [str(v) for v in rng.integers(0, 10**9, n)],
            "city": rng.choice(["New York", "San Diego"], n),
            "col_8": [
                str(pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(d))).split()[0] for d in rng.integers(0, 900, n)
            ],
        }
    )
    assert pii.detect(decoys) == []


# --- the gate, every recipe ---------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["dp_sgd", "federated"])
@pytest.mark.parametrize(
    "kind",
    [
        "email",
        "phone",
        "person_name",
        "ssn",
        "ni_number",
        "iban",
        "credit_card",
        "ipv4",
        "ipv6",
        "street_address",
        "date_of_birth",
        "free_text",
    ],
)
def test_each_identifier_is_refused_before_any_charge(recipe, kind, tmp_path, ledger_path):
    before = _entries(ledger_path)
    args = _csv(_table({"info": _identifiers(kind)}), tmp_path / "people.csv")
    with pytest.raises(IdentifiersFound) as info:
        privtrain.run(recipe, [*args, *(TINY if recipe == "dp_sgd" else FL_FAST)], output_dir=tmp_path / "refused")
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"  info: {kind.replace('_', ' ')}"), lines
    assert "dataset.drop=[info]" in lines[0] and "dataset.pii.allow=[info]" in lines[0]
    assert _entries(ledger_path) == before and not (tmp_path / "refused").exists()


def test_one_line_per_finding_on_the_command_line(tmp_path, cli):
    frame = _table({"contact": _identifiers("email"), "col_9": _identifiers("ssn"), "who": _identifiers("person_name")})
    args = _csv(frame, tmp_path / "people.csv")
    out = cli("run", "dp_sgd", *args, *TINY)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("privtrain: error: ") and "3 column(s)" in lines[0]
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == ["col_9", "contact", "who"]
    assert "@" not in out.stderr  # the message names columns and kinds, never a value


def test_a_clean_table_passes_and_records_the_scan(tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", [*_csv(_table(), tmp_path / "clean.csv"), *TINY], output_dir=tmp_path / "run")
    assert result.dataset["pii"] == {"scanned": True, "findings": [], "allowed": [], "dropped": []}
    assert _entries(ledger_path) > 0


def test_builtin_datasets_pass():
    from privtrain import data

    for name in ("digits", "breast_cancer", "wine"):
        record = data.load(data.DatasetSpec(loader=name)).pii
        assert record["scanned"] and record["findings"] == [], (name, record)


def test_drop_removes_identifiers_from_training_but_not_from_the_source(tmp_path, ledger_path):
    frame = _table({"email": _identifiers("email"), "dob": _identifiers("date_of_birth")})
    args = _csv(frame, tmp_path / "people.csv")
    plain = privtrain.run(
        "dp_sgd",
        [*args, "dataset.pii.allow=[email,dob]", "ledger.plan_only=true", *TINY],
        output_dir=tmp_path / "allowed",
    )
    result = privtrain.run("dp_sgd", [*args, "dataset.drop=[email,dob]", *TINY], output_dir=tmp_path / "dropped")
    record = result.dataset["pii"]
    assert record["dropped"] == ["email", "dob"] and record["allowed"] == []
    assert {(f["column"], f["kind"], f["status"]) for f in record["findings"]} == {
        ("email", "email", "dropped"),
        ("dob", "date_of_birth", "dropped"),
    }
    # Dropping changes the features, not the people: same fingerprint and source as the whole file.
    assert result.dataset["fingerprint"] == plain.dataset["fingerprint"]
    assert result.ledger["charges"][0]["source"] == plain.dataset["source"]
    features = json.loads((tmp_path / "dropped" / "run.json").read_text())["schema"]["features"]
    assert {c["name"] for c in features} == {"x1", "x2", "code"}


def test_allow_declares_identifiers_and_records_them(tmp_path, ledger_path):
    args = _csv(_table({"birth_date": _identifiers("date_of_birth")}), tmp_path / "people.csv")
    result = privtrain.run("dp_sgd", [*args, "dataset.pii.allow=[birth_date]", *TINY], output_dir=tmp_path / "run")
    record = result.dataset["pii"]
    assert record["allowed"] == ["birth_date"]
    assert record["findings"] == [
        {
            "column": "birth_date",
            "kind": "date_of_birth",
            "status": "allowed",
            "reason": record["findings"][0]["reason"],
        }
    ]


def test_drop_and_allow_name_real_columns(tmp_path, ledger_path):
    args = _csv(_table(), tmp_path / "clean.csv")
    for override, message in (
        ("dataset.drop=[nope]", "dataset.drop: column(s) ['nope'] are not in"),
        ("dataset.pii.allow=[nope]", "dataset.pii.allow: column(s) ['nope'] are not in"),
        ("dataset.drop=[y]", "dataset.drop: column(s) ['y'] are also the target"),
    ):
        with pytest.raises(UserError) as info:
            privtrain.run("dp_sgd", [*args, override, *TINY], output_dir=tmp_path / "refused")
        assert message in str(info.value)
    assert _entries(ledger_path) == 0


def test_a_federated_client_column_is_not_a_feature_so_it_is_not_refused(tmp_path, ledger_path):
    doctors = _identifiers("person_name", 25)
    frame = _table({"doctor": [doctors[i % 25] for i in range(N)]})
    assert pii.check_column("doctor", frame["doctor"]).kind == "person_name"  # it would be refused as a feature
    args = [*_csv(frame, tmp_path / "sites.csv"), "fl.partition=column", "fl.client_column=doctor", "privacy=dp"]
    result = privtrain.run("federated", [*args, "ledger.plan_only=true"], output_dir=tmp_path / "plan")
    assert result.dataset["pii"]["findings"] == []
    with pytest.raises(IdentifiersFound):  # the same column as a feature is refused
        privtrain.run(
            "federated",
            [*_csv(frame, tmp_path / "sites.csv"), "privacy=dp", "ledger.plan_only=true"],
            output_dir=tmp_path / "plan2",
        )


def test_the_synthetic_recipe_records_its_own_handling_instead_of_refusing(tmp_path, ledger_path):
    frame = _table({"contact": _identifiers("email")})
    frame.to_csv(tmp_path / "people.csv", index=False)
    result = privtrain.run(
        "synthetic",
        ["dataset=csv", f"dataset.path={tmp_path / 'people.csv'}", "dataset.target=y", "ledger.plan_only=true"],
        output_dir=tmp_path / "plan",
    )
    (finding,) = result.dataset["pii"]["findings"]
    assert finding["column"] == "contact" and finding["status"].startswith("anonymized")


def test_parquet_tables_pass_the_same_gate(tmp_path, ledger_path):
    path = tmp_path / "people.parquet"
    _table({"col_3": _identifiers("iban")}).to_parquet(path, index=False)
    args = ["dataset=parquet", f"dataset.path={path}", "dataset.target=y", "dataset.infer_schema=true", *TINY]
    with pytest.raises(IdentifiersFound, match="col_3: iban"):
        privtrain.run("dp_sgd", args, output_dir=tmp_path / "refused")
    result = privtrain.run("dp_sgd", [*args, "dataset.drop=[col_3]"], output_dir=tmp_path / "run")
    assert result.dataset["pii"]["dropped"] == ["col_3"]


@pytest.mark.parametrize("partition", [[], ["fl.partition=column", "fl.client_column=site"]])
def test_federated_honours_drop(partition, tmp_path, ledger_path):
    frame = _table({"email": _identifiers("email"), "site": [f"s{i % 4}" for i in range(N)]})
    args = [*_csv(frame, tmp_path / "people.csv"), *partition, "privacy=dp", "ledger.plan_only=true"]
    with pytest.raises(IdentifiersFound, match="  email: email"):
        privtrain.run("federated", args, output_dir=tmp_path / "refused")
    result = privtrain.run("federated", [*args, "dataset.drop=[email]"], output_dir=tmp_path / "plan")
    assert result.dataset["pii"]["dropped"] == ["email"] and result.dataset["pii"]["findings"][0]["status"] == "dropped"
