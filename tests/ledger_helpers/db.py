"""Direct database access for tests that play an attacker or an administrator, on either backend.

``location`` is an SQLite file or a ``postgresql://`` URL. Statements use ``?`` placeholders.
"""

from __future__ import annotations

from pathlib import Path

from privtrain.ledger.backends import is_url


def is_pg(location) -> bool:
    return is_url(str(location))


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def query(location, sql: str, params: tuple = ()) -> list[dict]:
    if is_pg(location):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(str(location), autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(_pg(sql), params).fetchall()
    import sqlite3

    conn = sqlite3.connect(Path(location))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def execute(location, *statements, params: tuple = ()) -> None:
    """Run statements as the database owner, the append-only triggers left in place."""
    if is_pg(location):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            for sql in statements:
                conn.execute(_pg(sql), params or None)
        return
    import sqlite3

    conn = sqlite3.connect(Path(location), isolation_level=None)
    try:
        for sql in statements:
            conn.execute(sql, params)
    finally:
        conn.close()


def tamper(location, *statements, params: tuple = ()) -> None:
    """An attacker with write access: switch the append-only triggers off, then edit rows directly."""
    if is_pg(location):
        execute(
            location, "ALTER TABLE entries DISABLE TRIGGER USER", "ALTER TABLE source_sketches DISABLE TRIGGER USER"
        )
    else:
        execute(
            location,
            "DROP TRIGGER IF EXISTS entries_append_only_update",
            "DROP TRIGGER IF EXISTS entries_append_only_delete",
            "DROP TRIGGER IF EXISTS source_sketches_append_only_update",
            "DROP TRIGGER IF EXISTS source_sketches_append_only_delete",
        )
    for sql in statements:
        execute(location, sql, params=params)


def rows_of(location, sql: str, params: tuple = ()) -> list[tuple]:
    return [tuple(r.values()) for r in query(location, sql, params)]
