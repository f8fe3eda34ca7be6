"""Row overlap between tables, from keyed hashes only: which budgeted source a new table's people belong to.

A table that shares rows with a budgeted source (a row subset, the rows plus appended rows, the same
rows reordered or read from CSV instead of Parquet, the rows with columns dropped or added) holds the
same people and is charged to that source. The ledger recognises this without raw values:

* Cell hash: SipHash-2-4 (``pd.util.hash_array``) of ``f"{column}\\x1f{cell}"`` where ``cell`` is
  ``privtrain.data.fingerprint._cell`` (1 and 1.0 agree, NaN/None/NA are null, strings JSON-quoted), so a
  CSV or Parquet round trip hashes the same. Cell texts never contain a raw 0x1f (strings are JSON
  escaped), so the pair is unambiguous, and column names are inside every cell hash: rows over different
  column sets never collide. The 128-bit SipHash key must be a 16-byte utf8 string; it is derived from the
  ledger key by HMAC-SHA256 and 7 bits per byte are kept (112 key bits). ``H`` is n_rows x n_cols uint64,
  columns sorted by name.
* Row hash over columns K: SipHash (second derived key) of the row's cell hashes of K, sorted column
  order, as one fixed-length byte string. The full-row hash is the row hash over all columns.
* ``RowProfile`` keeps the full-row hash per row plus the cell hashes of a uniform random sample of at
  most ``SAMPLE_ROWS`` rows, so a later table with other columns can be compared on the shared columns.
  Without the ledger key none of this tests whether a given row is in a dataset.

Decision (``_decide``), the same for all methods; thresholds and why:

* ``IDENTIFYING_DISTINCT = 0.95``: link only if rows are nearly unique on the compared columns, in the
  new table and in the known side. Below it >=5% of rows share their values with another row, so equal
  values no longer mean the same person (5 binary columns: 32 patterns, ~3% distinct in 1000 rows).
  Limitation: exact duplicate records count as "not identifying" too; declare an id column for those.
* Chance matches: the per-pair collision probability is the pooled within-table duplicate rate
  ``p = (dup_pairs_new + dup_pairs_known + 1) / (C(n,2) + C(N,2))`` (the +1 keeps it above zero when no
  duplicate is seen: the resolution of the data). Comparing n x N pairs, ``n*N*p`` rows match by chance
  (``2*N*(n-u)/(n-1)`` when only the new table has duplicates). ``CHANCE_FACTOR = 10``: link only when
  the shared count is >= 10x that: a Poisson count of mean m >= 1 reaches 10m with probability < 2e-7.
  Without duplicates and equal sizes the floor gives m ~ 1 (10 matches needed); digits vs its 30% subset:
  m = 0.55, bar 6 rows against 539 shared; two 1000-row tables of 5 binary columns: m ~ 17000.
* ``MIN_SHARED_ROWS = 3``: at least 3 matched rows (or every compared row of a tinier table): one or two
  matches are too easily coincidences or shared reference records.
* ``MIN_FRACTION = 0.05``: the shared rows are >= 5% of the new table or of the known source; below it the
  overlap is a handful of rows (a sample of 512 estimates 5% with a standard error of ~1%).

Methods: "rows" (exact, ``compare_rows``: the new full-row hashes against the source's set); "columns"
(``compare_columns``: the known sample projected onto the shared columns; the fraction of its rows found
among the new table's projected rows estimates ``fraction_of_known``, and ``shared_rows`` = that x the
source's rows; the new table needs its full cell matrix, the known side only its stored sample); "id"
(the same on a declared id column present in both, same name in both; unique ids are trusted as people).
``Overlap`` also carries ``source``, ``matches`` (rows, or sample rows, behind the decision) and ``chance``.
``set_digest`` is a sum of SHA-256 over the set elements mod 2**256 (order independent, updatable by
adding/subtracting element digests); it detects accidental or careless edits, not a 2**64-work forger.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from privtrain.data.fingerprint import _cell

SAMPLE_ROWS = 512
IDENTIFYING_DISTINCT = 0.95
CHANCE_FACTOR = 10.0
MIN_SHARED_ROWS = 3
MIN_FRACTION = 0.05
_SEP = "\x1f"


def _subkey(key: bytes, label: str) -> str:
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("the overlap key must be at least 16 bytes")
    digest = hmac.new(bytes(key), b"privtrain.overlap/" + label.encode(), hashlib.sha256).digest()
    return "".join(chr(b & 0x7F) for b in digest[:16])   # 16 ASCII chars = 16 utf8 bytes


def _text(value) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, np.datetime64) and np.isnat(value)):
        return "null"
    return _cell(value)


def _column_hashes(series: pd.Series, name: str, hkey: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
        texts = [_text(u) for u in uniques]
    else:   # object columns: factorize after serializing (1, 1.0 and True must stay apart)
        codes, texts = pd.factorize(np.array([_text(v) for v in series], dtype=object))
    strings = np.array([f"{name}{_SEP}{t}" for t in texts], dtype=object)
    return pd.util.hash_array(strings, hash_key=hkey, categorize=False)[codes]


def cell_hashes(frame: pd.DataFrame, key: bytes) -> tuple[tuple[str, ...], np.ndarray]:
    """(sorted column names, ``H``): the n_rows x n_cols uint64 matrix of keyed cell hashes."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ValueError("column names must be distinct")
    hkey = _subkey(key, "cell")
    order = sorted(range(len(names)), key=names.__getitem__)
    cols = [_column_hashes(frame.iloc[:, i], names[i], hkey) for i in order]
    matrix = np.column_stack(cols) if cols else np.zeros((len(frame), 0), np.uint64)
    return tuple(names[i] for i in order), matrix.astype(np.uint64, copy=False)


def row_hashes(cells: np.ndarray, key: bytes, idx=None) -> np.ndarray:
    """Keyed uint64 hash per row over the columns ``idx`` (all when None) of a cell-hash matrix."""
    sub = np.ascontiguousarray(cells if idx is None else cells[:, list(idx)], dtype="<u8")
    if sub.shape[1] == 0:
        raise ValueError("a row hash needs at least one column")
    # fixed-length rows: numpy's strip of trailing NUL bytes stays injective
    rows = sub.view(f"S{8 * sub.shape[1]}").ravel().astype(object)
    return pd.util.hash_array(rows, hash_key=_subkey(key, "row"), categorize=False)


@dataclass(frozen=True)
class RowProfile:
    columns: tuple[str, ...]
    n_rows: int
    row_hashes: np.ndarray = field(repr=False)   # uint64 full-row hash per row, frame order
    distinct: int
    sample: np.ndarray = field(repr=False)       # uint64 cell hashes of sampled rows, `columns` order


def profile_cells(columns, cells: np.ndarray, key: bytes, *, sample_rows: int = SAMPLE_ROWS, rng=None) -> RowProfile:
    n = cells.shape[0]
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    pick = np.sort(rng.choice(n, size=min(n, sample_rows), replace=False)) if n else np.zeros(0, int)
    hashes = row_hashes(cells, key) if n else np.zeros(0, np.uint64)
    return RowProfile(tuple(columns), n, hashes, len(np.unique(hashes)), cells[pick].copy())


def profile(frame: pd.DataFrame, key: bytes, *, sample_rows: int = SAMPLE_ROWS, rng=None) -> RowProfile:
    return profile_cells(*cell_hashes(frame, key), key, sample_rows=sample_rows, rng=rng)


def sample_to_bytes(matrix: np.ndarray) -> bytes:
    return np.ascontiguousarray(matrix, dtype="<u8").tobytes()


def sample_from_bytes(blob: bytes, n_cols: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64).reshape(-1, n_cols)


def hashes_to_int64(arr) -> np.ndarray:
    return np.asarray(arr, dtype=np.uint64).view(np.int64)


def int64_to_hashes(arr) -> np.ndarray:
    return np.asarray(arr, dtype=np.int64).view(np.uint64)


def _element_digests(hashes) -> list[int]:
    return [int.from_bytes(hashlib.sha256(int(h).to_bytes(8, "big")).digest(), "big")
            for h in np.unique(np.asarray(hashes, dtype=np.uint64))]


def set_digest(hashes, *, add=(), remove=(), base: str | None = None) -> str:
    """Hex digest of the SET ``hashes``; or ``base`` updated by adding/removing set elements."""
    total = int(base, 16) if base is not None else sum(_element_digests(hashes))
    total += sum(_element_digests(add)) - sum(_element_digests(remove))
    return f"{total % 2**256:064x}"


@dataclass(frozen=True)
class Overlap:
    shared_rows: int
    fraction_of_new: float
    fraction_of_known: float
    method: str                   # "rows" | "columns" | "id"
    columns: tuple[str, ...]
    linked: bool
    reason: str
    source: str = ""
    matches: int = 0
    chance: float = 0.0


def _dup_pairs(hashes: np.ndarray) -> tuple[int, int]:
    """(distinct values, pairs of rows with equal values)."""
    _, counts = np.unique(hashes, return_counts=True)
    return len(counts), int((counts * (counts - 1) // 2).sum())


def _decide(method, columns, *, source, matches, compared_new, compared_known, distinct_new, distinct_known,
            dup_new, dup_known, shared, n_new, n_known, how) -> Overlap:
    pairs = compared_new * (compared_new - 1) // 2 + compared_known * (compared_known - 1) // 2
    chance = compared_new * compared_known * (dup_new + dup_known + 1) / max(pairs, 1)
    f_new, f_known = min(1.0, shared / max(n_new, 1)), min(1.0, shared / max(n_known, 1))
    r_new, r_known = distinct_new / max(compared_new, 1), distinct_known / max(compared_known, 1)
    on = f"on {len(columns)} column(s) ({', '.join(columns[:4])}{', ...' if len(columns) > 4 else ''})"
    linked = False
    if min(r_new, r_known) < IDENTIFYING_DISTINCT:
        reason = (f"not linked to `{source}`: rows are not identifying {on}: {r_new:.0%} distinct here, "
                  f"{r_known:.0%} on the known side (needs {IDENTIFYING_DISTINCT:.0%}); "
                  f"{matches} equal rows may be different people")
    elif matches < CHANCE_FACTOR * chance or matches < min(MIN_SHARED_ROWS, compared_new, compared_known):
        reason = (f"not linked to `{source}`: {matches} matching rows {on}, ~{chance:.2g} expected by chance "
                  f"(needs >= {CHANCE_FACTOR:g}x that and >= {MIN_SHARED_ROWS})")
    elif max(f_new, f_known) < MIN_FRACTION:
        reason = (f"not linked to `{source}`: ~{shared} shared rows are {f_new:.1%} of this table and "
                  f"{f_known:.1%} of the source (needs {MIN_FRACTION:.0%} of either)")
    else:
        linked = True
        reason = f"{f_new:.0%} of these rows belong to source `{source}` ({f_known:.0%} of it; {how})"
    return Overlap(int(shared), f_new, f_known, method, tuple(columns), linked, reason, source, int(matches), chance)


def compare_rows(new: RowProfile, known_hashes, known_rows: int, *, source: str = "known source") -> Overlap:
    """Exact match of ``new``'s full-row hashes against a source's SET of full-row hashes."""
    known = np.unique(np.asarray(known_hashes, dtype=np.uint64))
    shared = int(np.isin(new.row_hashes, known).sum())
    distinct_new, dup_new = _dup_pairs(new.row_hashes)
    return _decide("rows", new.columns, source=source, matches=shared, compared_new=new.n_rows,
                   compared_known=known_rows, distinct_new=distinct_new, distinct_known=len(known),
                   dup_new=dup_new, dup_known=max(known_rows - len(known), 0), shared=shared,
                   n_new=new.n_rows, n_known=known_rows, how="exact row match")


def compare_columns(new_cells: np.ndarray, new_columns, known_sample: np.ndarray, known_columns, known_rows: int,
                    *, id_column: str | None = None, key: bytes, source: str = "known source") -> Overlap | None:
    """Estimate the overlap on the shared columns (or the declared id column) from the known sample."""
    new_columns, known_columns = list(new_columns), list(known_columns)
    if id_column is not None and id_column in new_columns and id_column in known_columns:
        shared_cols, method = [id_column], "id"
    else:
        shared_cols, method = sorted(set(new_columns) & set(known_columns)), "columns"
    if not shared_cols or len(known_sample) == 0 or len(new_cells) == 0:
        return None
    proj_new = row_hashes(new_cells, key, [new_columns.index(c) for c in shared_cols])
    proj_known = row_hashes(known_sample, key, [known_columns.index(c) for c in shared_cols])
    s, n = len(proj_known), len(proj_new)
    matches = int(np.isin(proj_known, proj_new).sum())
    distinct_new, dup_new = _dup_pairs(proj_new)
    distinct_known, dup_known = _dup_pairs(proj_known)
    how = (f"matched on id column `{id_column}`" if method == "id"
           else f"estimated from a {s}-row sample on {len(shared_cols)} shared columns")
    return _decide(method, shared_cols, source=source, matches=matches, compared_new=n, compared_known=s,
                   distinct_new=distinct_new, distinct_known=distinct_known, dup_new=dup_new,
                   dup_known=dup_known, shared=round(matches / s * known_rows), n_new=n,
                   n_known=known_rows, how=how)


@dataclass(frozen=True)
class Known:
    source: str
    columns: tuple[str, ...]
    n_rows: int
    row_hashes: object                       # set or array of the source's full-row hashes
    samples: list = field(default_factory=list)   # [(columns, sample matrix)], one per stored version


def find_links(new_profile: RowProfile, new_cells: np.ndarray, candidates: Iterable[Known], *,
               id_column: str | None = None, key: bytes) -> list[Overlap]:
    """The linked overlaps of a new table with known sources, one per source, strongest first."""
    links = []
    for known in candidates:
        found = []
        if tuple(known.columns) == new_profile.columns and known.row_hashes is not None:
            hashes = known.row_hashes
            hashes = np.fromiter(hashes, np.uint64) if isinstance(hashes, (set, frozenset)) else hashes
            found.append(compare_rows(new_profile, hashes, known.n_rows, source=known.source))
        for columns, sample in known.samples:
            if tuple(columns) != new_profile.columns or id_column is not None:
                found.append(compare_columns(new_cells, new_profile.columns, sample, columns, known.n_rows,
                                             id_column=id_column, key=key, source=known.source))
        found = [o for o in found if o is not None and o.linked]
        if found:
            links.append(max(found, key=lambda o: (o.method == "rows", max(o.fraction_of_new, o.fraction_of_known))))
    return sorted(links, key=lambda o: (-max(o.fraction_of_new, o.fraction_of_known), -o.shared_rows))
