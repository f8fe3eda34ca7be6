"""Public schemas: the per-column bounds and categories that preprocessing may use.

Scaling bounds and vocabularies must come from public information (a declared
schema, or a built-in dataset's published ranges). A schema inferred from the
private data is allowed only when the user asks for it, and is flagged so the
run's guarantee says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privtrain.errors import UserError


@dataclass(frozen=True)
class Column:
    """A numeric column with bounds ``[low, high]``, or a categorical one with ``categories``."""

    name: str
    low: float | None = None
    high: float | None = None
    categories: tuple | None = None

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None


@dataclass(frozen=True)
class Schema:
    features: tuple[Column, ...]
    classes: tuple  # the target's labels, in a fixed order
    source: str  # "declared", "builtin" or "inferred"
    notes: tuple[str, ...] = field(default=())

    @property
    def inferred(self) -> bool:
        return self.source == "inferred"

    def to_dict(self) -> dict:
        """Plain values (run.json, the checkpoint): what a predictor needs to preprocess new rows."""
        return {"kind": "table", "classes": list(self.classes), "source": self.source, "notes": list(self.notes),
                "features": [{"name": c.name, "low": c.low, "high": c.high,
                              "categories": None if c.categories is None else list(c.categories)}
                             for c in self.features]}

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        cols = tuple(Column(c["name"], c["low"], c["high"], None if c["categories"] is None else tuple(c["categories"]))
                     for c in d["features"])
        return cls(cols, tuple(d["classes"]), d["source"], tuple(d.get("notes", ())))

    @property
    def n_inputs(self) -> int:
        return sum(len(c.categories) if c.is_categorical else 1 for c in self.features)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Features as float32 in [0, 1]: numeric columns min-max scaled by the
        public bounds and clipped, categorical ones one-hot (unknown -> zeros)."""
        parts = []
        for col in self.features:
            values = frame[col.name]
            if col.is_categorical:
                onehot = np.stack([(values == c).to_numpy() for c in col.categories], axis=1)
                parts.append(onehot.astype(np.float32))
            else:
                span = (col.high - col.low) or 1.0
                x = (pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64) - col.low) / span
                x = np.nan_to_num(x, nan=0.5)  # missing -> middle of the public range
                parts.append(np.clip(x, 0.0, 1.0).astype(np.float32)[:, None])
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)

    def encode_target(self, values: pd.Series) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        if any(v not in index for v in values):  # names the declared (public) classes; no value, no count
            raise UserError(
                f"dataset.schema: some rows have a target label outside the declared classes "
                f"{list(self.classes)}; add the missing labels to the target's categories (or drop those rows)."
            )
        return values.map(index).to_numpy(dtype=np.int64)


def _column_from_decl(name: str, decl) -> Column:
    if not isinstance(decl, dict):
        raise UserError(f"dataset.schema.{name}: expected {{min: , max: }} or {{categories: [...]}}, got {decl!r}.")
    if "categories" in decl:
        cats = tuple(decl["categories"])
        if not cats:
            raise UserError(f"dataset.schema.{name}.categories is empty; list the column's possible values.")
        return Column(name, categories=cats)
    if "min" in decl and "max" in decl:
        low, high = _bound(name, "min", decl["min"]), _bound(name, "max", decl["max"])
        if not high > low:
            raise UserError(f"dataset.schema.{name}: max ({high}) must be greater than min ({low}).")
        return Column(name, low=low, high=high)
    raise UserError(f"dataset.schema.{name}: give min and max for a numeric column, or categories for a categorical one.")


def _bound(name: str, which: str, value) -> float:
    """A declared bound: a finite number (a scale needs both ends; an infinite one would map every value to 0)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(value)
        bound = float(value)
    except (TypeError, ValueError):
        raise UserError(f"dataset.schema.{name}.{which}={value!r} must be a number, e.g. "
                        f"dataset.schema.{name}.{which}=0.") from None
    if not math.isfinite(bound):
        raise UserError(f"dataset.schema.{name}.{which}={bound:g} must be a finite number: declare the column's "
                        "public range (or its categories).")
    return bound


def declared_schema(decl: dict, features: list[str], target: str) -> Schema:
    """Build a schema from a user's declaration (``dataset.schema``)."""
    missing = [c for c in [*features, target] if c not in decl]
    if missing:
        raise UserError(
            f"dataset.schema does not declare column(s) {missing}; add bounds or categories for each, "
            "or drop them from dataset.features."
        )
    target_col = _column_from_decl(target, decl[target])
    if not target_col.is_categorical:
        raise UserError(f"dataset.schema.{target}: the target needs categories (its class labels), not min/max.")
    return Schema(tuple(_column_from_decl(f, decl[f]) for f in features), target_col.categories, "declared")


def inferred_schema(frame: pd.DataFrame, features: list[str], target: str) -> Schema:
    """Bounds and vocabularies read off the private data itself (flagged as such)."""
    cols = []
    for name in features:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            low, high = float(values.min()), float(values.max())
            cols.append(Column(name, low=low, high=high if high > low else low + 1.0))
        else:
            cols.append(Column(name, categories=tuple(sorted(values.dropna().unique(), key=str))))
    classes = tuple(sorted(frame[target].dropna().unique(), key=str))
    note = "preprocessing bounds and categories were inferred from the private data; they are not covered by the guarantee"
    return Schema(tuple(cols), classes, "inferred", (note,))
