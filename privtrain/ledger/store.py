"""The append-only hash chain: what an entry is, how it is hashed and how it is appended.

Every privacy-relevant fact (reservations, commits, failures, budgets, lineage, the rows a source is
known by) is one entry. Entry ``i`` stores ``prev_hash`` (entry ``i-1``'s hash) and
``hash = sha256(prev_hash + canonical JSON of the entry)``, so an edited, deleted, inserted or reordered
entry breaks the chain there. The backend also keeps a head record (id and hash of the newest entry),
which catches a deleted tail.

Two kinds of data are too big to chain entry by entry and are anchored by the chain instead: each
source's keyed row hashes (every ``rows`` entry records their set digest) and per-table samples of
keyed cell hashes. Derived data (PLD compositions for display) is never chained, never read for admission.

Storage is a :class:`privtrain.ledger.backends.Backend` (SQLite or PostgreSQL); no SQL lives here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from privtrain.ledger.model import Entry

SCHEMA_VERSION = 2
GENESIS = "0" * 64

COLUMNS = (
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
    "source",
    "source_name",
    "scope",
    "scope_label",
    "unit",
    "dataset_fingerprint",
    "parent",
    "events",
    "rdp",
    "epsilon",
    "delta",
    "artifacts",
    "detail",
    "prev_hash",
)


_SORTED = tuple(sorted(COLUMNS))
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode


def canonical(row: dict[str, Any]) -> str:
    """The chained columns as JSON, keys sorted, no spaces (the dict is built in sorted order)."""
    return _ENCODE({k: row[k] for k in _SORTED})


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256((row["prev_hash"] + canonical(row)).encode()).hexdigest()


def chain(fields: Iterable[dict[str, Any]], head: tuple[int, str] | None, sign=None) -> list[dict]:
    """Chained rows for ``fields`` after ``head`` ((id, hash) of the newest entry, None when empty).

    ``sign(hash) -> str`` (with a ledger key) adds each row's MAC.
    """
    last_id, last_hash = head if head is not None else (0, GENESIS)
    out = []
    for f in fields:
        row: dict[str, Any] = {k: f.get(k) for k in COLUMNS}
        row["scope"] = row["scope"] or ""
        row["detail"] = row["detail"] or "{}"
        row["id"], row["prev_hash"] = last_id + 1, last_hash
        row["hash"] = entry_hash(row)
        row["mac"] = sign(row["hash"]) if sign is not None else None
        out.append(row)
        last_id, last_hash = row["id"], row["hash"]
    return out


def append(backend, fields: dict[str, Any], sign=None) -> Entry:
    """Append one chained entry. Call inside ``backend.write()``."""
    (row,) = chain([fields], backend.last_entry(), sign)
    backend.insert_entries([row])
    return to_entry(row)


def append_many(backend, fields: Iterable[dict[str, Any]], sign=None) -> int:
    """Append many chained entries at once (bulk loads for tests and benchmarks). Call inside ``backend.write()``."""
    rows = chain(fields, backend.last_entry(), sign)
    backend.insert_entries(rows)
    return len(rows)


def to_entry(row: Any) -> Entry:
    r = row if isinstance(row, dict) else dict(row)
    return Entry(
        id=r["id"],
        ref=r["ref"],
        status=r["status"],
        run_id=r["run_id"],
        time=r["time"],
        user=r["user"],
        version=r["version"],
        git_commit=r["git_commit"],
        recipe=r["recipe"],
        config_hash=r["config_hash"],
        source=r["source"],
        source_name=r["source_name"],
        scope=r["scope"] or "",
        scope_label=r["scope_label"],
        unit=r["unit"],
        dataset_fingerprint=r["dataset_fingerprint"],
        parent=r["parent"],
        events_json=r["events"],
        rdp_json=r["rdp"],
        epsilon=r["epsilon"],
        delta=r["delta"],
        artifacts_json=r["artifacts"],
        detail_json=r["detail"],
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )
