"""A PostgreSQL ledger for a team: selection by URL, the schema, bad servers and databases, and database roles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ledger_helpers import FP, ROOT, charge, charging, cli, env, gaussian, run
from ledger_helpers.db import execute, query

from privtrain import ledger
from privtrain.errors import UserError
from privtrain.ledger import backends, store
from privtrain.ledger.backends import postgres
from privtrain.sources import Source


def _tables(url) -> set[str]:
    return {r["tablename"] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_a_url_selects_postgresql_and_creates_a_marked_append_only_schema(postgres_url, monkeypatch):
    monkeypatch.setenv("PRIVTRAIN_LEDGER", postgres_url)
    assert ledger.default_path() == postgres_url
    book = ledger.open()
    assert book.backend == "postgresql" and book.path == postgres_url and not book.read_only
    assert _tables(postgres_url) == {"meta", "entries", "source_sketches", "cache", "pld_totals"}
    meta = {r["key"]: r["value"] for r in query(postgres_url, "SELECT key, value FROM meta")}
    assert meta["app"] == "privtrain-ledger" and meta["schema_version"] == str(store.SCHEMA_VERSION)
    run(book, charge("r1", gaussian(4.0)))
    assert meta["head_id"] == "0" and book.head()[0] == 2
    table = pd.DataFrame({"age": np.arange(300) % 70 + 18, "income": np.round(np.linspace(1e4, 9e4, 300), 2)})
    book.register_table(Source("people", "people", "declared"), "ab" * 32, table)  # a stored sketch
    for sql in (
        "UPDATE entries SET epsilon = 0.1",
        "DELETE FROM entries",
        "TRUNCATE entries",
        "TRUNCATE source_sketches",
        "DELETE FROM source_sketches",
        "UPDATE source_sketches SET layout = ''",
    ):
        with pytest.raises(Exception, match="append-only"):
            execute(postgres_url, sql)
    assert book.verify().ok and book.verify().message == "ledger ok: 3 entries, hash chain intact"


def test_cli_path_and_env_accept_a_url(postgres_url):
    out = cli("budget", "set", "patients", "--epsilon", "3", "--delta", "1e-5", path=postgres_url)
    assert out.returncode == 0, out.stderr
    run(ledger.open(postgres_url), charge("r1", gaussian(4.0)))
    shown = subprocess.run(
        [sys.executable, "-m", "privtrain.ledger", "show"],
        capture_output=True,
        text=True,
        env={**env(), "PRIVTRAIN_LEDGER": postgres_url},
        cwd=ROOT,
        timeout=120,
    )
    assert shown.returncode == 0 and shown.stdout.startswith(f"ledger {postgres_url}\n")
    assert "patients" in shown.stdout and "1e-05" in shown.stdout
    verified = cli("verify", path=postgres_url)
    assert verified.returncode == 0 and "ledger ok: 3 entries, hash chain intact" in verified.stdout


def test_read_only_commands_never_create_a_postgres_ledger(postgres_url):
    for command in (["verify"], ["show"], ["export"]):
        out = cli(*command, path=postgres_url)
        assert out.returncode == 2 and "no ledger at" in out.stderr and out.stderr.count("\n") == 1, command
    assert _tables(postgres_url) == set()


def test_an_unreachable_server_is_one_line(postgres_server):
    url = postgres_server.url("nowhere").replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(UserError, match="cannot connect to the PostgreSQL ledger"):
        ledger.open(url)
    out = cli("show", path=postgres_server.url("no_such_database"))
    assert out.returncode == 2 and out.stderr.startswith("privtrain: error: cannot connect to the PostgreSQL ledger")
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_a_foreign_or_newer_database_is_refused_and_untouched(postgres_url, postgres_server):
    execute(postgres_url, "CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')")
    with pytest.raises(UserError, match="foreign database with tables users"):
        ledger.open(postgres_url)
    assert _tables(postgres_url) == {"users"}
    newer = postgres_server.database()
    run(ledger.open(newer), charge())
    execute(newer, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(UserError, match=r"schema version 99, newer than this privtrain supports \(2\)"):
        ledger.open(newer)
    postgres_server.drop(newer)


def test_migrate_is_for_sqlite_files(postgres_url):
    out = cli("migrate", path=postgres_url)
    assert out.returncode == 2 and "is a PostgreSQL ledger" in out.stderr


def _grants(database: str) -> list[str]:
    """The role setup of docs/ledger.md, for ``database``."""
    text = (ROOT / "docs" / "ledger.md").read_text()
    block = next(b for b in re.findall(r"```sql\n(.*?)```", text, re.S) if "privtrain_writer" in b)
    block = re.sub(r"--[^\n]*", "", block).replace("DATABASE ledger", f'DATABASE "{database}"')
    return [s.strip() for s in block.split(";") if s.strip()]


def test_database_roles_from_the_docs(postgres_url, postgres_server):
    """The writer role charges runs but can neither edit nor delete entries; the auditor only reads."""
    owner = ledger.open(postgres_url)  # the owner creates the tables
    owner.set_budget(FP, "example", 6.0, 1e-5)
    database = postgres_url.rsplit("/", 1)[1]
    try:
        execute(postgres_url, *_grants(database))
        writer_url = postgres_server.url(database, user="privtrain_writer")
        auditor_url = postgres_server.url(database, user="privtrain_auditor")
        writer = ledger.open(writer_url)
        assert not writer.read_only
        run(writer, charge("by-writer", gaussian(4.0)))
        assert writer.spent(FP) > 0 and writer.verify().ok
        for sql in (
            "UPDATE entries SET epsilon = 0.1",
            "DELETE FROM entries",
            "ALTER TABLE entries DISABLE TRIGGER USER",
            "DROP TABLE entries",
            "TRUNCATE entries",
            "UPDATE source_sketches SET layout = ''",
            "DELETE FROM source_sketches",
            "TRUNCATE source_sketches",
        ):
            with pytest.raises(Exception, match="permission denied|must be owner|append-only"):
                execute(writer_url, sql)
        auditor = ledger.open(auditor_url)
        assert auditor.read_only and auditor.verify().ok and len(auditor.entries()) == 3
        assert auditor.sources()[0].n_runs == 1
        with pytest.raises(UserError, match="read-only"):
            with charging(auditor, charge("by-auditor", gaussian(4.0))):
                pass
        with pytest.raises(UserError, match="read-only"):
            auditor.set_budget(FP, "example", 60.0, 1e-5)
        for sql in (
            "INSERT INTO meta VALUES ('x', 'y')",
            "UPDATE meta SET value = '0' WHERE key = 'head_id'",
            "INSERT INTO source_sketches VALUES ('s', 'f', '{}', '')",
        ):
            with pytest.raises(Exception, match="permission denied"):
                execute(auditor_url, sql)
        assert len(owner.entries()) == 3 and owner.verify().ok
    finally:
        postgres_server.drop(postgres_url)  # roles are cluster-wide: drop them once their database is gone
        execute(
            postgres_server.admin_url, "DROP ROLE IF EXISTS privtrain_writer", "DROP ROLE IF EXISTS privtrain_auditor"
        )


def test_the_write_lock_is_one_advisory_lock_per_ledger(postgres_url):
    book = ledger.open(postgres_url)
    with book._backend.write():
        locks = query(postgres_url, "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND granted")
        assert [r["classid"] for r in locks] == [postgres.LOCK_CLASS] and len(locks) == 1
    assert query(postgres_url, "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory'")[0]["n"] == 0


def test_redact_and_file_names():
    url = "postgresql://alice:pa55@db.example.org:5432/ledger?sslmode=require&password=pa55"
    assert backends.redact(url) == "postgresql://alice@db.example.org:5432/ledger?sslmode=require"
    name = backends.url_file_name(url, ".rowkey")
    assert "pa55" not in name and name.startswith("postgresql-alice@db.example.org-5432-ledger") and "/" not in name
    assert backends.is_url("postgres://x/y") and not backends.is_url(str(Path("ledger.db")))


@pytest.mark.slow
def test_a_real_run_charges_the_postgres_ledger_named_by_ledger_path(postgres_url, tmp_path, monkeypatch):
    from conftest import TINY

    import privtrain

    monkeypatch.delenv("PRIVTRAIN_LEDGER", raising=False)
    result = privtrain.run("dp_sgd", [*TINY, f"ledger.path={postgres_url}"], output_dir=tmp_path / "run")
    book = ledger.open(postgres_url)
    assert [e.status for e in book.entries() if e.run_id == result.metrics.get("run_id", e.run_id)][-1] == "committed"
    assert book.sources()[0].name == "digits" and book.verify().ok
    from privtrain.artifacts.verify import recorded_hashes

    run_id, hashes, where = recorded_hashes(result.output_dir)
    assert where == postgres_url and hashes  # the run's record names the PostgreSQL ledger, and reopens it
