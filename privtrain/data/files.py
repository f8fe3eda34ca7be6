"""User tables from CSV or Parquet files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from privtrain.errors import UserError


def read_table(path: str | None, kind: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; every problem is one clear :class:`UserError`."""
    if not path:
        raise UserError(f"dataset.path is missing; pass dataset.path=/path/to/data.{kind}.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"dataset.path: no such file {str(file)!r}; check the path.")
    try:
        frame = pd.read_csv(file) if kind == "csv" else pd.read_parquet(file)
    except Exception as exc:  # pandas raises many types for a malformed file
        raise UserError(f"dataset.path: cannot read {str(file)!r} as {kind}: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise UserError(f"dataset.path: {str(file)!r} has no rows; point it at a non-empty table.")
    return frame
