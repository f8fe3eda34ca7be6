"""A privtrain 0.1 ledger (budgets per file) is refused with a hint, and `ledger migrate` carries it over."""

from __future__ import annotations

import sqlite3

import pytest
from ledger_helpers import cli, fresh_pld, gaussian

from privtrain import data, ledger
from privtrain.errors import UserError
from privtrain.ledger import migrate, store
from privtrain.ledger.backends import sqlite as sqlite_backend
from privtrain.privacy import events as ev

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (id INTEGER PRIMARY KEY, ref INTEGER, status TEXT NOT NULL, run_id TEXT, time TEXT NOT NULL,
    user TEXT, version TEXT, git_commit TEXT, recipe TEXT, config_hash TEXT, dataset_fingerprint TEXT NOT NULL,
    dataset_name TEXT, unit TEXT NOT NULL, parent_fingerprint TEXT, events TEXT NOT NULL, epsilon REAL NOT NULL,
    delta REAL NOT NULL, artifacts TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE);
CREATE TABLE cache (key TEXT PRIMARY KEY, fingerprint TEXT, unit TEXT, delta REAL, accountant TEXT,
    value REAL NOT NULL, created TEXT NOT NULL);
"""


def _v1_ledger(path, rows: list[dict]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    prev = store.GENESIS
    for i, r in enumerate(rows, 1):
        row = {k: None for k in migrate.V1_COLUMNS}
        row.update(id=i, time=f"2026-01-0{i}T00:00:00+00:00", artifacts="{}", prev_hash=prev, **r)
        row["hash"] = migrate._v1_hash(row)
        conn.execute(
            f"INSERT INTO entries VALUES ({', '.join('?' * 20)})", [row[k] for k in (*migrate.V1_COLUMNS, "hash")]
        )
        prev = row["hash"]
    conn.execute(
        "INSERT INTO meta VALUES ('app', 'privtrain-ledger'), ('head_id', ?), ('head_hash', ?)", (str(len(rows)), prev)
    )
    conn.execute(f"PRAGMA application_id={sqlite_backend.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()


def _run_rows(fp: str, name: str, events) -> list[dict]:
    common = dict(
        run_id=f"run-{name}",
        recipe="dp_sgd",
        dataset_fingerprint=fp,
        dataset_name=name,
        unit="example",
        events=ev.dumps(list(events)),
        epsilon=fresh_pld(list(events), 1e-5),
        delta=1e-5,
    )
    return [dict(status="reserved", **common), dict(status="committed", **common)]


def test_a_v1_ledger_is_refused_then_migrated_to_per_source_budgets(tmp_path):
    digits = data.load(data.DatasetSpec(loader="digits")).fingerprint
    csv_fp = "c5" * 32
    path = tmp_path / "ledger.db"
    rows = [
        dict(
            status="budget",
            dataset_fingerprint=digits,
            dataset_name="digits",
            unit="example",
            events="[]",
            epsilon=9.0,
            delta=1e-5,
        )
    ]
    rows += _run_rows(digits, "digits", gaussian(3.0))
    rows += _run_rows(csv_fp, "csv", gaussian(5.0))
    rows[2]["ref"], rows[4]["ref"] = 2, 4  # each commit names its reservation
    _v1_ledger(path, rows)
    with pytest.raises(UserError, match=r"schema version 1 \(privtrain 0\.1\).*privtrain ledger migrate"):
        ledger.open(path)
    out = cli("migrate", path=path)
    assert out.returncode == 0, out.stderr
    assert "migrated 5 entries" in out.stdout and (tmp_path / "ledger.db.v1-backup").is_file()
    book = ledger.open(path)
    assert book.verify().ok
    first = book.entries()[0]
    assert first.status == "migrated" and first.detail["entries"] == 5
    assert book.budget("digits").epsilon == 9.0  # the built-in's content moved to its source
    assert book.spent("digits") == pytest.approx(fresh_pld(list(gaussian(3.0)), 1e-5), rel=1e-6)
    assert book.spent(csv_fp) == pytest.approx(fresh_pld(list(gaussian(5.0)), 1e-5), rel=1e-6)
    migrated = [e.detail["migrated"]["id"] for e in book.entries() if "migrated" in e.detail]
    assert migrated == [1, 2, 3, 4, 5]
    assert cli("migrate", path=path).stdout.startswith(f"{path} is already at schema version")


def test_a_tampered_v1_ledger_is_not_migrated(tmp_path):
    path = tmp_path / "ledger.db"
    _v1_ledger(path, _run_rows("d1" * 32, "csv", gaussian(3.0)))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE entries SET epsilon = 0.01 WHERE id = 2")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    out = cli("migrate", path=path)
    assert out.returncode == 2 and "fails verification at entry 2" in out.stderr
    assert path.read_bytes() == before and not (tmp_path / "ledger.db.v1-backup").exists()
