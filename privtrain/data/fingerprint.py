"""Dataset fingerprints: SHA-256 over a canonical serialization of the raw table.

The fingerprint identifies a dataset in the privacy ledger. It depends only on
the content: not on the file name, the row order in the file, the column order
or the split seed. Integral floats serialize like integers, so ``1`` and
``1.0`` read from two files give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return json.dumps(str(value), ensure_ascii=False)


def _column_cells(values: pd.Series) -> np.ndarray:
    """``_cell`` of every value of a column; whole numeric columns at once (the same strings)."""
    kind = values.dtype.kind
    if kind in "iu":
        return values.to_numpy().astype(str).astype(object)
    if kind == "b":
        return np.where(values.to_numpy(), "true", "false").astype(object)
    if kind == "f":
        x = values.to_numpy(dtype=np.float64)
        out = np.empty(len(x), dtype=object)
        nan = np.isnan(x)
        integral = ~nan & (np.abs(x) < 2**53) & (np.floor(x) == x)
        out[nan] = "null"
        out[integral] = x[integral].astype(np.int64).astype(str)
        rest = ~nan & ~integral
        out[rest] = [repr(float(v)) for v in x[rest]]
        return out
    return values.map(_cell).to_numpy(dtype=object)


def canonical_rows(frame: pd.DataFrame) -> list[str]:
    """One canonical string per row, columns in sorted-name order."""
    columns = sorted(frame.columns, key=str)
    cells = [_column_cells(frame[c]) for c in columns]
    return ["[" + ",".join(row) + "]" for row in zip(*cells)] if len(frame) else []


def canonicalize(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``frame`` in canonical row order, and its fingerprint (the rows are serialized once)."""
    rows = canonical_rows(frame)
    order = sorted(range(len(rows)), key=rows.__getitem__)
    return frame.iloc[order].reset_index(drop=True), _digest(frame.columns, [rows[i] for i in order])


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """SHA-256 hex digest of ``frame``'s content (the raw table, target column included)."""
    return _digest(frame.columns, sorted(canonical_rows(frame)))


def _digest(columns, sorted_rows: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(map(str, columns))).encode())
    for row in sorted_rows:
        digest.update(b"\n")
        digest.update(row.encode())
    return digest.hexdigest()
