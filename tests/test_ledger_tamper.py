"""`verify` detects every edit, deletion and reordering of the hash chain, and names the entry."""

from __future__ import annotations

import json
import sqlite3

import pytest
from ledger_helpers import FP, charge, cli, gaussian, run

from privtrain import ledger


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "ledger.db"
    led = ledger.open(p)
    led.warm_cache = False
    led.set_budget(FP, "example", 10.0, 1e-5)  # entry 1
    for i in range(3):  # entries 2..7: reserved + committed per run
        run(led, charge(f"r{i}", gaussian(4.0 + i)))
    led.close()
    return p


def tamper(path, *statements):
    """An attacker with write access: drop the append-only triggers, then edit rows directly."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("DROP TRIGGER entries_append_only_delete")
    for sql in statements:
        conn.execute(sql)
    conn.close()


def report(path):
    return ledger.open(path).verify()


def test_intact_ledger_verifies(path):
    rep = report(path)
    assert rep.ok and rep.n_entries == 7 and rep.first_bad is None


def test_triggers_block_casual_edits(path):
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE entries SET epsilon = 0.1 WHERE id = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE id = 3")


def test_edited_epsilon(path):
    tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE id = 5")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 5 and "entry 5" in rep.problem and "edited" in rep.problem


def test_edited_event(path):
    conn = sqlite3.connect(path)
    events = json.loads(conn.execute("SELECT events FROM entries WHERE id = 4").fetchone()[0])
    conn.close()
    events[0]["noise_multiplier"] = 400.0  # pretend the run was far noisier
    tamper(path, f"UPDATE entries SET events = '{json.dumps(events)}' WHERE id = 4")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 4 and "edited" in rep.problem


def test_edited_budget(path):
    tamper(path, "UPDATE entries SET epsilon = 1000 WHERE id = 1")
    assert report(path).first_bad == 1


def test_deleted_row(path):
    tamper(path, "DELETE FROM entries WHERE id = 3")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 3 and "deleted" in rep.problem


def test_deleted_and_renumbered_rows(path):
    # delete entry 3, then shift the later ids down so the ids look contiguous again
    tamper(path, "DELETE FROM entries WHERE id = 3", "UPDATE entries SET id = id - 1 WHERE id > 3")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 3


def test_deleted_tail(path):
    tamper(path, "DELETE FROM entries WHERE id >= 6")
    rep = report(path)
    assert not rep.ok and "deleted from the end" in rep.problem


def test_reordered_rows(path):
    # swap the contents of entries 4 and 6 (both keep their ids)
    tamper(path, "UPDATE entries SET id = -4 WHERE id = 4", "UPDATE entries SET id = 4 WHERE id = 6",
           "UPDATE entries SET id = 6 WHERE id = -4")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 4 and "reordered" in rep.problem


def test_verify_cli_exits_1_and_names_the_entry(path):
    assert cli("verify", path=path).returncode == 0
    tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE id = 5")
    out = cli("verify", path=path)
    assert out.returncode == 1
    assert "entry 5" in out.stdout and "r1" in out.stdout and out.stderr == ""


def test_verify_ignores_the_cache(path):
    led = ledger.open(path)
    led.sources()  # fills the cache
    led._conn.execute("UPDATE cache SET value = -1")
    assert led.verify().ok  # the cache is derived data, outside the chain
