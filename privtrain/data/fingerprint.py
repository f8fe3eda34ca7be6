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


def canonical_rows(frame: pd.DataFrame) -> list[str]:
    """One canonical string per row, columns in sorted-name order."""
    columns = sorted(frame.columns, key=str)
    cells = [frame[c].map(_cell).to_numpy(dtype=object) for c in columns]
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
