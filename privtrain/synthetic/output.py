"""Writing synthetic rows, and the public schema that lets ``dataset=synthetic`` train on them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from privtrain.data.schema import Column
from privtrain.data.synthetic import schema_path
from privtrain.errors import UserError

FORMATS = ("csv", "parquet")
_MAX_CATEGORIES = 50


def write_rows(frame: pd.DataFrame, out: Path, fmt: str) -> Path:
    """``synthetic.csv`` or ``synthetic.parquet`` in ``out``."""
    if fmt not in FORMATS:
        raise UserError(f"synth.format={fmt!r} is unknown; choose one of {', '.join(FORMATS)}.")
    from privtrain.artifacts.sealed import table_bytes
    from privtrain.crypto.files import write_run_file

    return write_run_file(out / f"synthetic.{fmt}", table_bytes(frame, fmt))  # sealed when a key is configured


def declared_columns(domain: list[Column], frame: pd.DataFrame) -> dict:
    """Public bounds for the columns of ``domain`` present in the synthetic ``frame``."""
    return {c.name: c.to_decl() for c in domain if c.name in frame.columns}


def columns_from_rows(frame: pd.DataFrame, skip, target: str | None) -> dict:
    """Bounds read off the *synthetic* rows (post-processing: free toward the parent dataset)."""
    out: dict[str, dict[str, list | float]] = {}  # a column's categories, or its min and max
    for name in frame.columns:
        if name in skip:
            continue
        values = frame[name]
        if name == target:
            out[name] = {"categories": sorted(values.dropna().unique().tolist(), key=str)}
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            low, high = float(values.min()), float(values.max())
            if pd.notna(low):
                out[name] = {"min": low, "max": high if high > low else low + 1.0}
        elif values.nunique(dropna=True) <= _MAX_CATEGORIES:
            out[name] = {"categories": sorted(values.dropna().unique().tolist(), key=str)}
    return out


def write_schema(rows: Path, *, columns: dict, target: str | None, note: str, parent: dict) -> Path:
    """``<rows>.schema.json``: column bounds/categories, target and features, for ``dataset=synthetic``."""
    features = [c for c in columns if c != target]
    path = schema_path(rows)
    path.write_text(
        json.dumps(
            {"target": target, "features": features, "columns": columns, "note": note, "parent": parent},
            indent=2,
            default=_json_default,
        )
        + "\n"
    )
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
