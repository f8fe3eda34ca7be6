"""`privtrain ledger migrate`: carry a privtrain 0.1 ledger (budgets per file) over to per-source budgets.

The old file is verified first (a tampered chain is not carried over), kept as ``<file>.v1-backup``,
and replayed entry by entry into a new chain whose first entry records the old head hash. Entries
on a built-in dataset's content move to its source (``digits``, ...); other tables keep their content
fingerprint as their source key. Federated entries of 0.1 were keyed by content *and* partitioning:
they stay under that key, as their own source (0.1 did not charge them to the table's source).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from privtrain.errors import UserError

V1_COLUMNS = (
    "id",
    "ref",
    "status",
    "run_id",
    "time",
    "user",
    "version",
    "git_commit",
    "recipe",
    "config_hash",
    "dataset_fingerprint",
    "dataset_name",
    "unit",
    "parent_fingerprint",
    "events",
    "epsilon",
    "delta",
    "artifacts",
    "prev_hash",
)


def _v1_hash(row: dict) -> str:
    text = json.dumps({k: row[k] for k in V1_COLUMNS}, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256((row["prev_hash"] + text).encode()).hexdigest()


def _builtin_fingerprints() -> dict[str, str]:
    from privtrain import data
    from privtrain.data.builtin import BUILTIN

    return {data.load(data.DatasetSpec(loader=name)).fingerprint: name for name in BUILTIN}


def migrate(path: Path | str) -> str:
    """Migrate the SQLite ledger at ``path`` in place (keeping a backup); returns one line saying what was done."""
    from privtrain.ledger import backends, store
    from privtrain.ledger.backends import sqlite

    if backends.is_url(str(path)):
        raise UserError(
            f"{backends.redact(str(path))} is a PostgreSQL ledger: `ledger migrate` carries privtrain 0.1 "
            "SQLite files over, and PostgreSQL ledgers began after 0.1. Nothing to migrate."
        )
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no ledger at {path}; nothing to migrate.")
    app_id, version, rows = sqlite.read_v1(path)
    if app_id != sqlite.APPLICATION_ID:
        raise UserError(f"{path} is not a privtrain ledger; nothing was changed.")
    if version == store.SCHEMA_VERSION:
        return f"{path} is already at schema version {version}: nothing to migrate."
    if version != 1:
        raise UserError(f"{path} has schema version {version}; this privtrain migrates version 1 only.")
    prev = store.GENESIS
    for r in rows:
        if r["prev_hash"] != prev or _v1_hash(r) != r["hash"]:
            raise UserError(
                f"{path} fails verification at entry {r['id']}: a tampered ledger is not migrated; "
                "restore it from a backup first. Nothing was changed."
            )
        prev = r["hash"]
    backup = path.with_name(path.name + ".v1-backup")
    if backup.exists():
        raise UserError(f"{backup} exists; move it aside before migrating again. Nothing was changed.")
    sqlite.backup_and_remove(path, backup)
    _replay(path, rows, prev, backup)
    return (
        f"migrated {len(rows)} entries of {path} to per-source budgets (schema {store.SCHEMA_VERSION}); "
        f"the old file is kept as {backup}"
    )


def _replay(path: Path, rows: list[dict], old_head: str, backup: Path) -> None:
    from privtrain import ledger
    from privtrain.ledger import filter as rdp_filter

    builtin = _builtin_fingerprints()
    book = ledger.open(path)
    ids: dict[int, int] = {}
    with book.core.transaction():
        book.core.append(
            status="migrated",
            source="ledger",
            unit="example",
            epsilon=0.0,
            delta=0.0,
            detail=json.dumps({"from_schema": 1, "old_head": old_head, "entries": len(rows), "backup": backup.name}),
        )
        for r in rows:
            source = builtin.get(r["dataset_fingerprint"], r["dataset_fingerprint"])
            parent = r["parent_fingerprint"]
            curve = None
            if r["status"] in ("reserved", "committed", "failed"):
                curve = json.dumps([x if x != float("inf") else "inf" for x in rdp_filter.rdp_curve(r["events"])])
            detail: dict[str, dict | list[float]] = {
                "migrated": {k: r[k] for k in ("id", "hash", "time", "user", "version", "git_commit")}
            }
            if r["status"] == "budget":
                detail["orders"] = list(rdp_filter.ORDERS)
            entry = book.core.append(
                status=r["status"],
                ref=ids.get(r["ref"]) if r["ref"] else None,
                run_id=r["run_id"],
                recipe=r["recipe"],
                config_hash=r["config_hash"],
                source=source,
                source_name=r["dataset_name"],
                unit=r["unit"],
                dataset_fingerprint=r["dataset_fingerprint"],
                parent=builtin.get(parent, parent) if parent else None,
                events=r["events"],
                rdp=curve,
                epsilon=r["epsilon"],
                delta=r["delta"],
                artifacts=r["artifacts"],
                detail=json.dumps(detail),
            )
            ids[r["id"]] = entry.id
    book.close()
