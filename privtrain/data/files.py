"""User tables from CSV or Parquet files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from privtrain.crypto.files import is_sealed_file, read_bytes
from privtrain.errors import UserError, user_paths


def read_table(path: str | None, kind: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; every problem is one clear :class:`UserError`."""
    if not path:
        raise UserError(f"dataset.path is missing; pass dataset.path=/path/to/data.{kind}.")
    file = Path(path).expanduser()
    with user_paths("dataset.path"):
        found = file.is_file()
    if not found:
        raise UserError(f"dataset.path: no such file {str(file)!r}; check the path.")
    source: Path | io.BytesIO = file
    if is_sealed_file(file):  # rows a run wrote encrypted (synthetic.csv): opened with the configured key
        source = io.BytesIO(read_bytes(file))
    try:
        frame = pd.read_csv(source) if kind == "csv" else pd.read_parquet(source)
    except Exception as exc:  # pandas raises many types for a malformed file
        raise UserError(f"dataset.path: cannot read {str(file)!r} as {kind}: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise UserError(f"dataset.path: {str(file)!r} has no rows; point it at a non-empty table.")
    _refuse_infinite(frame, file)
    return frame


def _refuse_infinite(frame: pd.DataFrame, file: Path) -> None:
    """inf and -inf are no value a public range can scale (a missing cell, NaN, is: the range's middle)."""
    numbers = frame.select_dtypes("number")
    for column in numbers.columns:
        if np.isinf(numbers[column].to_numpy(dtype=np.float64, na_value=np.nan)).any():
            raise UserError(
                f"dataset.path: column {column!r} of {str(file)!r} holds an infinite value (inf or -inf) "
                "in some rows; replace it with a number, or leave the cell empty (a missing value)."
            )
