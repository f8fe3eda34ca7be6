"""The PostgreSQL backend: one ledger shared by a team or a cluster (``postgresql://user@host/db``).

Writers are serialised by a transaction that first takes ``pg_advisory_xact_lock`` on one ledger-wide
key (the hash chain is one sequence, so appends are serialised, as SQLite's ``BEGIN IMMEDIATE`` does on
one machine). The transaction runs at READ COMMITTED, so every statement after the lock sees what the
previous writer committed: plan and reserve are atomic across machines. Readers never take the lock.

The tables live in the connection's current schema (``?options=-csearch_path%3Dprivtrain`` picks one).
Triggers refuse UPDATE, DELETE and TRUNCATE of entries and of sketches, as SQLite's do;
database roles decide who may write at all (see docs/ledger.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from privtrain.errors import UserError
from privtrain.ledger.backends.base import SqlBackend, redact, require_driver
from privtrain.ledger.store import GENESIS, SCHEMA_VERSION

LOCK_CLASS = 0x50525654  # "PRVT": with the schema's hash, the ledger-wide advisory lock key
BEST_EFFORT_LOCK_TIMEOUT = "50ms"
CONNECT_TIMEOUT_S = 10

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE entries (
        id BIGINT PRIMARY KEY, ref BIGINT, status TEXT NOT NULL,
        run_id TEXT, time TEXT NOT NULL, "user" TEXT, version TEXT, git_commit TEXT, recipe TEXT, config_hash TEXT,
        source TEXT NOT NULL, source_name TEXT, scope TEXT NOT NULL DEFAULT '', scope_label TEXT,
        unit TEXT NOT NULL, dataset_fingerprint TEXT, parent TEXT,
        events TEXT NOT NULL, rdp TEXT, epsilon DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL,
        artifacts TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        mac TEXT)""",
    "CREATE INDEX entries_by_source ON entries (source, unit, scope, id)",
    "CREATE INDEX entries_by_fingerprint ON entries (dataset_fingerprint)",
    """CREATE TABLE cache (key TEXT PRIMARY KEY, fingerprint TEXT, unit TEXT, delta DOUBLE PRECISION,
        accountant TEXT, value DOUBLE PRECISION NOT NULL, created TEXT NOT NULL)""",
    """CREATE TABLE pld_totals (source TEXT NOT NULL, unit TEXT NOT NULL, scope TEXT NOT NULL,
        discretization DOUBLE PRECISION NOT NULL, upto BIGINT NOT NULL, runs BIGINT NOT NULL, digest TEXT NOT NULL,
        epsilons TEXT NOT NULL, pld BYTEA NOT NULL, created TEXT NOT NULL,
        PRIMARY KEY (source, unit, scope, discretization, upto))""",
    # Append-only: stops accidents (and any role that was granted too much). A deliberate edit by the
    # database owner is caught by the hash chain.
    """CREATE OR REPLACE FUNCTION privtrain_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'privtrain ledger % are append-only', TG_ARGV[0]; END $$""",
    "CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries "
    "FOR EACH ROW EXECUTE FUNCTION privtrain_append_only('entries')",
    "CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION privtrain_append_only('entries')",
]
# Noisy sketches of registered tables (privtrain.ledger.sketch): what the ledger knows of their rows.
_SKETCHES = [
    """CREATE TABLE source_sketches (source TEXT NOT NULL, fingerprint TEXT NOT NULL, layout TEXT NOT NULL,
        sketch BYTEA NOT NULL, PRIMARY KEY (source, fingerprint))""",
    "CREATE TRIGGER source_sketches_append_only BEFORE UPDATE OR DELETE ON source_sketches "
    "FOR EACH ROW EXECUTE FUNCTION privtrain_append_only('sketches')",
    "CREATE TRIGGER source_sketches_no_truncate BEFORE TRUNCATE ON source_sketches "
    "FOR EACH STATEMENT EXECUTE FUNCTION privtrain_append_only('sketches')",
]
# Before sketches, the ledger kept keyed hashes of every row and per-cell hashes of a sample: invertible by
# anyone holding the row key. The owner's first open deletes them (their sources must be registered again).
_LEGACY = ("source_rows", "source_samples")
_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))"


def connect(url: str, *, create: bool = True) -> PostgresBackend:
    """Connect to the ledger at ``url``, creating its tables in an empty database (or schema) if ``create``.

    Raises:
        UserError: psycopg is missing, the server cannot be reached, the database holds other tables, or its
            ledger is newer than this privtrain, or there is no ledger and ``create`` is False.
    """
    psycopg = require_driver()
    from psycopg.rows import dict_row

    shown = redact(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="privtrain-ledger",
        )
    except psycopg.Error as exc:
        raise UserError(
            f"cannot connect to the PostgreSQL ledger {shown}: {_first_line(exc)}; check the URL, the "
            "server, and the role's password (PGPASSWORD or ~/.pgpass)."
        ) from None
    backend = PostgresBackend(conn, shown)
    try:
        backend.prepare(create)
    except BaseException:
        conn.close()
        raise
    return backend


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresBackend(SqlBackend):
    """A ledger in a PostgreSQL database. ``conn`` is a psycopg connection in autocommit mode."""

    kind = "postgresql"
    placeholder = "%s"

    def __init__(self, conn, location: str) -> None:
        self.conn = conn
        self.location = location
        self.read_only = False
        self._writing = False
        self._sketch_table = False

    def close(self) -> None:
        self.conn.close()

    def role(self) -> str | None:
        """``current_user``: the role the server authenticated (what its grants apply to), not a name the
        client chose to print."""
        row = self._one("SELECT current_user AS role")
        return None if row is None else row["role"]

    # --- the schema ---
    def prepare(self, create: bool) -> None:
        present = self._present_tables()
        if "meta" not in present:
            if not create:
                raise UserError(
                    f"no ledger at {self.location}; nothing was created. The first run (or `privtrain "
                    "ledger budget set`) creates it; point PRIVTRAIN_LEDGER or --path at an existing ledger."
                )
            self._create()
            present = self._present_tables()
        meta = {r["key"]: r["value"] for r in self._all("SELECT key, value FROM meta")}
        if meta.get("app") != "privtrain-ledger":
            raise UserError(
                f"{self.location} is not a usable privtrain ledger (a foreign database with a table "
                "named meta); nothing was changed: use a dedicated database or schema."
            )
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise UserError(
                f"the ledger {self.location} has schema version {version}, newer than this privtrain "
                f"supports ({SCHEMA_VERSION}); upgrade privtrain to read it. Nothing was changed."
            )
        row = self._one("SELECT has_table_privilege('entries', 'INSERT') AS w")
        if row is None:  # a SELECT of a function returns one row
            raise RuntimeError(f"{self.location}: has_table_privilege returned no row")
        self.read_only = not row["w"]
        if "source_sketches" not in present or present & set(_LEGACY):
            self._upgrade_rows(present)
        self._sketch_table = "source_sketches" in self._present_tables()

    def _upgrade_rows(self, present: set[str]) -> None:
        """A ledger from before sketches: create their table and drop the invertible row hashes and samples,
        when this role owns the schema (other roles go on; registering needs the table)."""
        owner = self._one(
            "SELECT pg_get_userbyid(nspowner) = current_user AS own FROM pg_namespace WHERE nspname = current_schema()"
        )
        if not owner or not owner["own"]:
            return
        with self.write():
            if "source_sketches" not in present:
                for statement in _SKETCHES:
                    self.conn.execute(statement)
            for table in _LEGACY:
                self.conn.execute(f"DROP TABLE IF EXISTS {table}")

    def _present_tables(self) -> set[str]:
        rows = self._all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r["tablename"] for r in rows}

    def _create(self) -> None:
        with self.write():
            present = self._present_tables()
            if "meta" in present:
                return  # another process created it while we waited for the lock
            if present:
                raise UserError(
                    f"{self.location} is not a usable privtrain ledger (a foreign database with tables "
                    f"{', '.join(sorted(present)[:5])}); nothing was changed: use a dedicated database, "
                    "or a schema of its own (?options=-csearch_path%3Dprivtrain)."
                )
            for statement in [*_SCHEMA, *_SKETCHES]:
                self.conn.execute(statement)
            self._exec(
                "INSERT INTO meta (key, value) VALUES ('app', 'privtrain-ledger'), ('schema_version', ?), "
                "('head_id', '0'), ('head_hash', ?)",
                (str(SCHEMA_VERSION), GENESIS),
            )

    # --- driver hooks ---
    def _all(self, sql, args=()):
        return self.conn.execute(self._sql(sql), tuple(args)).fetchall()

    def _exec(self, sql, args=()):
        self.conn.execute(self._sql(sql), tuple(args))

    def _many(self, sql, rows):
        rows = [tuple(r) for r in rows]
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def _best_effort(self, sql, args=()):
        if self.read_only:
            return
        import psycopg

        try:
            with self.conn.transaction():  # a savepoint inside a write: a failure leaves the write intact
                if not self._writing:
                    self.conn.execute(f"SET LOCAL lock_timeout = '{BEST_EFFORT_LOCK_TIMEOUT}'")
                self.conn.execute(self._sql(sql), tuple(args))
        except psycopg.Error:
            pass

    # --- transactions ---
    @contextmanager
    def write(self) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self.conn.execute(_LOCK, (LOCK_CLASS,))
            self._writing = True
            try:
                yield
            finally:
                self._writing = False

    @property
    def in_write(self) -> bool:
        return self._writing

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see one state of the ledger (REPEATABLE READ): the chain and its head record read in
        two statements under READ COMMITTED could straddle another process's commit."""
        if self._writing:
            yield
            return
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    # --- dialect ---
    def insert_entries(self, rows: list[dict]) -> None:
        if len(rows) < 64:
            return super().insert_entries(rows)
        from privtrain.ledger.backends.base import _NAMES, _QUOTED

        with self.conn.cursor() as cur, cur.copy(f"COPY entries ({_QUOTED}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r[k] for k in _NAMES])
        self._exec("UPDATE meta SET value = ? WHERE key = 'head_id'", (str(rows[-1]["id"]),))
        self._exec("UPDATE meta SET value = ? WHERE key = 'head_hash'", (rows[-1]["hash"],))

    def has_sketches(self) -> bool:
        return self._sketch_table

    def integrity_check(self, full: bool = True) -> str | None:
        return None  # PostgreSQL checks its own pages (checksums, WAL); the chain is checked above it

    def damage(self, exc: BaseException) -> str | None:
        import psycopg
        from psycopg import errors

        if isinstance(exc, (errors.DataCorrupted, errors.IndexCorrupted)):
            return (
                f"the ledger {self.location} is damaged ({_first_line(exc)}); nothing was changed: run "
                "`privtrain ledger verify`, and restore the database from a backup."
            )
        if isinstance(exc, errors.InsufficientPrivilege):
            return (
                f"the database role may not do this on the ledger {self.location} ({_first_line(exc)}); "
                "ask its owner for the right role (see docs/ledger.md, access control)"
            )
        if isinstance(exc, psycopg.OperationalError):
            return (
                f"lost the connection to the PostgreSQL ledger {self.location} ({_first_line(exc)}); what was not "
                "committed was rolled back: check the server and run the command again."
            )
        return None

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)
