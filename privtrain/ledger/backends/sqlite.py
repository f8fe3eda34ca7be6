"""The SQLite backend: one ledger file per project (WAL mode), writers serialised by ``BEGIN IMMEDIATE``.

This module never opens the database file with Python's ``open()``: closing any file descriptor on an
SQLite file drops every POSIX lock this process holds on it, including those of other live connections,
and a checkpoint can then overwrite pages a reader still uses ("How To Corrupt An SQLite Database File",
§2.2). That is what corrupted the quickstart notebook's ledger.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privtrain.errors import UserError, user_paths
from privtrain.ledger.backends.base import SqlBackend
from privtrain.ledger.store import GENESIS, SCHEMA_VERSION

APPLICATION_ID = 0x50525654  # "PRVT": marks the file as a privtrain ledger
# A writer holds the lock only to append (the filter's sums are cheap), but a reader may wait on it.
BUSY_TIMEOUT_S = 600.0
BEST_EFFORT_TIMEOUT_MS = 50

_TOTALS = """
CREATE TABLE pld_totals (
    source TEXT NOT NULL, unit TEXT NOT NULL, scope TEXT NOT NULL, discretization REAL NOT NULL,
    upto INTEGER NOT NULL, runs INTEGER NOT NULL, digest TEXT NOT NULL, epsilons TEXT NOT NULL,
    pld BLOB NOT NULL, created TEXT NOT NULL, PRIMARY KEY (source, unit, scope, discretization, upto)
);
"""

# Noisy sketches of registered tables (privtrain.ledger.sketch): what the ledger knows of their rows.
_SKETCHES = """
CREATE TABLE source_sketches (
    source TEXT NOT NULL, fingerprint TEXT NOT NULL, layout TEXT NOT NULL, sketch BLOB NOT NULL,
    PRIMARY KEY (source, fingerprint)
);
CREATE TRIGGER source_sketches_append_only_update BEFORE UPDATE ON source_sketches
BEGIN SELECT RAISE(ABORT, 'privtrain ledger sketches are append-only'); END;
CREATE TRIGGER source_sketches_append_only_delete BEFORE DELETE ON source_sketches
BEGIN SELECT RAISE(ABORT, 'privtrain ledger sketches are append-only'); END;
"""
# Before sketches, the ledger kept keyed hashes of every row and per-cell hashes of a sample: invertible by
# anyone holding the row key. A writable open deletes them (their sources must be registered again).
_LEGACY = ("source_rows", "source_samples")

_SCHEMA = (
    """
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
CREATE TABLE cache (
    key TEXT PRIMARY KEY, fingerprint TEXT, unit TEXT, delta REAL, accountant TEXT,
    value REAL NOT NULL, created TEXT NOT NULL
);
"""
    + _TOTALS
    + """
-- Append-only: stops accidents. A deliberate edit is caught by the hash chain.
CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'privtrain ledger entries are append-only'); END;
CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'privtrain ledger entries are append-only'); END;
"""
    + _SKETCHES
)


def _not_a_ledger(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a usable privtrain ledger ({why}); nothing was changed: move it aside "
        "or point PRIVTRAIN_LEDGER / ledger.path= at another file."
    )


def is_readonly_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def connect(path: Path, *, create: bool = True) -> SqliteBackend:
    """Open (creating if new and ``create``) the ledger file at ``path``.

    Raises:
        UserError: the path cannot be created, does not exist (``create=False``), is not an SQLite
            file, is a foreign, older or newer database, or is corrupt.
    """
    path = Path(path).expanduser()
    with user_paths("the ledger's path (ledger.path, PRIVTRAIN_LEDGER)"):
        is_dir, exists = path.is_dir(), path.exists()
    if is_dir:
        raise UserError(f"ledger path {path} is a directory; give a file such as {path / 'ledger.db'}.")
    if not exists:
        if not create:
            raise UserError(
                f"no ledger at {path}; nothing was created. The first run (or `privtrain ledger budget "
                "set`) creates it; point PRIVTRAIN_LEDGER or --path at an existing ledger."
            )
        _create_private(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        read_only = _prepare(conn, path)
    except sqlite3.DatabaseError as exc:
        if is_readonly_error(exc):
            return SqliteBackend(_connect_read_only(path), path, True)
        if "not a database" in str(exc):
            raise _not_a_ledger(path, "not an SQLite database: corrupt or foreign file") from None
        raise _not_a_ledger(path, str(exc)) from None
    return SqliteBackend(conn, path, read_only)


def _create_private(path: Path) -> None:
    """The ledger's folder and file, readable by their owner only (the file is still empty: safe to touch)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # FileExistsError included: a file is in the way
        raise UserError(
            f"cannot create the ledger directory {path.parent}: {exc.strerror}; "
            "set PRIVTRAIN_LEDGER or ledger.path= to a writable location."
        ) from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it meanwhile
    except OSError as exc:
        raise UserError(
            f"cannot create the ledger {path}: {exc.strerror}; "
            "set PRIVTRAIN_LEDGER or ledger.path= to a writable location."
        ) from None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A user without write access can still read a ledger (nothing can be charged)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        _check_identity(conn, path, write=False)
        return conn
    except sqlite3.DatabaseError as exc:
        raise UserError(
            f"the ledger {path} cannot be opened, even read-only ({exc}); fix its permissions or point "
            "PRIVTRAIN_LEDGER elsewhere."
        ) from None


def _prepare(conn: sqlite3.Connection, path: Path) -> bool:
    conn.row_factory = sqlite3.Row
    _check_identity(conn, path, write=False)  # before anything writes to a file that may be foreign
    read_only = False
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        read_only = mode.lower() != "wal" and not os.access(path, os.W_OK)
    except sqlite3.OperationalError as exc:
        if not is_readonly_error(exc):
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
    elif not read_only and (not _has_table(conn, "source_sketches") or any(_has_table(conn, t) for t in _LEGACY)):
        _upgrade_rows(conn)
    if not read_only and not _has_table(conn, "pld_totals"):  # a ledger from before stored PLD totals
        try:
            conn.execute(f"PRAGMA busy_timeout={BEST_EFFORT_TIMEOUT_MS}")
            conn.execute("BEGIN IMMEDIATE")
            if not _has_table(conn, "pld_totals"):
                conn.execute(_TOTALS.strip())
            conn.execute("COMMIT")
        except sqlite3.OperationalError:  # derived data only: this handle goes on without stored totals
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(1000 * BUSY_TIMEOUT_S)}")
    return read_only


def _upgrade_rows(conn: sqlite3.Connection) -> None:
    """A ledger from before sketches: create their table, delete the invertible row hashes and samples."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_table(conn, "source_sketches"):
            for statement in _split(_SKETCHES):
                conn.execute(statement)
        for table in _LEGACY:
            conn.execute(f"DROP TABLE IF EXISTS {table}")  # its triggers go with it
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


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
            conn.execute(
                "INSERT INTO meta VALUES ('app', 'privtrain-ledger'), ('head_id', '0'), ('head_hash', ?)", (GENESIS,)
            )
        return
    if app_id != APPLICATION_ID:
        raise _not_a_ledger(path, f"a foreign SQLite database with tables {', '.join(tables[:5]) or 'none'}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"the ledger {path} has schema version {version}, newer than this privtrain supports "
            f"({SCHEMA_VERSION}); upgrade privtrain to read it. Nothing was changed."
        )
    if version < SCHEMA_VERSION:
        raise UserError(
            f"the ledger {path} has schema version {version} (privtrain 0.1): its budgets were kept per file, "
            f"not per data source; run `privtrain ledger migrate --path {path}` to carry every entry over "
            "(the old file is kept as a backup). Nothing was changed."
        )


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


class SqliteBackend(SqlBackend):
    """A ledger file. ``conn`` is the sqlite3 connection (autocommit; explicit transactions)."""

    kind = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self.conn = conn
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        self.has_totals = _has_table(conn, "pld_totals")

    def close(self) -> None:
        self.conn.close()

    def totals(self, *args, **kwargs):
        return super().totals(*args, **kwargs) if self.has_totals else iter(())

    def put_total(self, *args, **kwargs) -> None:
        if self.has_totals:
            super().put_total(*args, **kwargs)

    # --- driver hooks ---
    def _all(self, sql, args=()):
        return [dict(r) for r in self.conn.execute(sql, tuple(args))]

    def _exec(self, sql, args=()):
        try:
            self.conn.execute(sql, tuple(args))
        except sqlite3.OperationalError as exc:
            if is_readonly_error(exc):
                raise UserError(f"the ledger {self.path} is read-only ({exc}); nothing was charged.") from None
            raise

    def _many(self, sql, rows):
        try:
            self.conn.executemany(sql, (tuple(r) for r in rows))
        except sqlite3.OperationalError as exc:
            if is_readonly_error(exc):
                raise UserError(f"the ledger {self.path} is read-only ({exc}); nothing was charged.") from None
            raise

    def _best_effort(self, sql, args=()):
        if self.read_only:
            return
        if self.conn.in_transaction:  # we already hold the write lock
            self.conn.execute(sql, tuple(args))
            return
        try:  # another writer may hold the lock for seconds: skip rather than wait
            self.conn.execute(f"PRAGMA busy_timeout={BEST_EFFORT_TIMEOUT_MS}")
            self.conn.execute(sql, tuple(args))
        except sqlite3.OperationalError:
            pass
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(1000 * BUSY_TIMEOUT_S)}")

    # --- transactions ---
    @contextmanager
    def write(self) -> Iterator[None]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_readonly_error(exc):
                raise UserError(f"the ledger {self.path} is read-only ({exc}); nothing was charged.") from None
            raise
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @property
    def in_write(self) -> bool:
        return self.conn.in_transaction

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see one state of the file: a read transaction (WAL) from its first read to its end."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # --- dialect ---
    def has_sketches(self) -> bool:
        return _has_table(self.conn, "source_sketches")

    def integrity_check(self, full: bool = True) -> str | None:
        """SQLite's own check of the file: ``integrity_check`` (every page), or the faster ``quick_check``."""
        return str(self.conn.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}").fetchone()[0])

    def damage(self, exc: BaseException) -> str | None:
        if not isinstance(exc, sqlite3.DatabaseError):
            return None
        if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
            return None
        return (
            f"the ledger {self.path} is damaged ({exc}); nothing was changed: run `privtrain ledger verify`, "
            "and restore it from a backup."
        )

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.DatabaseError,)


# --- privtrain 0.1 files (schema 1), for `privtrain ledger migrate` ---------------------------


def read_v1(path: Path) -> tuple[int, int, list[dict]]:
    """(application id, schema version, every entry in id order) of a ledger file, read as it is."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = [dict(r) for r in conn.execute("SELECT * FROM entries ORDER BY id")] if version == 1 else []
    finally:
        conn.close()
    return app_id, version, rows


def backup_and_remove(path: Path, backup: Path) -> None:
    """Copy the file to ``backup`` with SQLite's online backup, then remove it (and its WAL files)."""
    src = sqlite3.connect(path)
    dst = sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
