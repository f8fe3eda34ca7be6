"""The ledger file: schema versioning, bad files and paths, and what every entry records."""

from __future__ import annotations

import os
import sqlite3

import pytest
from ledger_helpers import FP, charge, charging, cli, gaussian, run

from privtrain import ledger
from privtrain.errors import UserError
from privtrain.ledger import store
from privtrain.ledger.backends import sqlite as sqlite_backend


def test_new_ledger_is_versioned_wal_and_marked(tmp_path, monkeypatch):
    (tmp_path / ".privtrain").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRIVTRAIN_LEDGER", raising=False)
    led = ledger.open()
    assert led.path == tmp_path / ".privtrain" / "ledger.db" and led.path.exists()
    assert oct(led.path.stat().st_mode & 0o777) == "0o600"  # readable by its owner only
    conn = sqlite3.connect(led.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == sqlite_backend.APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(tmp_path / "elsewhere" / "l.db"))
    assert ledger.open().path == tmp_path / "elsewhere" / "l.db"


def test_entries_record_provenance(ledger_at):
    led = ledger.open(ledger_at)
    run(led, charge("r1", gaussian(3.0)), artifacts={"model.pt": "ab" * 32, "metrics.json": "cd" * 32})
    reserved, committed = led.entries()
    for e in (reserved, committed):
        assert e.run_id == "r1" and e.recipe == "dp_sgd" and e.config_hash == "cfg-r1"
        assert e.dataset_fingerprint == FP and e.source == FP and e.source_name == "patients" and e.unit == "example"
        assert e.user and "T" in e.time and e.time.endswith("+00:00")
        assert e.git_commit is None or len(e.git_commit) >= 40
        assert e.events[0].noise_multiplier == 3.0 and e.delta == 1e-5 and e.epsilon > 0
        assert len(e.hash) == 64
    assert committed.prev_hash == reserved.hash
    assert committed.artifacts == {"metrics.json": "cd" * 32, "model.pt": "ab" * 32}


def test_newer_schema_is_refused_and_untouched(tmp_path):
    p = tmp_path / "l.db"
    run(ledger.open(p), charge())
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = p.read_bytes()
    with pytest.raises(UserError, match=r"schema version 99, newer than this privtrain supports \(2\); upgrade"):
        ledger.open(p)
    assert p.read_bytes() == before
    out = cli("show", path=p)
    assert out.returncode == 2 and out.stderr.startswith("privtrain: error: ") and out.stderr.count("\n") == 1


def test_one_ledger_per_project_found_like_git_finds_a_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("PRIVTRAIN_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    project = tmp_path / "project"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / ".git").mkdir()
    assert ledger.default_path(project / "notebooks" / "deep") == project / ".privtrain" / "ledger.db"  # git root
    (project / "notebooks" / ".privtrain").mkdir()
    assert ledger.default_path(project / "notebooks" / "deep") == project / "notebooks" / ".privtrain" / "ledger.db"
    assert ledger.default_path(tmp_path) == tmp_path / "data" / "privtrain" / "ledger.db"  # no project: per user
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(tmp_path / "x.db"))
    assert ledger.default_path(project) == tmp_path / "x.db"


def test_read_only_commands_never_create_a_ledger(tmp_path):
    missing = tmp_path / "typo" / "ledgr.db"
    for command in (["verify"], ["show"], ["runs", "digits"], ["export"]):
        out = cli(*command, path=missing)
        assert out.returncode == 2 and "no ledger at" in out.stderr and "Traceback" not in out.stderr, command
    assert not missing.exists() and not missing.parent.exists()


def test_corrupted_file_is_refused_and_untouched(tmp_path):
    p = tmp_path / "l.db"
    p.write_bytes(b"this is not a database\n" * 100)
    before = p.read_bytes()
    with pytest.raises(UserError, match="not an SQLite database"):
        ledger.open(p)
    assert p.read_bytes() == before


def test_damaged_sqlite_file_is_refused(tmp_path):
    p = tmp_path / "l.db"
    led = ledger.open(p)
    run(led, charge())
    led.close()  # checkpoints the WAL into the main file
    data = bytearray(p.read_bytes())
    data[100:4096] = b"\xff" * 3996  # wreck the schema page, keep the SQLite magic
    p.write_bytes(bytes(data))
    with pytest.raises(UserError, match="not a usable privtrain ledger .database disk image is malformed"):
        ledger.open(p)
    assert p.read_bytes() == bytes(data)


def test_damaged_data_page_is_a_clear_error(tmp_path):
    p = tmp_path / "l.db"
    led = ledger.open(p)
    led.warm_cache = False
    for i in range(40):
        run(led, charge(f"r{i}", gaussian(30.0)))
    led.close()
    data = bytearray(p.read_bytes())
    data[-4096 * 3 :] = b"\x07" * (4096 * 3)  # scribble over the last pages (entries' rows)
    p.write_bytes(bytes(data))
    led = ledger.open(p)
    assert not led.verify().ok
    with pytest.raises(UserError, match="damaged"):
        led.entries()


def test_foreign_sqlite_db_is_refused_and_untouched(tmp_path):
    p = tmp_path / "app.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    before = p.read_bytes()
    with pytest.raises(UserError, match="foreign SQLite database with tables users"):
        ledger.open(p)
    assert p.read_bytes() == before
    assert not (tmp_path / "app.db-wal").exists()


def test_unwritable_paths(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the ledger directory"):
        ledger.open(blocker / "ledger.db")
    with pytest.raises(UserError, match="cannot create the ledger directory"):
        ledger.open("/proc/privtrain/ledger.db")  # a read-only filesystem, even for root
    with pytest.raises(UserError, match="is a directory"):
        ledger.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_ledger_reads_but_refuses_to_charge(tmp_path):
    p = tmp_path / "ro" / "l.db"
    run(ledger.open(p), charge())
    os.chmod(p, 0o444)
    os.chmod(p.parent, 0o555)
    try:
        led = ledger.open(p)
        assert len(led.entries()) == 2
        with pytest.raises(UserError, match="read-only"):
            with charging(led, charge("r2")):
                pass
        assert len(ledger.open(p).entries()) == 2
    finally:
        os.chmod(p.parent, 0o755)
        os.chmod(p, 0o644)


def test_unknown_source_in_runs(ledger_at):
    p = ledger_at
    run(ledger.open(p), charge())
    with pytest.raises(UserError, match="unknown source 'mnist'.*known: patients"):
        ledger.open(p).entries("mnist")
    out = cli("runs", "mnist", path=p)
    assert out.returncode == 2
    assert out.stderr.startswith("privtrain: error: unknown source 'mnist'") and "Traceback" not in out.stderr
    assert len(ledger.open(p).entries()) == 2


@pytest.mark.parametrize(
    "eps, delta, match",
    [
        (-1.0, 1e-5, "epsilon=-1 > 0"),
        (0.0, 1e-5, "epsilon=0 > 0"),
        (1.0, 1.0, "delta=1 in"),
        (1.0, -1e-5, "delta=-1e-05 in"),
    ],
)
def test_bad_budget(ledger_at, eps, delta, match):
    p = ledger_at
    led = ledger.open(p)
    run(led, charge())
    with pytest.raises(UserError, match=match):
        led.set_budget("patients", "example", eps, delta)
    assert led.budget("patients") is None and len(led.entries()) == 2


def test_bad_budget_cli(ledger_at):
    p = ledger_at
    run(ledger.open(p), charge())
    out = cli("budget", "set", "patients", "--epsilon=-1", "--delta", "1e-5", path=p)
    assert out.returncode == 2 and "Expected budget epsilon=-1 > 0" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("budget", "set", "patients", "--epsilon", "2", "--delta", "1e-5", path=p)
    assert out.returncode == 0 and "ε=2 at δ=1e-05" in out.stdout
    assert ledger.open(p).budget("patients").epsilon == 2.0


def test_source_resolution(ledger_at):
    led = ledger.open(ledger_at)
    run(led, charge("a", fp="ab" + "0" * 62, name="clinic"))
    run(led, charge("b", fp="ac" + "0" * 62, name="clinic"))
    with pytest.raises(UserError, match="ambiguous"):
        led.resolve("clinic")
    assert led.resolve("digits") == "digits"  # a built-in source is known before first use
    assert led.resolve("ab0000") == "ab" + "0" * 62
    with pytest.raises(UserError, match="unknown source 'ab'"):
        led.resolve("ab")  # too short a prefix to name a source
    assert led.resolve("f" * 64) == "f" * 64  # a budget may be set before first use
