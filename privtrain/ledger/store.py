"""The ledger file: SQLite schema, versioning, the append-only hash chain, and source rows.

Every privacy-relevant fact (reservations, commits, failures, budgets, lineage, the rows a
source is known by) is one row of ``entries``. Row ``i`` stores ``prev_hash`` (row ``i-1``'s
hash) and ``hash = sha256(prev_hash + canonical JSON of the row)``, so an edited, deleted,
inserted or reordered row breaks the chain at that row. ``meta`` remembers the head, which
catches a deleted tail.

Two tables hold data that is too big to chain row by row, and is anchored by the chain instead:

- ``source_rows``: each source's keyed row hashes (never raw values). Every ``rows`` entry
  records the set digest of its source's hashes after the insert, so :func:`verify` detects a
  deleted or added hash.
- ``source_samples``: per table, keyed cell hashes of a random sample of rows, so a later table
  with other columns can be compared on the columns they share.

The ``cache`` table is derived data (PLD compositions for display): never chained, never read
for admission.

All SQL lives in this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from privtrain.errors import UserError
from privtrain.ledger.model import Entry

SCHEMA_VERSION = 2
APPLICATION_ID = 0x50525654  # "PRVT": marks the file as a privtrain ledger
GENESIS = "0" * 64
# A writer holds the lock only to append (the filter's sums are cheap), but a reader may wait on it.
BUSY_TIMEOUT_S = 600.0

COLUMNS = (
    "id", "ref", "status", "run_id", "time", "user", "version", "git_commit", "recipe", "config_hash",
    "source", "source_name", "scope", "scope_label", "unit", "dataset_fingerprint", "parent",
    "events", "rdp", "epsilon", "delta", "artifacts", "detail", "prev_hash",
)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    ref INTEGER,
    status TEXT NOT NULL,
    run_id TEXT, time TEXT NOT NULL, user TEXT, version TEXT, git_commit TEXT,
    recipe TEXT, config_hash TEXT,
    source TEXT NOT NULL, source_name TEXT, scope TEXT NOT NULL DEFAULT '', scope_label TEXT,
    unit TEXT NOT NULL, dataset_fingerprint TEXT, parent TEXT,
    events TEXT NOT NULL, rdp TEXT, epsilon REAL NOT NULL, delta REAL NOT NULL,
    artifacts TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    mac TEXT  -- HMAC of hash with PRIVTRAIN_LEDGER_KEY when one is set (not chained: it signs the chain)
);
CREATE INDEX entries_by_source ON entries (source, unit, scope, id);
CREATE INDEX entries_by_fingerprint ON entries (dataset_fingerprint);
CREATE TABLE source_rows (source TEXT NOT NULL, hash INTEGER NOT NULL, PRIMARY KEY (source, hash)) WITHOUT ROWID;
CREATE INDEX source_rows_by_hash ON source_rows (hash);
CREATE TABLE source_samples (
    source TEXT NOT NULL, fingerprint TEXT NOT NULL, columns TEXT NOT NULL, n_rows INTEGER NOT NULL,
    sample BLOB NOT NULL, PRIMARY KEY (source, fingerprint)
);
CREATE TABLE cache (
    key TEXT PRIMARY KEY, fingerprint TEXT, unit TEXT, delta REAL, accountant TEXT,
    value REAL NOT NULL, created TEXT NOT NULL
);
-- Append-only: stops accidents. A deliberate edit is caught by the hash chain.
CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'privtrain ledger entries are append-only'); END;
CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'privtrain ledger entries are append-only'); END;
CREATE TRIGGER source_rows_append_only BEFORE DELETE ON source_rows
BEGIN SELECT RAISE(ABORT, 'privtrain ledger source rows are append-only'); END;
"""


def _not_a_ledger(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a usable privtrain ledger ({why}); nothing was changed: move it aside "
        "or point PRIVTRAIN_LEDGER / ledger.path= at another file.")


def connect(path: Path, *, create: bool = True) -> tuple[sqlite3.Connection, bool]:
    """Open (creating if new and ``create``) the ledger at ``path``; returns (connection, read_only).

    This module never opens the database file with Python's ``open()``: closing any file descriptor on
    an SQLite file drops every POSIX lock this process holds on it, including those of other live
    connections, and a checkpoint can then overwrite pages a reader still uses ("How To Corrupt An
    SQLite Database File", §2.2). That is what corrupted the quickstart notebook's ledger.

    Raises:
        UserError: the path cannot be created, does not exist (``create=False``), is not an SQLite
            file, is a foreign, older or newer database, or is corrupt.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"ledger path {path} is a directory; give a file such as {path / 'ledger.db'}.")
    if not path.exists():
        if not create:
            raise UserError(f"no ledger at {path}; nothing was created. The first run (or `privtrain ledger budget "
                            "set`) creates it; point PRIVTRAIN_LEDGER or --path at an existing ledger.")
        _create_private(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        read_only = _prepare(conn, path)
    except sqlite3.DatabaseError as exc:
        if _is_readonly_error(exc):
            return _connect_read_only(path)
        if "not a database" in str(exc):
            raise _not_a_ledger(path, "not an SQLite database: corrupt or foreign file") from None
        raise _not_a_ledger(path, str(exc)) from None
    return conn, read_only


def _create_private(path: Path) -> None:
    """The ledger's folder and file, readable by their owner only (the file is still empty: safe to touch)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # FileExistsError included: a file is in the way
        raise UserError(f"cannot create the ledger directory {path.parent}: {exc.strerror}; "
                        "set PRIVTRAIN_LEDGER or ledger.path= to a writable location.") from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it meanwhile
    except OSError as exc:
        raise UserError(f"cannot create the ledger {path}: {exc.strerror}; "
                        "set PRIVTRAIN_LEDGER or ledger.path= to a writable location.") from None


def _connect_read_only(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A user without write access can still read a ledger (nothing can be charged)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        _check_identity(conn, path, write=False)
        return conn, True
    except sqlite3.DatabaseError as exc:
        raise UserError(f"the ledger {path} cannot be opened, even read-only ({exc}); fix its permissions or point "
                        "PRIVTRAIN_LEDGER elsewhere.") from None


def _is_readonly_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _prepare(conn: sqlite3.Connection, path: Path) -> bool:
    conn.row_factory = sqlite3.Row
    _check_identity(conn, path, write=False)  # before anything writes to a file that may be foreign
    read_only = False
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        read_only = mode.lower() != "wal" and not os.access(path, os.W_OK)
    except sqlite3.OperationalError as exc:
        if not _is_readonly_error(exc):
            raise
        read_only = True
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _check_identity(conn, path, write=True)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return read_only


def _check_identity(conn: sqlite3.Connection, path: Path, *, write: bool) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    if app_id == 0 and version == 0 and not tables:
        if write:  # a new, empty file: create the schema
            for statement in _split(_SCHEMA):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("INSERT INTO meta VALUES ('app', 'privtrain-ledger'), ('head_id', '0'), "
                         "('head_hash', ?)", (GENESIS,))
        return
    if app_id != APPLICATION_ID:
        raise _not_a_ledger(path, f"a foreign SQLite database with tables {', '.join(tables[:5]) or 'none'}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"the ledger {path} has schema version {version}, newer than this privtrain supports "
            f"({SCHEMA_VERSION}); upgrade privtrain to read it. Nothing was changed.")
    if version < SCHEMA_VERSION:
        raise UserError(
            f"the ledger {path} has schema version {version} (privtrain 0.1): its budgets were kept per file, "
            f"not per data source; run `privtrain ledger migrate --path {path}` to carry every entry over "
            "(the old file is kept as a backup). Nothing was changed.")


def _split(script: str) -> list[str]:
    """Split a schema script into statements (triggers keep their inner ``;``)."""
    out, buf = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


# --- the hash chain ------------------------------------------------------------


def canonical(row: dict[str, Any]) -> str:
    return json.dumps({k: row[k] for k in COLUMNS}, sort_keys=True, separators=(",", ":"), allow_nan=True)


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256((row["prev_hash"] + canonical(row)).encode()).hexdigest()


def append(conn: sqlite3.Connection, fields: dict[str, Any], sign=None) -> Entry:
    """Append one chained row. Call inside a write transaction (BEGIN IMMEDIATE).

    ``sign(hash) -> str`` (with a ledger key) adds the row's MAC.
    """
    head = conn.execute("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
    row = {k: fields.get(k) for k in COLUMNS}
    row["scope"] = row["scope"] or ""
    row["detail"] = row["detail"] or "{}"
    row["id"] = 1 if head is None else head["id"] + 1
    row["prev_hash"] = GENESIS if head is None else head["hash"]
    row["hash"] = entry_hash(row)
    row["mac"] = sign(row["hash"]) if sign is not None else None
    names = COLUMNS + ("hash", "mac")
    conn.execute(f"INSERT INTO entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [row[k] for k in names])
    conn.execute("UPDATE meta SET value=? WHERE key='head_id'", (str(row["id"]),))
    conn.execute("UPDATE meta SET value=? WHERE key='head_hash'", (row["hash"],))
    return to_entry(row)


def to_entry(row: Any) -> Entry:
    r = dict(row)
    return Entry(
        id=r["id"], ref=r["ref"], status=r["status"], run_id=r["run_id"], time=r["time"], user=r["user"],
        version=r["version"], git_commit=r["git_commit"], recipe=r["recipe"], config_hash=r["config_hash"],
        source=r["source"], source_name=r["source_name"], scope=r["scope"] or "", scope_label=r["scope_label"],
        unit=r["unit"], dataset_fingerprint=r["dataset_fingerprint"], parent=r["parent"],
        events_json=r["events"], rdp_json=r["rdp"], epsilon=r["epsilon"], delta=r["delta"],
        artifacts_json=r["artifacts"], detail_json=r["detail"], prev_hash=r["prev_hash"], hash=r["hash"])


def select_entries(conn: sqlite3.Connection, where: str = "", args: tuple = ()) -> list[Entry]:
    sql = "SELECT * FROM entries" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    return [to_entry(r) for r in conn.execute(sql, args)]


# --- source rows (keyed hashes) -------------------------------------------------------


def add_rows(conn: sqlite3.Connection, source: str, hashes) -> int:
    """Insert a source's keyed row hashes (signed 64-bit); returns how many were new."""
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO source_rows (source, hash) VALUES (?, ?)",
                     ((source, int(h)) for h in hashes))
    return conn.total_changes - before


def source_hashes(conn: sqlite3.Connection, source: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT hash FROM source_rows WHERE source=?", (source,))]


def shared_rows(conn: sqlite3.Connection, hashes) -> dict[str, int]:
    """For each source, how many of ``hashes`` (signed 64-bit) it holds."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS probe (hash INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM probe")
    conn.executemany("INSERT OR IGNORE INTO probe VALUES (?)", ((int(h),) for h in hashes))
    rows = conn.execute("SELECT r.source, COUNT(*) FROM source_rows r JOIN probe p ON r.hash = p.hash "
                        "GROUP BY r.source").fetchall()
    conn.execute("DELETE FROM probe")
    return {r[0]: int(r[1]) for r in rows}


def count_rows(conn: sqlite3.Connection, source: str) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM source_rows WHERE source=?", (source,)).fetchone()[0])


def add_sample(conn: sqlite3.Connection, source: str, fingerprint: str, columns, n_rows: int, blob: bytes) -> None:
    conn.execute("INSERT OR REPLACE INTO source_samples VALUES (?, ?, ?, ?, ?)",
                 (source, fingerprint, json.dumps(list(columns)), int(n_rows), blob))


def samples(conn: sqlite3.Connection) -> list[tuple[str, str, list[str], int, bytes]]:
    return [(r[0], r[1], json.loads(r[2]), int(r[3]), bytes(r[4]))
            for r in conn.execute("SELECT source, fingerprint, columns, n_rows, sample FROM source_samples")]


# --- what verification reads (the logic is in privtrain.ledger.integrity) ---------------------


def integrity_check(conn: sqlite3.Connection, *, full: bool = True) -> str:
    """SQLite's own check of the file: ``integrity_check`` (every page), or the faster ``quick_check``."""
    return str(conn.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}").fetchone()[0])


def chain_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every entry's chained columns, its hash and its MAC, in id order."""
    return [dict(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)}, hash, mac FROM entries ORDER BY id")]


def head_record(conn: sqlite3.Connection) -> tuple[int, str | None]:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return int(meta.get("head_id", -1)), meta.get("head_hash")


def sources_with_rows(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT source FROM source_rows")}
