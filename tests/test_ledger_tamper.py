"""`verify` detects every edit, deletion and reordering of the hash chain, and names the entry (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from ledger_helpers import FP, charge, cli, gaussian, run
from ledger_helpers.db import execute, is_pg, query
from ledger_helpers.db import tamper as _tamper

from privtrain import ledger


@pytest.fixture
def path(ledger_at):
    p = ledger_at
    led = ledger.open(p)
    led.warm_cache = False
    led.set_budget(FP, "example", 10.0, 1e-5)  # entry 1
    for i in range(3):  # entries 2..7: reserved + committed per run
        run(led, charge(f"r{i}", gaussian(4.0 + i)))
    led.close()
    return p


def tamper(path, *statements):
    """An attacker with write access: switch the append-only triggers off, then edit rows directly."""
    _tamper(path, *statements)


def report(path):
    return ledger.open(path).verify()


def test_intact_ledger_verifies(path):
    rep = report(path)
    assert rep.ok and rep.n_entries == 7 and rep.first_bad is None


def test_triggers_block_casual_edits(path):
    for sql in ("UPDATE entries SET epsilon = 0.1 WHERE id = 3", "DELETE FROM entries WHERE id = 3"):
        with pytest.raises(Exception, match="append-only"):
            execute(path, sql)
    if is_pg(path):
        with pytest.raises(Exception, match="append-only"):
            execute(path, "TRUNCATE entries")
    assert report(path).ok and len(ledger.open(path).entries()) == 7


def test_edited_epsilon(path):
    tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE id = 5")
    rep = report(path)
    assert not rep.ok and rep.first_bad == 5 and "entry 5" in rep.problem and "edited" in rep.problem


def test_edited_event(path):
    events = json.loads(query(path, "SELECT events FROM entries WHERE id = 4")[0]["events"])
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
    # delete entry 3, then shift the later ids down so the ids look contiguous again (in id order: PostgreSQL
    # checks the primary key per row)
    tamper(
        path,
        "DELETE FROM entries WHERE id = 3",
        *[f"UPDATE entries SET id = {i - 1} WHERE id = {i}" for i in range(4, 8)],
    )
    rep = report(path)
    assert not rep.ok and rep.first_bad == 3


def test_deleted_tail(path):
    tamper(path, "DELETE FROM entries WHERE id >= 6")
    rep = report(path)
    assert not rep.ok and "deleted from the end" in rep.problem


def test_reordered_rows(path):
    # swap the contents of entries 4 and 6 (both keep their ids)
    tamper(
        path,
        "UPDATE entries SET id = -4 WHERE id = 4",
        "UPDATE entries SET id = 4 WHERE id = 6",
        "UPDATE entries SET id = 6 WHERE id = -4",
    )
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
    execute(path, "UPDATE cache SET value = -1", "UPDATE pld_totals SET epsilons = '{}', runs = 0")
    assert led.verify().ok  # the cache is derived data, outside the chain
