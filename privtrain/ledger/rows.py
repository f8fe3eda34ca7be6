"""The rows a source is known by: keyed hashes, the ledger's row key, and finding overlap.

The ledger never stores raw values. It stores, per source, keyed hashes of its rows (and keyed cell
hashes of a random sample of each table's rows), computed with a secret *row key* that lives outside
the ledger: ``PRIVTRAIN_ROW_KEY`` (hex), else ``<ledger>.rowkey`` beside an SQLite ledger, or for a
PostgreSQL ledger a key file in the user's data folder named after the database URL (without its
password); either is created on first use, readable by its owner only. Without the key, the ledger cannot be used to test whether a given
row is in a dataset. The key's id is chained in every ``rows`` entry, so a lost or swapped key is
refused rather than silently breaking the links.

The maths of hashing and deciding a link lives in :mod:`privtrain.ledger.overlap`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privtrain.errors import UserError
from privtrain.ledger import backends
from privtrain.ledger.model import Link

KEY_ENV = "PRIVTRAIN_ROW_KEY"


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
            raise UserError(f"{KEY_ENV} must be hex (e.g. from `python -c 'import secrets; "
                            "print(secrets.token_hex(32))'`).") from None
        if len(key) < 16:
            raise UserError(f"{KEY_ENV} must hold at least 16 bytes (32 hex digits).")
        return key
    path = key_file(book.path)
    if path.is_file():
        return bytes.fromhex(path.read_text().strip())
    if _recorded_key_id(book) is not None:
        raise UserError(f"the ledger {book.path} recognises tables by a row key that is missing ({path}); restore "
                        f"that file or set {KEY_ENV}. Without it, overlap with known sources cannot be checked.")
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use that one
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def _recorded_key_id(book) -> str | None:
    row = book.backend.latest(statuses=("rows",))
    return None if row is None else json.loads(row["detail"]).get("key_id")


def _check_key(book, key: bytes) -> None:
    recorded = _recorded_key_id(book)
    if recorded is not None and recorded != key_id(key):
        raise UserError(f"the row key in use (id {key_id(key)}) is not the one the ledger {book.path} was built "
                        f"with (id {recorded}); restore {key_file(book.path)} or the right {KEY_ENV}.")


@dataclass(frozen=True)
class TableRows:
    """A table's keyed row profile, ready to compare and register. Holds no raw values."""

    fingerprint: str
    key_id: str
    profile: Any = field(repr=False)  # overlap.RowProfile
    columns: tuple[str, ...] = ()
    cells: Any = field(default=None, repr=False)  # the n x c cell-hash matrix (compared, never stored)
    id_column: str | None = None


def of_table(book, table, fingerprint: str, id_column: str | None = None) -> TableRows:
    """Hash a table's rows with the ledger's key."""
    from privtrain.ledger import overlap

    key = row_key(book)
    _check_key(book, key)
    columns, cells = overlap.cell_hashes(table, key)
    profile = overlap.profile_cells(columns, cells, key)
    return TableRows(fingerprint, key_id(key), profile, columns, cells, id_column)


def links(book, rows: TableRows, exclude: set[str]) -> list[Link]:
    """Known sources that share rows with ``rows``' table, strongest first (one per source)."""
    import numpy as np

    from privtrain.ledger import overlap

    key = row_key(book)
    found: dict[str, overlap.Overlap] = {}

    def keep(o):
        if o is None or not o.linked or o.source in exclude:
            return
        best = found.get(o.source)
        if best is None or max(o.fraction_of_new, o.fraction_of_known) > max(best.fraction_of_new, best.fraction_of_known):
            found[o.source] = o

    probe = overlap.hashes_to_int64(rows.profile.row_hashes)
    for source, count in book.backend.shared_rows(probe).items():
        if source in exclude or count == 0:
            continue
        known = overlap.int64_to_hashes(np.array(book.backend.source_hashes(source), dtype=np.int64))
        keep(overlap.compare_rows(rows.profile, known, len(known), source=source))
    for source, fingerprint, columns, n_rows, blob in book.backend.samples():
        if source in exclude or fingerprint == rows.fingerprint:
            continue
        if tuple(columns) == rows.columns and rows.id_column is None:
            continue  # same columns: the exact row match above decides
        sample = overlap.sample_from_bytes(blob, len(columns))
        keep(overlap.compare_columns(rows.cells, rows.columns, sample, columns, n_rows,
                                     id_column=rows.id_column, key=key, source=source))
    for name in BUILTIN_SOURCES:  # public tables, known in full before any run: a copy is never a fresh source
        if name in exclude:
            continue
        builtin = _builtin_rows(name, key)
        if not set(builtin.columns) & set(rows.columns) - {"target"}:
            continue
        if builtin.columns == rows.columns:
            keep(overlap.compare_rows(rows.profile, builtin.profile.row_hashes, builtin.profile.n_rows, source=name))
        else:
            keep(overlap.compare_columns(rows.cells, rows.columns, builtin.profile.sample, builtin.columns,
                                         builtin.profile.n_rows, id_column=rows.id_column, key=key, source=name))
    ranked = sorted(found.values(), key=lambda o: (-max(o.fraction_of_new, o.fraction_of_known), -o.shared_rows))
    out = []
    for o in ranked:
        name = book.name(o.source) or o.source[:12]
        out.append(Link(o.source, name, o.reason.replace(f"`{o.source}`", f"`{name}`"),
                        o.fraction_of_new, o.fraction_of_known))
    return out


BUILTIN_SOURCES = ("digits", "breast_cancer", "wine")


@functools.lru_cache(maxsize=8)
def _builtin_rows(name: str, key: bytes) -> TableRows:
    """A built-in dataset's keyed rows (its whole table as the sample), computed once per process."""
    import numpy as np

    from privtrain import data
    from privtrain.ledger import overlap

    ds = data.load(data.DatasetSpec(loader=name))
    columns, cells = overlap.cell_hashes(ds.frame, key)
    profile = overlap.profile_cells(columns, cells, key, sample_rows=len(cells), rng=np.random.default_rng(0))
    return TableRows(ds.fingerprint, key_id(key), profile, columns, None)


def register(book, source: str, source_name: str, rows: TableRows) -> None:
    """Add a table's row hashes and sample to ``source`` and chain a ``rows`` entry (inside a transaction)."""
    from privtrain.ledger import overlap

    backend = book.backend
    if rows.fingerprint in backend.sample_fingerprints(source):
        return  # this table is already known under this source
    new = backend.add_rows(source, overlap.hashes_to_int64(rows.profile.row_hashes))
    backend.add_sample(source, rows.fingerprint, rows.columns, rows.profile.n_rows,
                       overlap.sample_to_bytes(rows.profile.sample))
    book.append(status="rows", source=source, source_name=source_name, unit="example",
                 dataset_fingerprint=rows.fingerprint, epsilon=0.0, delta=0.0,
                 detail=json.dumps({"key_id": rows.key_id, "n_rows": rows.profile.n_rows, "new_rows": new,
                                    "rows": backend.count_rows(source), "columns": len(rows.columns),
                                    "digest": digest_of(backend.source_hashes(source))}))


def digest_of(hashes) -> str:
    """The chained digest of a source's set of stored (signed 64-bit) row hashes."""
    from privtrain.ledger import overlap

    import numpy as np

    return overlap.set_digest(overlap.int64_to_hashes(np.array(list(hashes), dtype=np.int64)))
