"""Tamper evidence beyond the file: whole-chain rewrites, truncation with an edited head, older backups and
fresh files are caught by a published head, the ledger key's signatures, or this machine's anchor."""

from __future__ import annotations

import shutil

import pytest
from ledger_helpers import FP, charge, charging, cli, gaussian, run
from ledger_helpers.db import execute, is_pg, query, tamper

from privtrain import ledger
from privtrain.errors import UserError
from privtrain.ledger import integrity, store


def _ledger(path, n_runs: int = 3):
    book = ledger.open(path)
    book.warm_cache = False
    book.set_budget(FP, "example", 50.0, 1e-5)
    for i in range(n_runs):
        run(book, charge(f"r{i}", gaussian(4.0 + i)))
    return book


def rewrite(path, entry_id: int, epsilon: float) -> None:
    """A capable attacker: edit an entry, then recompute every later hash and the head record."""
    tamper(path)
    rows = query(path, "SELECT * FROM entries ORDER BY id")
    prev = store.GENESIS
    for r in rows:
        if r["id"] == entry_id:
            r["epsilon"] = epsilon
        r["prev_hash"] = prev
        r["hash"] = store.entry_hash(r)
        execute(
            path,
            "UPDATE entries SET epsilon=?, prev_hash=?, hash=? WHERE id=?",
            params=(r["epsilon"], r["prev_hash"], r["hash"], r["id"]),
        )
        prev = r["hash"]
    execute(path, "UPDATE meta SET value=? WHERE key='head_hash'", params=(prev,))


def forget_anchor(path) -> None:
    """Another machine: it has not seen this ledger before."""
    integrity.anchor_file(path).unlink()


def test_a_whole_chain_rewrite_is_caught_by_the_anchor_and_by_a_published_head(ledger_at):
    path = ledger_at
    book = _ledger(path)
    pinned = cli("head", path=path).stdout.strip()
    assert pinned == f"{len(book.entries())}:{book.entries()[-1].hash}"
    book.close()
    rewrite(path, 3, 0.001)
    report = ledger.open(path).verify()
    assert not report.ok and "not the one this machine saw" in report.problem
    forget_anchor(path)
    assert ledger.open(path).verify().ok  # without the anchor, the rewritten chain is self-consistent ...
    out = cli("verify", "--head", pinned, path=path)  # ... but it no longer extends the published head
    assert out.returncode == 1 and "published head" in out.stdout


def test_truncation_with_an_edited_head_an_older_backup_and_a_fresh_file_are_caught(tmp_path, ledger_at):
    path = ledger_at
    book = _ledger(path, n_runs=1)
    book.close()
    if not is_pg(path):
        shutil.copy(path, tmp_path / "backup.db")
    book = ledger.open(path)
    run(book, charge("later", gaussian(3.0)))
    book.close()
    tamper(path, "DELETE FROM entries WHERE id > 3")
    head = query(path, "SELECT hash FROM entries WHERE id = 3")[0]["hash"]
    execute(path, "UPDATE meta SET value='3' WHERE key='head_id'")
    execute(path, "UPDATE meta SET value=? WHERE key='head_hash'", params=(head,))
    assert "this machine saw 5 entries" in ledger.open(path).verify().problem
    if is_pg(path):  # a fresh ledger in the same database
        execute(
            path, *[f"DROP TABLE {t} CASCADE" for t in ("meta", "entries", "source_sketches", "cache", "pld_totals")]
        )
        fresh = ledger.open(path)
        assert len(fresh.entries()) == 0 and not fresh.verify().ok
        return
    shutil.copy(tmp_path / "backup.db", path)  # restoring an older backup
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"l.db{suffix}").unlink(missing_ok=True)
    assert "now holds 3" in ledger.open(path).verify().problem
    path.unlink()
    fresh = ledger.open(path)  # starting a fresh file at the same path
    assert not fresh.verify().ok


def test_with_a_ledger_key_a_rewrite_without_it_is_caught_on_any_machine(ledger_at, monkeypatch):
    path = ledger_at
    monkeypatch.setenv("PRIVTRAIN_LEDGER_KEY", "team-secret-kept-in-a-vault")
    book = _ledger(path)
    assert book.verify().ok and all(r["mac"] for r in book._backend.chain_rows())
    book.close()
    rewrite(path, 3, 0.001)
    forget_anchor(path)
    report = ledger.open(path).verify()
    assert not report.ok and "PRIVTRAIN_LEDGER_KEY did not make" in report.problem
    monkeypatch.delenv("PRIVTRAIN_LEDGER_KEY")
    assert ledger.open(path).verify().ok  # the MACs need the key: without it, only the chain is checked


def test_a_damaged_ledger_admits_no_run_until_the_damage_is_accepted(tmp_path, ledger_at):
    path = ledger_at
    book = _ledger(path)
    book.close()
    tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE id = 3")
    book = ledger.open(path)
    with pytest.raises(UserError, match="fails verification .*accept-damage"):
        with charging(book, charge("next", gaussian(10.0))):
            pass
    n = len(book.entries())
    out = cli(
        "accept-damage",
        "--reason",
        "entry 3 was hand-edited during an incident; budget raised to compensate",
        path=path,
    )
    assert (
        out.returncode == 0
        and "is accepted" in out.stdout
        and "bounded by the spend this machine verified" in out.stdout
    )
    assert book.verify().ok and len(book.entries()) == n + 1
    run(book, charge("next", gaussian(10.0)))  # admits runs again
    assert book.verify().ok
    book.close()
    execute(path, "UPDATE entries SET epsilon = 0.02 WHERE id = 2")  # the trigger is off since the first edit
    report = ledger.open(path).verify()
    assert not report.ok and "changed after it was accepted" in report.problem
    _ledger(tmp_path / "intact.db").close()
    out = cli("accept-damage", "--reason", "x", path=tmp_path / "intact.db")
    assert out.returncode == 2 and "no damage to accept" in out.stderr


def test_verify_run_dir_reports_edited_and_missing_artifacts(tmp_path, ledger_path, cli):
    from conftest import TINY

    import privtrain

    result = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "run")
    ok = cli("verify", str(result.output_dir))
    assert ok.returncode == 0 and "all 8 files match" in ok.stdout, ok.stdout + ok.stderr
    from privtrain.audit import audit_run

    audit_run(result.output_dir, shadow_models=0)  # an audit rewrites the card: recorded, not an edit
    assert cli("verify", str(result.output_dir)).returncode == 0
    (result.output_dir / "metrics.json").write_text("{}")
    (result.output_dir / "config.yaml").unlink()
    bad = cli("verify", str(result.output_dir))
    assert bad.returncode == 1
    assert bad.stdout.count("\n") == 1 and "2 of 10 recorded files differ" in bad.stdout  # one line
    assert "metrics.json (edited since the ledger recorded it)" in bad.stdout and "config.yaml (missing)" in bad.stdout
