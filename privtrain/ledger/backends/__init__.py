"""Where the ledger is stored: the storage seam, and the backends behind it.

Chain logic (:mod:`privtrain.ledger.store`), composition (:mod:`privtrain.ledger.compose`) and the
admission filter never see SQL; they call a :class:`Backend`. Two backends implement it:

- :mod:`.sqlite`: one file per project (the default): ``.privtrain/ledger.db``;
- :mod:`.postgres`: one database shared by a team or a cluster: ``postgresql://user@host/db``.

Every SQL statement lives in this folder. A write transaction serialises writers (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction holding a ledger-wide ``pg_advisory_xact_lock``): the hash
chain is one sequence, so appends are serialised, and admission (plan + reserve) is atomic across
processes and machines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from privtrain.ledger.backends.base import is_url, redact, require_driver, url_file_name, user_data_dir


class Backend(Protocol):
    """What the ledger needs from its storage. Rows are plain dicts keyed by column name."""

    kind: str  # "sqlite" or "postgresql"
    location: str  # the file's path, or the URL without its password
    read_only: bool
    conn: Any  # the driver's connection (tests and maintenance only)

    def close(self) -> None: ...

    def role(self) -> str | None:
        """The database role the server authenticated (PostgreSQL's ``current_user``); None for a file."""

    # --- transactions ---
    def write(self) -> AbstractContextManager[None]:
        """One write transaction that serialises every writer of this ledger; rolled back on error."""

    @property
    def in_write(self) -> bool: ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside see one committed state (no-op inside ``write``)."""
        ...

    # --- the chain (see privtrain.ledger.store for the hashing) ---
    def last_entry(self) -> tuple[int, str] | None:
        """(id, hash) of the newest entry, or None when empty."""

    def insert_entries(self, rows: list[dict]) -> None:
        """Insert chained rows (every column, ``hash`` and ``mac``) and move the head record. In a write."""

    def head_record(self) -> tuple[int, str | None]: ...

    def chain_rows(self, first_id: int = 1) -> list[dict]:
        """Every entry with id ≥ ``first_id``: its chained columns, hash and MAC, in id order."""

    def entry_at(self, entry_id: int) -> dict | None: ...

    # --- the entries the Ledger reads ---
    def entries(
        self,
        *,
        source: str | None = None,
        unit: str | None = None,
        scope: str | None = None,
        statuses: Iterable[str] | None = None,
        fingerprint: str | None = None,
        after: int = 0,
    ) -> list[dict]:
        """Every entry matching, in id order (``after``: only ids above it)."""

    def latest(
        self,
        *,
        source: str | None = None,
        unit: str | None = None,
        scope: str | None = None,
        statuses: Iterable[str] | None = None,
        fingerprint: str | None = None,
        present: str | None = None,
    ) -> dict | None:
        """The newest entry matching, where column ``present`` (if given) is not null."""

    def source_names(self) -> list[tuple[str, str | None, str | None]]:
        """Distinct (source, source_name, dataset_fingerprint)."""

    def budget_keys(self, exclude: Iterable[str]) -> list[tuple[str, str, str, int]]:
        """(source, unit, scope, first entry id) of every key with an entry whose status is not excluded."""

    # --- source sketches (noisy bit arrays of registered tables, see privtrain.ledger.sketch) ---
    def add_sketch(self, source: str, fingerprint: str, layout: str, blob: bytes) -> None: ...
    def sketches(self) -> list[tuple[str, str, str, bytes]]:
        """(source, fingerprint, layout, sketch) of every registered table."""

    def sketch_keys(self) -> set[tuple[str, str]]:
        """(source, fingerprint) of every registered table (no bits read)."""

    def source_sketches(self, source: str) -> list[tuple[str, str, bytes]]:
        """(fingerprint, layout, sketch) of the tables registered under ``source``."""

    def sources_with_rows(self) -> set[str]: ...
    def has_sketches(self) -> bool: ...

    # --- derived data, never chained nor read for admission (best effort: never waits for a writer) ---
    def cache_get(self, key: str) -> float | None: ...
    def cache_put(
        self, key: str, fingerprint: str | None, unit: str | None, delta: float, accountant: str, value: float
    ) -> None: ...
    def totals(self, source: str, unit: str, scope: str, discretization: float) -> Iterator[dict]:
        """Stored PLD totals of one key, newest chain position first; each dict has upto, runs, digest,
        epsilons (JSON text) and a ``load()`` returning the serialised PLD."""

    def put_total(
        self,
        source: str,
        unit: str,
        scope: str,
        discretization: float,
        upto: int,
        runs: int,
        digest: str,
        epsilons: str,
        pld: bytes,
        keep: int,
    ) -> None: ...

    def update_total_epsilons(
        self, source: str, unit: str, scope: str, discretization: float, upto: int, epsilons: str
    ) -> None: ...

    # --- verification ---
    def integrity_check(self, full: bool = True) -> str | None:
        """The storage engine's own check ("ok" or what is wrong), or None when it has none."""

    def damage(self, exc: BaseException) -> str | None:
        """One line when ``exc`` (raised by this backend) means the ledger is damaged or unreachable, else None."""

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exception classes (what :meth:`damage` is asked about)."""


def open_backend(location: str | os.PathLike, *, create: bool = True) -> Backend:
    """The backend for a path (SQLite) or a ``postgresql://`` URL.

    Raises:
        UserError: as the backend's ``connect`` does (missing, foreign, corrupt, unreachable, …).
    """
    if is_url(location):
        from privtrain.ledger.backends import postgres

        return postgres.connect(str(location), create=create)
    from privtrain.ledger.backends import sqlite

    return sqlite.connect(Path(location), create=create)


__all__ = ["Backend", "is_url", "open_backend", "redact", "require_driver", "url_file_name", "user_data_dir"]
