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

from privtrain.data import encode
from privtrain.errors import UserError


@dataclass(frozen=True)
class Column:
    """A numeric column with bounds ``[low, high]``, or a categorical one with ``categories``."""

    name: str
    low: float | None = None
    high: float | None = None
    categories: tuple | None = None
    transform: str = "none"  # a public map applied before scaling (privtrain.data.encode.TRANSFORMS)
    bins: tuple[float, ...] | None = None  # public edges, low and high included: the column is one-hot by interval

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    @property
    def levels(self) -> tuple:
        """A categorical column's ``categories``.

        Raises:
            ValueError: the column has none (it is numeric).
        """
        if self.categories is None:
            raise ValueError(f"column {self.name!r} has no categories (numeric columns have bounds)")
        return self.categories

    @property
    def bounds(self) -> tuple[float, float]:
        """A numeric column's ``(low, high)``.

        Raises:
            ValueError: the column has no bounds (it is categorical).
        """
        if self.low is None or self.high is None:
            raise ValueError(f"column {self.name!r} has no numeric bounds (categorical columns have none)")
        return self.low, self.high

    @property
    def width(self) -> int:
        """How many inputs the column becomes."""
        if self.categories is not None:
            return len(self.categories)
        return len(self.bins) - 1 if self.bins is not None else 1

    def encode(self, values: pd.Series) -> np.ndarray:
        """The column as model inputs in [0, 1], shape (n, width): what training and predict both use."""
        if self.categories is not None:
            return encode.one_hot(encode.category_codes(values, self.categories, f"column {self.name!r}"), self.width)
        if self.bins is not None:
            return encode.one_hot_bins(values, self.bins)
        return encode.scale(values, *self.bounds, self.transform)

    def to_decl(self) -> dict:
        """The column as ``dataset.schema`` declares it."""
        if self.categories is not None:
            return {"categories": list(self.categories)}
        out: dict[str, float | str | list[float] | None] = {"min": self.low, "max": self.high}
        if self.transform != "none":
            out["transform"] = self.transform
        if self.bins is not None:
            out["bins"] = list(self.bins)
        return out

    def describe(self) -> str | None:
        """The declared transform in a few words (None: plain min-max scaling or one-hot categories)."""
        if self.bins is not None:
            return f"{self.name}: one-hot over public bins [{', '.join(f'{e:g}' for e in self.bins)}]"
        return f"{self.name}: {self.transform}" if self.transform != "none" else None


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
        return {
            "kind": "table",
            "classes": list(self.classes),
            "source": self.source,
            "notes": list(self.notes),
            "features": [
                {
                    "name": c.name,
                    "low": c.low,
                    "high": c.high,
                    "categories": None if c.categories is None else list(c.categories),
                    "transform": c.transform,
                    "bins": None if c.bins is None else list(c.bins),
                }
                for c in self.features
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        cols = tuple(
            Column(
                c["name"],
                c["low"],
                c["high"],
                None if c["categories"] is None else tuple(c["categories"]),
                c.get("transform", "none"),
                None if c.get("bins") is None else tuple(c["bins"]),
            )
            for c in d["features"]
        )
        return cls(cols, tuple(d["classes"]), d["source"], tuple(d.get("notes", ())))

    @property
    def n_inputs(self) -> int:
        return sum(c.width for c in self.features)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Features as float32 in [0, 1]: numeric columns clipped to their public bounds, put through their
        declared transform and min-max scaled (or one-hot over their public bins), categorical ones one-hot
        (an undeclared value -> zeros).

        Raises:
            UserError: categorical values that match the declared categories only when case is ignored.
        """
        parts = [col.encode(frame[col.name]) for col in self.features]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)

    def clipped(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per numeric column, how many values lie outside its declared bounds (and are clipped to them).
        For predict only: its rows are the user's own; for training rows such a count is private."""
        counts = {c.name: encode.out_of_range(frame[c.name], *c.bounds) for c in self.features if not c.is_categorical}
        return {name: n for name, n in counts.items() if n}

    def encode_target(self, values: pd.Series) -> np.ndarray:
        codes = encode.category_codes(values, self.classes, "the target")
        if (codes < 0).any():  # names the declared (public) classes; no value, no count
            raise UserError(
                f"dataset.schema: some rows have a target label outside the declared classes "
                f"{list(self.classes)}; add the missing labels to the target's categories (or drop those rows)."
            )
        return codes


_NUMERIC_KEYS = ("min", "max", "transform", "clip", "bins")


def _column_from_decl(name: str, decl) -> Column:
    if not isinstance(decl, dict):
        raise UserError(f"dataset.schema.{name}: expected {{min: , max: }} or {{categories: [...]}}, got {decl!r}.")
    unknown = [k for k in decl if k not in ("categories", *_NUMERIC_KEYS)]
    if unknown:  # a misspelt `transfrom: log1p` would otherwise be dropped without a word
        raise UserError(
            f"dataset.schema.{name}: unknown key(s) {unknown}; a column declares categories, or min and "
            f"max with an optional transform ({', '.join(encode.TRANSFORMS)}), clip: true or bins."
        )
    if "categories" in decl:
        mixed = [k for k in _NUMERIC_KEYS if k in decl]
        if mixed:
            raise UserError(
                f"dataset.schema.{name}: categories cannot be combined with {mixed}; declare either the "
                "categories or a numeric range."
            )
        cats = tuple(decl["categories"])
        if not cats:
            raise UserError(f"dataset.schema.{name}.categories is empty; list the column's possible values.")
        return Column(name, categories=cats)
    if decl.get("clip", True) is not True:  # declared explicitly: the behaviour is the same either way
        raise UserError(
            f"dataset.schema.{name}.clip={decl['clip']!r}: values outside the declared bounds are always "
            "clipped to them (the scaled inputs must stay bounded); write clip: true or leave it out, "
            "and widen min/max to keep larger values apart."
        )
    if "bins" in decl:
        return _binned(name, decl)
    if "min" in decl and "max" in decl:
        low, high = _bound(name, "min", decl["min"]), _bound(name, "max", decl["max"])
        if not high > low:
            raise UserError(f"dataset.schema.{name}: max ({high}) must be greater than min ({low}).")
        return Column(name, low=low, high=high, transform=_transform(name, decl.get("transform"), low))
    raise UserError(
        f"dataset.schema.{name}: give min and max for a numeric column, or categories for a categorical one."
    )


def _transform(name: str, value, low: float) -> str:
    """A declared transform's name, checked against the declared min (never against the rows)."""
    text = "none" if value is None else str(value).strip().lower()
    if text in encode.DATA_DEPENDENT:
        raise UserError(
            f"dataset.schema.{name}.transform={value!r} would take its parameters from the private rows; "
            f"use a public one ({', '.join(encode.TRANSFORMS)}) with the declared min/max, or public bins."
        )
    if text not in encode.TRANSFORMS:
        raise UserError(
            f"dataset.schema.{name}.transform={value!r} is unknown; choose one of {', '.join(encode.TRANSFORMS)}."
        )
    floor, strict = encode.TRANSFORM_DOMAIN.get(text, (-math.inf, False))
    if low < floor or (strict and low == floor):
        raise UserError(
            f"dataset.schema.{name}: transform {text} needs min {'>' if strict else '>='} {floor:g} "
            f"(declared min is {low:g}); raise min or choose another transform."
        )
    return text


def _binned(name: str, decl: dict) -> Column:
    """Public bin edges, with the declared min/max as the outer edges when given."""
    edges = decl["bins"]
    if not isinstance(edges, (list, tuple)):  # e.g. `bins: 10`: quantiles of the private rows
        raise UserError(
            f"dataset.schema.{name}.bins={edges!r}: list the public edges, e.g. bins: [0, 1000, 10000, "
            "100000]; a number of (quantile) bins would read its edges off the private rows."
        )
    if decl.get("transform") not in (None, "none"):
        raise UserError(
            f"dataset.schema.{name}: bins one-hot the column by interval, so a transform does not apply; "
            "declare one or the other."
        )
    if ("min" in decl) != ("max" in decl):
        raise UserError(f"dataset.schema.{name}: with bins, declare both min and max (the outer edges) or neither.")
    edges = [_bound(name, "bins", e) for e in edges]
    if "min" in decl:
        low, high = _bound(name, "min", decl["min"]), _bound(name, "max", decl["max"])
        if any(e < low or e > high for e in edges):
            raise UserError(f"dataset.schema.{name}: the bins must lie within min ({low:g}) and max ({high:g}).")
        edges = [low, *(e for e in edges if low < e < high), high]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise UserError(
            f"dataset.schema.{name}.bins: give at least two strictly increasing edges, e.g. "
            "bins: [0, 1000, 10000, 100000]."
        )
    return Column(name, low=edges[0], high=edges[-1], bins=tuple(edges))


def _bound(name: str, which: str, value) -> float:
    """A declared bound: a finite number (a scale needs both ends; an infinite one would map every value to 0)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(value)
        bound = float(value)
    except (TypeError, ValueError):
        raise UserError(
            f"dataset.schema.{name}.{which}={value!r} must be a number, e.g. dataset.schema.{name}.{which}=0."
        ) from None
    if not math.isfinite(bound):
        raise UserError(
            f"dataset.schema.{name}.{which}={bound:g} must be a finite number: declare the column's "
            "public range (or its categories)."
        )
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
    if target_col.categories is None:  # not categorical
        raise UserError(f"dataset.schema.{target}: the target needs categories (its class labels), not min/max.")
    columns = tuple(_column_from_decl(f, decl[f]) for f in features)
    return Schema(columns, target_col.categories, "declared", _declared_notes(columns))


def _declared_notes(columns: tuple[Column, ...]) -> tuple[str, ...]:
    """What the card says about a declared schema's preprocessing: facts about the declaration only (whether any
    training row was clipped or undeclared is a private fact, so the card never says)."""
    notes = [
        "preprocessing is declared and public: numeric values outside their declared bounds are clipped to "
        "the bounds, and values outside a column's declared categories are encoded as all zeros, at training "
        "and at predict"
    ]
    described = [d for d in (c.describe() for c in columns) if d]
    if described:
        notes.append("declared transforms (public, no privacy cost, applied again at predict): " + "; ".join(described))
    return tuple(notes)


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
    note = (
        "preprocessing bounds and categories were inferred from the private data; they are not covered by the guarantee"
    )
    return Schema(tuple(cols), classes, "inferred", (note,))
