"""What both SQL backends share: URL helpers and the SQL of every entry, sketch and derived-data query.

Statements are written once with ``?`` placeholders; a backend whose driver wants another style
rewrites them (:meth:`SqlBackend._sql`). Dialect-specific parts (connecting, the write lock, the
schema, best-effort writes, the storage engine's own check) live in :mod:`.sqlite` and :mod:`.postgres`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from privtrain.errors import UserError
from privtrain.ledger.store import COLUMNS

URL_SCHEMES = ("postgresql://", "postgres://")
RUN_STATUSES = ("reserved", "committed", "failed")
# every chained column, the hash and the MAC; "user" is quoted: it is a reserved word in PostgreSQL
_NAMES = COLUMNS + ("hash", "mac")
_QUOTED = ", ".join(f'"{n}"' if n == "user" else n for n in _NAMES)


def is_url(location: object) -> bool:
    """True for a PostgreSQL URL (``postgresql://…`` or ``postgres://…``)."""
    return isinstance(location, str) and location.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password (in the authority or the query): what messages, run records, anchors
    and key files may show."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"]
    netloc = parts.netloc
    if parts.password is not None:
        netloc = (parts.username or "") + "@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/:@,"), parts.fragment))


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/privtrain`` (default ``~/.local/share/privtrain``): per-user state outside the ledger."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "privtrain"


def url_file_name(url: str, suffix: str) -> str:
    """A file name for per-URL state: the URL without its password, made safe, plus a short digest."""
    import hashlib
    import re

    shown = redact(url)
    stem = re.sub(r"[^A-Za-z0-9@._-]+", "-", shown.split("://", 1)[-1]).strip("-")[:80]
    return f"postgresql-{stem}-{hashlib.sha256(shown.encode()).hexdigest()[:8]}{suffix}"


def require_driver() -> Any:
    """psycopg (3), or one clear line saying how to install it."""
    try:
        import psycopg
    except ImportError:
        raise UserError(
            "a PostgreSQL ledger needs the psycopg driver: pip install 'privtrain[postgres]' "
            "(or point PRIVTRAIN_LEDGER / ledger.path= at an SQLite file)."
        ) from None
    return psycopg


def _where(**filters: Any) -> tuple[str, list]:
    clauses, args = [], []
    for column, value in filters.items():
        if value is None:
            continue
        if column == "statuses":
            values = list(value)
            clauses.append(f"status IN ({', '.join('?' * len(values))})")
            args.extend(values)
        elif column == "after":
            if value:
                clauses.append("id > ?")
                args.append(int(value))
        else:
            clauses.append(f"{'dataset_fingerprint' if column == 'fingerprint' else column} = ?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class SqlBackend:
    """The shared queries. Subclasses provide ``_all``, ``_one``, ``_exec``, ``_many`` and ``_best_effort``."""

    kind = "sql"
    placeholder = "?"

    def role(self) -> str | None:
        """The database role this connection writes as (None: a file has no roles; see PostgresBackend)."""
        return None

    # --- driver hooks -----------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _all(self, sql: str, args: Iterable = ()) -> list[dict]:
        raise NotImplementedError

    def _one(self, sql: str, args: Iterable = ()) -> dict | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _exec(self, sql: str, args: Iterable = ()) -> None:
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable) -> None:
        raise NotImplementedError

    def _best_effort(self, sql: str, args: Iterable = ()) -> None:
        """Write derived data without waiting for a writer; silently skipped when it would wait."""
        raise NotImplementedError

    # --- the chain ------------------------------------------------------------------------
    def last_entry(self) -> tuple[int, str] | None:
        row = self._one("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1")
        return None if row is None else (int(row["id"]), row["hash"])

    def insert_entries(self, rows: list[dict]) -> None:
        if not rows:
            return
        self._many(
            f"INSERT INTO entries ({_QUOTED}) VALUES ({', '.join('?' * len(_NAMES))})",
            ([r[k] for k in _NAMES] for r in rows),
        )
        self._exec("UPDATE meta SET value = ? WHERE key = 'head_id'", (str(rows[-1]["id"]),))
        self._exec("UPDATE meta SET value = ? WHERE key = 'head_hash'", (rows[-1]["hash"],))

    def head_record(self) -> tuple[int, str | None]:
        meta = {
            r["key"]: r["value"] for r in self._all("SELECT key, value FROM meta WHERE key IN ('head_id', 'head_hash')")
        }
        return int(meta.get("head_id", -1)), meta.get("head_hash")

    def chain_rows(self, first_id: int = 1) -> list[dict]:
        return self._all(f"SELECT {_QUOTED} FROM entries WHERE id >= ? ORDER BY id", (int(first_id),))

    def entry_at(self, entry_id: int) -> dict | None:
        return self._one(f"SELECT {_QUOTED} FROM entries WHERE id = ?", (int(entry_id),))

    # --- entries ------------------------------------------------------------------------------
    def entries(self, *, source=None, unit=None, scope=None, statuses=None, fingerprint=None, after=0) -> list[dict]:
        where, args = _where(
            source=source, unit=unit, scope=scope, statuses=statuses, fingerprint=fingerprint, after=after
        )
        return self._all(f"SELECT * FROM entries{where} ORDER BY id", args)

    def latest(
        self, *, source=None, unit=None, scope=None, statuses=None, fingerprint=None, present=None
    ) -> dict | None:
        where, args = _where(source=source, unit=unit, scope=scope, statuses=statuses, fingerprint=fingerprint)
        if present is not None:
            if present not in COLUMNS:
                raise ValueError(f"unknown column {present!r}")
            where += (" AND " if where else " WHERE ") + f"{present} IS NOT NULL"
        return self._one(f"SELECT * FROM entries{where} ORDER BY id DESC LIMIT 1", args)

    def source_names(self) -> list[tuple[str, str | None, str | None]]:
        rows = self._all("SELECT DISTINCT source, source_name, dataset_fingerprint FROM entries")
        return [(r["source"], r["source_name"], r["dataset_fingerprint"]) for r in rows]

    def budget_keys(self, exclude: Iterable[str]) -> list[tuple[str, str, str, int]]:
        exclude = list(exclude)
        rows = self._all(
            "SELECT source, unit, scope, MIN(id) AS first FROM entries WHERE status NOT IN "
            f"({', '.join('?' * len(exclude))}) GROUP BY source, unit, scope",
            exclude,
        )
        return [(r["source"], r["unit"], r["scope"], int(r["first"])) for r in rows]

    # --- source sketches (noisy, see privtrain.ledger.sketch) ---------------------------------------
    def add_sketch(self, source: str, fingerprint: str, layout: str, blob: bytes) -> None:
        self._exec(
            "INSERT INTO source_sketches (source, fingerprint, layout, sketch) VALUES (?, ?, ?, ?)",
            (source, fingerprint, layout, bytes(blob)),
        )

    def sketches(self) -> list[tuple[str, str, str, bytes]]:
        """(source, fingerprint, layout, sketch) of every registered table."""
        if not self.has_sketches():
            return []
        return [
            (r["source"], r["fingerprint"], r["layout"], bytes(r["sketch"]))
            for r in self._all(
                "SELECT source, fingerprint, layout, sketch FROM source_sketches ORDER BY source, fingerprint"
            )
        ]

    def sketch_keys(self) -> set[tuple[str, str]]:
        """(source, fingerprint) of every registered table (no bits read)."""
        if not self.has_sketches():
            return set()
        return {(r["source"], r["fingerprint"]) for r in self._all("SELECT source, fingerprint FROM source_sketches")}

    def source_sketches(self, source: str) -> list[tuple[str, str, bytes]]:
        """(fingerprint, layout, sketch) of the tables registered under ``source``."""
        if not self.has_sketches():
            return []
        return [
            (r["fingerprint"], r["layout"], bytes(r["sketch"]))
            for r in self._all(
                "SELECT fingerprint, layout, sketch FROM source_sketches WHERE source = ? ORDER BY fingerprint",
                (source,),
            )
        ]

    def sources_with_rows(self) -> set[str]:
        if not self.has_sketches():
            return set()
        return {r["source"] for r in self._all("SELECT DISTINCT source FROM source_sketches")}

    def has_sketches(self) -> bool:
        raise NotImplementedError

    # --- derived data: the multiset cache and the stored PLD totals ---------------------------
    def cache_get(self, key: str) -> float | None:
        row = self._one("SELECT value FROM cache WHERE key = ?", (key,))
        return None if row is None else float(row["value"])

    def cache_put(self, key, fingerprint, unit, delta, accountant, value) -> None:
        import time

        self._best_effort(
            "INSERT INTO cache (key, fingerprint, unit, delta, accountant, value, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, fingerprint, unit, delta, accountant, value, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        )

    def totals(self, source: str, unit: str, scope: str, discretization: float) -> Iterator[dict]:
        key = (source, unit, scope, float(discretization))
        rows = self._all(
            "SELECT upto, runs, digest, epsilons FROM pld_totals WHERE source = ? AND unit = ? AND "
            "scope = ? AND discretization = ? ORDER BY upto DESC",
            key,
        )
        for row in rows:
            upto = int(row["upto"])
            yield {**row, "upto": upto, "load": lambda upto=upto: self._load_total(key, upto)}

    def _load_total(self, key: tuple, upto: int) -> bytes | None:
        row = self._one(
            "SELECT pld FROM pld_totals WHERE source = ? AND unit = ? AND scope = ? AND "
            "discretization = ? AND upto = ?",
            (*key, upto),
        )
        return None if row is None else bytes(row["pld"])

    def put_total(self, source, unit, scope, discretization, upto, runs, digest, epsilons, pld, keep=4) -> None:
        import time

        key = (source, unit, scope, float(discretization))
        self._best_effort(
            "INSERT INTO pld_totals (source, unit, scope, discretization, upto, runs, digest, epsilons, "
            "pld, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                *key,
                int(upto),
                int(runs),
                digest,
                epsilons,
                bytes(pld),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            ),
        )
        self._best_effort(
            "DELETE FROM pld_totals WHERE source = ? AND unit = ? AND scope = ? AND discretization = ? "
            "AND upto NOT IN (SELECT upto FROM pld_totals WHERE source = ? AND unit = ? AND scope = ? "
            "AND discretization = ? ORDER BY upto DESC LIMIT ?)",
            (*key, *key, int(keep)),
        )

    def update_total_epsilons(self, source, unit, scope, discretization, upto, epsilons) -> None:
        self._best_effort(
            "UPDATE pld_totals SET epsilons = ? WHERE source = ? AND unit = ? AND scope = ? AND "
            "discretization = ? AND upto = ?",
            (epsilons, source, unit, scope, float(discretization), int(upto)),
        )
