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

import numpy as np
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
        raise UserError(
            f"dataset.path: no {file.name} beside {spec.path}; point dataset.path at rows written by "
            "`privtrain run synthetic` (it writes their schema beside them), or use dataset=csv."
        )
    try:
        recorded = json.loads(file.read_text())
        columns, recorded_target, features = recorded["columns"], recorded["target"], recorded["features"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"dataset.path: {file} is not a privtrain synthetic schema ({exc}); re-run the synthetic "
            "recipe to rewrite it."
        ) from None
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


# --- where models trained on synthetic rows are scored: the parent's real held-out rows ------------------


def held_out_reference(spec, *, seed: int) -> dict | None:
    """Public config naming the real held-out rows of a synthetic run's input (None: not reachable later).

    The synthesizer never saw these rows (the same keyed split as every recipe), so a model trained on
    its output is scored on real people it has not seen. Synthetic input passes on its own parent's.
    """
    from privtrain.data.builtin import BUILTIN

    if spec.loader == "synthetic":
        try:
            return json.loads(schema_path(Path(spec.path).expanduser()).read_text())["parent"].get("held_out")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    if spec.loader in BUILTIN:
        return {"loader": spec.loader, "seed": int(seed), "test_size": float(spec.test_size)}
    if spec.loader in ("csv", "parquet") and spec.path:
        return {
            "loader": spec.loader,
            "path": str(Path(spec.path).expanduser().resolve()),
            "seed": int(seed),
            "test_size": float(spec.test_size),
        }
    return None


@dataclasses.dataclass(frozen=True)
class RealHeldOut:
    """The parent's real held-out rows, preprocessed with the synthetic table's public schema."""

    x: np.ndarray
    y: np.ndarray
    description: str


def real_held_out(path: str | Path, schema: Schema, target: str) -> RealHeldOut | str:
    """The parent's real held-out rows of synthetic rows at ``path``, or why they cannot be used (a note).

    The rows must be the ones the synthetic run split: the parent's recorded fingerprint is checked.
    """
    from privtrain.data.assign import held_out
    from privtrain.data.builtin import BUILTIN, load_builtin
    from privtrain.data.fingerprint import canonicalize

    try:
        parent = json.loads(schema_path(Path(path).expanduser()).read_text())["parent"]
        ref = parent.get("held_out")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ref = None
    if not ref:
        return "these synthetic rows record no real held-out split of their parent (written by an older privtrain)"
    if ref["loader"] in BUILTIN:
        frame = load_builtin(ref["loader"])[0]
    else:
        if not Path(ref["path"]).is_file():
            return f"the parent's rows are no longer at {ref['path']}"
        frame = read_table(ref["path"], ref["loader"])
    frame, fingerprint = canonicalize(frame)
    if fingerprint != parent.get("fingerprint"):
        return f"the parent's rows at {ref.get('path', ref['loader'])} changed since the synthetic run"
    rows = frame[held_out(frame, seed=ref["seed"], test_size=ref["test_size"])]
    missing = [c.name for c in schema.features if c.name not in rows.columns] + (
        [] if target in rows.columns else [target]
    )
    if missing:
        return f"the parent's rows lack column(s) {missing[:5]}"
    known = rows[target].isin(schema.classes).to_numpy()  # a class the synthetic rows lack cannot be predicted
    if not known.any():
        return "no real held-out row has a class of the synthetic rows"
    dropped = f"; {int((~known).sum())} with a class the synthetic rows lack are left out" if not known.all() else ""
    rows = rows[known]
    return RealHeldOut(
        schema.transform(rows),
        schema.encode_target(rows[target]),
        f"the real held-out rows of {parent.get('name')} ({len(rows)} rows, never shown to the synthesizer{dropped})",
    )
