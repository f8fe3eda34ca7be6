"""The same semantics on both backends: keyed rows, incremental PLD totals, and the admission tail check."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
from ledger_helpers import FP, charge, charging, fresh_pld, gaussian, run, sgd
from ledger_helpers.db import is_pg, query, tamper

from privtrain import ledger
from privtrain.data.fingerprint import fingerprint_frame
from privtrain.errors import UserError
from privtrain.ledger import integrity, rows, totals
from privtrain.sources import Source


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(5e4, 1e4, n).round(2),
            "zip": rng.integers(10000, 99999, n),
            "target": rng.integers(0, 2, n),
        }
    )


def test_sketches_link_a_subset_and_verify_checks_them(ledger_at, monkeypatch):
    monkeypatch.delenv("PRIVTRAIN_ROW_KEY", raising=False)
    book = ledger.open(ledger_at)
    table = _table()
    fp = fingerprint_frame(table)
    book.register_table(Source("patients", "patients", "declared"), fp, table)
    key_file = rows.key_file(book.path)
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    if is_pg(ledger_at):  # in the user's data folder, named after the URL (no password in it)
        assert key_file.parent == integrity.anchor_file(book.path).parent.parent / "row-keys"
        assert key_file.name.startswith("postgresql-postgres@127.0.0.1-")
    else:
        assert key_file == ledger_at.with_suffix(".rowkey")
    (entry,) = [e for e in book.entries() if e.status == "rows"]
    assert entry.detail["rows"] == 400 and entry.detail["key_id"] == rows.key_id(rows.row_key(book.core))
    assert entry.detail["eps_s"] == 2.0 and entry.detail["groups"] >= 1
    subset = table.sample(frac=0.5, random_state=0).reset_index(drop=True)
    found = book.links(subset, fingerprint_frame(subset))
    assert [link.source for link in found] == ["patients"] and found[0].fraction_of_new >= 0.7
    other = _table(seed=1)
    assert book.links(other, fingerprint_frame(other)) == []
    probes = [e.detail["probe"] for e in book.entries() if e.status == "rows" and "probe" in e.detail]
    assert probes == [{"compared": ["patients"], "linked": ["patients"]}, {"compared": ["patients"], "linked": []}]
    assert book.verify().ok
    (stored,) = query(ledger_at, "SELECT layout, sketch FROM source_sketches")
    assert "age" in stored["layout"] and len(bytes(stored["sketch"])) >= 128  # names, noisy bits: no value
    tamper(ledger_at, "UPDATE source_sketches SET sketch = ?", params=(bytes(len(bytes(stored["sketch"]))),))
    report = ledger.open(ledger_at).verify()
    assert not report.ok and "stored sketches of source 'patients'" in report.problem
    tamper(ledger_at, "DELETE FROM source_sketches")
    report = ledger.open(ledger_at).verify()
    assert not report.ok and "stored sketches of source 'patients'" in report.problem


def test_a_swapped_row_key_is_refused(ledger_at, monkeypatch):
    book = ledger.open(ledger_at)
    table = _table()
    book.register_table(Source("patients", "patients", "declared"), fingerprint_frame(table), table)
    monkeypatch.setenv("PRIVTRAIN_ROW_KEY", "ab" * 32)
    with pytest.raises(UserError, match="is not the one the ledger"):
        rows.of_table(book.core, table, fingerprint_frame(table))


def test_totals_round_trip_without_pickle():
    import dp_accounting

    from privtrain.privacy.events import dp_sgd_event

    cases = [
        dp_accounting.GaussianDpEvent(2.0),  # symmetric, dense
        dp_sgd_event(sample_rate=0.05, noise_multiplier=1.5, steps=20),  # add and remove differ
        dp_accounting.LaplaceDpEvent(1.0),
    ]
    for event in cases:
        acc = dp_accounting.pld.PLDAccountant()
        acc.compose(event)
        blob = totals.dumps(acc._pld)
        assert blob.startswith(totals.MAGIC) and b"pickle" not in blob
        back = totals.loads(blob)
        for delta in (1e-3, 1e-5, 1e-8):
            assert back.get_epsilon_for_delta(delta) == acc._pld.get_epsilon_for_delta(delta)
        assert back.compose(acc._pld).get_epsilon_for_delta(1e-5) == acc._pld.compose(acc._pld).get_epsilon_for_delta(
            1e-5
        )
    with pytest.raises(ValueError):
        totals.loads(b"\x80\x04pickle")


def test_a_commit_with_other_events_invalidates_a_stored_total(ledger_at):
    """A total stored while a run was only reserved covers its reservation; its commit with fewer steps must
    not be reported at the reservation."""
    first, second = ledger.open(ledger_at), ledger.open(ledger_at)
    with charging(first, charge("long", gaussian(3.0, steps=4))) as long_run:
        run(second, charge("other", gaussian(5.0)))  # its commit stores a total with "long" at 4 steps
        assert second.spent(FP) == pytest.approx(fresh_pld(list(gaussian(3.0, 4) + gaussian(5.0)), 1e-5), rel=1e-6)
        long_run.commit(gaussian(3.0, steps=1))  # stopped early
    expected = fresh_pld(list(gaussian(3.0) + gaussian(5.0)), 1e-5)
    assert ledger.open(ledger_at).spent(FP) == pytest.approx(expected, rel=1e-6)
    assert second.spent(FP) == pytest.approx(expected, rel=1e-6)


def test_estimate_is_incremental_and_never_understates(ledger_at, monkeypatch):
    import dp_accounting

    book = ledger.open(ledger_at)
    sigmas = [2.0, 3.0, 4.5, 6.0, 9.0]
    for i, sigma in enumerate(sigmas):
        run(book, charge(f"r{i}", gaussian(sigma)))
    stored = query(ledger_at, "SELECT upto, runs FROM pld_totals ORDER BY upto")
    assert [r["runs"] for r in stored][-1] == 5 and len(stored) <= totals.KEEP
    calls = []
    real = totals.compose_onto
    monkeypatch.setattr(totals, "compose_onto", lambda *a, **k: calls.append(a) or real(*a, **k))
    fresh_handle = ledger.open(ledger_at)
    spent = fresh_handle.spent(FP)
    assert calls == []  # a new process is served by the stored total
    # the composition of Gaussians is the Gaussian of σ = (Σσ⁻²)^-½: an optimistic PLD of it is below the truth
    sigma = sum(s**-2 for s in sigmas) ** -0.5
    optimistic = dp_accounting.pld.privacy_loss_distribution.from_gaussian_mechanism(sigma, pessimistic_estimate=False)
    assert spent >= optimistic.get_epsilon_for_delta(1e-5)
    assert spent == pytest.approx(fresh_pld([g for s in sigmas for g in gaussian(s)], 1e-5), rel=1e-6)
    run(fresh_handle, charge("r5", sgd(0.1, 2.0, 10)))
    assert [r.run_id for r in calls[-1][1]] == ["r5"]  # only the new run composed onto the stored total


def test_admission_walks_only_the_new_tail_on_a_long_lived_handle(ledger_at):
    book = ledger.open(ledger_at)
    book.warm_cache = False
    book.set_budget(FP, "example", 100.0, 1e-5)
    for i in range(5):
        run(book, charge(f"r{i}", gaussian(20.0)))
    fetched = []
    real = book._backend.chain_rows
    book._backend.chain_rows = lambda first_id=1: fetched.append(first_id) or real(first_id)
    run(book, charge("r5", gaussian(20.0)))
    # r4's commit is entry 11, verified when it was written (each write moves the verified point forward, for
    # the spend floor); r5 reserves 12 and commits 13: each check reads from the last verified entry on, never
    # the whole chain
    assert fetched == [11, 11, 12]
    other = ledger.open(ledger_at)
    run(other, charge("r6", gaussian(20.0)))  # another writer (in this process: it also moves book's point)
    book.require_intact()
    assert fetched[-1] == 15
    tamper(ledger_at, "UPDATE entries SET epsilon = 0.5 WHERE id = 15")  # the newest entry, edited in place
    with pytest.raises(UserError, match="entry 15"):
        book.require_intact()
    assert fetched[-1] == 1  # ... fell back to the whole chain, which names the entry


def test_the_row_key_and_anchor_of_a_url_leave_out_its_password(postgres_url):
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@")
    book = ledger.open(with_password)  # trust authentication ignores the password
    run(book, charge("r1", gaussian(4.0)))
    assert "s3cret" not in str(book.path) and book.path == postgres_url
    assert "s3cret" not in str(rows.key_file(with_password)) and "s3cret" not in str(
        integrity.anchor_file(with_password)
    )
    assert integrity.anchor_file(with_password) == integrity.anchor_file(postgres_url)
    saved = json.loads(integrity.anchor_file(postgres_url).read_text())
    assert saved["ledger"] == postgres_url and saved["count"] == 2
    for name in os.listdir(integrity.anchor_file(postgres_url).parent):
        assert "s3cret" not in name


def test_a_ledger_from_before_sketches_loses_its_invertible_rows_and_still_verifies(ledger_path):
    """Row hashes and per-cell samples could be inverted by anyone holding the row key: a writable open
    deletes them. The chain's old ``rows`` entries (no sketch digest) stay verifiable."""
    from ledger_helpers.db import execute

    book = ledger.open(ledger_path)
    with book.core.transaction():  # what privtrain 0.2 chained when it registered a table's row hashes
        book.core.append(
            status="rows",
            source="patients",
            source_name="patients",
            unit="example",
            epsilon=0.0,
            delta=0.0,
            detail=json.dumps({"key_id": "0" * 16, "n_rows": 3, "digest": "ab" * 32}),
        )
    book.close()
    execute(
        ledger_path,
        "CREATE TABLE source_rows (source TEXT NOT NULL, hash INTEGER NOT NULL)",
        "INSERT INTO source_rows VALUES ('patients', 12345)",
        "CREATE TABLE source_samples (source TEXT, fingerprint TEXT, columns TEXT, n_rows INTEGER, sample BLOB)",
        "INSERT INTO source_samples VALUES ('patients', 'f', '[\"age\"]', 3, x'0102')",
    )
    reopened = ledger.open(ledger_path)
    tables = {r["name"] for r in query(ledger_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "source_rows" not in tables and "source_samples" not in tables and "source_sketches" in tables
    assert reopened.verify().ok
