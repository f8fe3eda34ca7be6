"""``dataset=synthetic``: rows written by ``privtrain run synthetic``, with the schema it wrote beside them.

The schema file (``<rows>.schema.json``) holds public bounds: the synthesizer's declared domain
(a DP synthesizer's public domain, or the parent's published/declared schema), or bounds read
off the synthetic rows themselves, which is post-processing of the synthesizer's output and
costs nothing toward the parent. The ledger knows the rows' lineage by their fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from privtrain.data.files import read_table
from privtrain.data.schema import Schema, declared_schema
from privtrain.errors import UserError

SCHEMA_SUFFIX = ".schema.json"


def schema_path(rows: str | Path) -> Path:
    """Where the schema of a synthetic table lives: ``synthetic.csv`` -> ``synthetic.schema.json``."""
    rows = Path(rows)
    return rows.with_name(rows.stem + SCHEMA_SUFFIX)


def load_synthetic(spec) -> tuple[pd.DataFrame, Schema, str]:
    """(raw table, public schema, target) of a synthetic output. Raises :class:`UserError` on bad input."""
    if not spec.path:
        raise UserError("dataset.path is missing; pass dataset.path=outputs/synthetic/<run>/synthetic.csv.")
    kind = "parquet" if str(spec.path).endswith(".parquet") else "csv"
    frame = read_table(spec.path, kind)
    file = schema_path(Path(spec.path).expanduser())
    if not file.is_file():
        raise UserError(f"dataset.path: no {file.name} beside {spec.path}; point dataset.path at rows written by "
                        "`privtrain run synthetic` (it writes their schema beside them), or use dataset=csv.")
    try:
        recorded = json.loads(file.read_text())
        columns, recorded_target, features = recorded["columns"], recorded["target"], recorded["features"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"dataset.path: {file} is not a privtrain synthetic schema ({exc}); re-run the synthetic "
                        "recipe to rewrite it.") from None
    target = spec.target or recorded_target
    columns_found = list(frame.columns)[:20]
    if target not in frame.columns:
        raise UserError(f"dataset.target={target!r} is not a column of {spec.path}; columns are {columns_found}.")
    features = list(spec.features) if spec.features else [f for f in features if f != target]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise UserError(f"dataset.features: column(s) {missing} are not in {spec.path}; columns are {columns_found}.")
    decl = dict(spec.schema) if spec.schema else columns
    schema = declared_schema(decl, features, target)
    note = recorded.get("note")
    return frame, dataclasses.replace(schema, notes=schema.notes + ((note,) if note else ())), target
