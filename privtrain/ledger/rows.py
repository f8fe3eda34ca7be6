"""The rows a source is known by: noisy sketches, the ledger's row key, and finding overlap (a recorded act).

The ledger never stores raw values, nor anything that reveals a row. Per registered table it stores a
noisy sketch of column-group codes (:mod:`privtrain.ledger.overlap`, :mod:`privtrain.ledger.sketch`):
one row's presence changes what is stored by a likelihood factor of at most ``e^EPS_S``, even for a reader
who holds every key. The codes are keyed with a secret *row key* that lives outside the ledger:
``PRIVTRAIN_ROW_KEY`` (hex), else ``<ledger>.rowkey`` beside an SQLite ledger, or for a PostgreSQL ledger a
key file in the user's data folder named after the database URL (without its password); either is created
on first use, readable by its owner only. The key's id is chained in every ``rows`` entry, so a lost or
swapped key is refused rather than silently breaking the links.

**Every comparison with a registered table is recorded** before its result is used: a ``rows`` entry with
``detail.probe`` (the table's fingerprint, the sources compared, those linked). A read-only handle cannot
record, so it compares with the built-in datasets only (public: known in full, never registered).

The functions here take the ledger's core (:class:`privtrain.ledger.core.Core`): its backend, its
``append`` and ``transaction``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from privtrain.errors import UserError
from privtrain.ledger import backends
from privtrain.ledger.model import Link

KEY_ENV = "PRIVTRAIN_ROW_KEY"
BUILTIN_SOURCES = ("digits", "breast_cancer", "wine")
ALREADY_KNOWN = 0.9  # a table whose rows are at least this share of its source's is not registered again


def key_file(ledger_path: Path | str) -> Path:
    """``<ledger>.rowkey`` beside an SQLite file; for a ``postgresql://`` URL, a file in the user's data folder
    (``row-keys/``) named after the URL without its password."""
    if backends.is_url(str(ledger_path)):
        return backends.user_data_dir() / "row-keys" / backends.url_file_name(str(ledger_path), ".rowkey")
    return Path(ledger_path).with_suffix(".rowkey")


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"privtrain-row-key/" + key).hexdigest()[:16]


def row_key(book) -> bytes:
    """The ledger's row key: ``$PRIVTRAIN_ROW_KEY``, else the key file beside the ledger (created if new)."""
    env = os.environ.get(KEY_ENV)
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError:
            raise UserError(
                f"{KEY_ENV} must be hex (e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`)."
            ) from None
        if len(key) < 16:
            raise UserError(f"{KEY_ENV} must hold at least 16 bytes (32 hex digits).")
        return key
    path = key_file(book.path)
    if path.is_file():
        return bytes.fromhex(path.read_text().strip())
    if _recorded_key_id(book) is not None:
        raise UserError(
            f"the ledger {book.path} recognises tables by a row key that is missing ({path}); restore "
            f"that file or set {KEY_ENV}. Without it, overlap with known sources cannot be checked."
        )
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use that one
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def _check_key(book, key: bytes) -> None:
    recorded = _recorded_key_id(book)
    if recorded is not None and recorded != key_id(key):
        raise UserError(
            f"the row key in use (id {key_id(key)}) is not the one the ledger {book.path} was built "
            f"with (id {recorded}); restore {key_file(book.path)} or the right {KEY_ENV}."
        )


@dataclass(frozen=True)
class TableRows:
    """A table's column views, ready to compare and register. Holds no raw values and is never stored.

    ``standing`` says how the ledger knows the table's people (set when its charges are built):
    ``builtin``, ``declared`` (``dataset.source`` / ``dataset.derived_from``), ``registered`` (this very
    table is registered), ``linked`` (it shares people with a known source) or ``unregistered``.
    """

    fingerprint: str
    key_id: str
    table: Any = field(repr=False)  # overlap.Table
    id_column: str | None = None
    standing: str = "unregistered"
    known_share: float = 0.0  # the share of its rows the charged source already holds (estimated)

    def with_standing(self, standing: str, known_share: float = 0.0) -> TableRows:
        return replace(self, standing=standing, known_share=known_share)


def of_table(book, table, fingerprint: str, id_column: str | None = None) -> TableRows:
    """A table's views under the ledger's row key (the key is checked against the one the ledger records)."""
    from privtrain.ledger import overlap

    key = row_key(book)
    _check_key(book, key)
    return TableRows(fingerprint, key_id(key), overlap.read(table, key, id_column), id_column)


def links(book, rows: TableRows, exclude: set[str]) -> list[Link]:
    """Known sources that share people with ``rows``' table, strongest first (one per source).

    Comparisons with registered tables are recorded (one ``rows`` entry, before the result is returned);
    a read-only ledger compares with the built-in datasets only.
    """
    from privtrain.ledger import overlap

    key = row_key(book)
    found: dict[str, overlap.Overlap] = {}

    def keep(o):
        if o is not None and o.linked and o.source not in exclude:
            best = found.get(o.source)
            if best is None or o.z > best.z:
                found[o.source] = o

    stored = [] if book.read_only else [s for s in _stored(book) if s[0] not in exclude]
    for source, fingerprint, layout, blob in stored:
        if fingerprint == rows.fingerprint:  # this very table is registered there
            found[source] = overlap.same_table(source)
        else:
            keep(overlap.compare(rows.table, overlap.Stored.load(layout, blob), key, source=source))
    for name in BUILTIN_SOURCES:  # public tables, known in full before any run: a copy is never a fresh source
        if name not in exclude:
            keep(overlap.compare(rows.table, _builtin(name, key), key, source=name))
    ranked = sorted(found.values(), key=lambda o: (-max(o.fraction_of_new, o.fraction_of_known), -o.z))
    if stored:
        _record_probe(book, rows, sorted({s[0] for s in stored}), [o.source for o in ranked])
    out = []
    for o in ranked:
        name = book.name(o.source) or o.source[:12]
        out.append(
            Link(
                o.source,
                name,
                o.reason.replace(f"`{o.source}`", f"`{name}`"),
                round(o.fraction_of_new, 1),
                round(o.fraction_of_known, 1),
            )
        )
    return out


def is_registered(book, fingerprint: str) -> bool:
    """Whether this very table (by its content fingerprint) is registered under some source."""
    return any(fp == fingerprint for _, fp in book.backend.sketch_keys())


@functools.lru_cache(maxsize=8)
def _builtin(name: str, key: bytes):
    """A built-in dataset's sketch, without noise (the data are public), computed once per process."""
    import math

    import numpy as np

    from privtrain import data
    from privtrain.ledger import overlap

    table = overlap.read(data.load(data.DatasetSpec(loader=name)).frame, key)
    return overlap.register(table, key, eps_s=math.inf, rng=np.random.default_rng(0))


def register(book, source: str, source_name: str, rows: TableRows) -> None:
    """Store the noisy sketch of a table under ``source`` and chain a ``rows`` entry (inside a transaction).

    Nothing is stored for a built-in's own table (public), for a table already registered under ``source``,
    or for one whose rows the source already holds (each registration of a person costs ``EPS_S`` more)."""
    from privtrain.ledger import overlap, sketch

    if rows.standing == "builtin" or rows.known_share >= ALREADY_KNOWN:
        return
    backend = book.backend
    if (source, rows.fingerprint) in backend.sketch_keys():
        return
    if not backend.has_sketches():
        raise UserError(
            f"the ledger {book.path} has no table for sketches (a ledger from before privtrain 0.3 "
            "on PostgreSQL): open it once as the database's owner, which creates it."
        )
    stored = overlap.register(rows.table, row_key(book))
    layout, blob = stored.layout_json(), stored.blob()
    backend.add_sketch(source, rows.fingerprint, layout, blob)
    book.append(
        status="rows",
        source=source,
        source_name=source_name,
        unit="example",
        dataset_fingerprint=rows.fingerprint,
        epsilon=0.0,
        delta=0.0,
        detail=json.dumps(
            {
                "key_id": rows.key_id,
                "sketch": sketch.digest(layout, blob),
                "sketches": digest_of(backend.source_sketches(source)),
                "rows": stored.layout["n"],
                "columns": len(stored.layout["columns"]),
                "groups": len(stored.layout["groups"]),
                "eps_s": stored.layout["eps_s"],
            }
        ),
    )


def digest_of(sketches) -> str:
    """The chained digest of a source's stored sketches: [(fingerprint, layout, sketch), ...]."""
    from privtrain.ledger import sketch

    h = hashlib.sha256(b"privtrain-sketches/v1")
    for fingerprint, layout, blob in sorted(sketches):
        h.update(f"\n{fingerprint}:{sketch.digest(layout, blob)}".encode())
    return h.hexdigest()


def _stored(core) -> list[tuple[str, str, str, bytes]]:
    return core.backend.sketches()


def _recorded_key_id(core) -> str | None:
    row = core.backend.latest(statuses=("rows",))
    return None if row is None else json.loads(row["detail"]).get("key_id")


def _record_probe(core, rows: TableRows, compared: list[str], linked: list[str]) -> None:
    """Chain a comparison of a table with registered tables (in the caller's transaction, or its own)."""
    fields = dict(
        status="rows",
        source="ledger",
        unit="example",
        dataset_fingerprint=rows.fingerprint,
        epsilon=0.0,
        delta=0.0,
        detail=json.dumps({"key_id": rows.key_id, "probe": {"compared": compared, "linked": linked}}),
    )
    if core.backend.in_write:
        core.append(**fields)
        return
    with core.transaction():
        core.append(**fields)
